"""Contention and idle waits apart (issue 17): the sections, the gates, waits
still blocked, summary files, percentiles, sites and thread rows."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracedsync
from tests.report import files
from tests.report.test_report import ROOT, prim, report, report_json
from tracedsync.report import run_report
from tracedsync.report.metrics import Hist
from tracedsync.testing import blocked_on, wait_until


def traced(out: Path) -> None:
    tracedsync.configure(
        exporters=["jsonfile"], output_dir=str(out), wait_threshold_ms=0, hold_threshold_ms=0
    )


def finish() -> None:
    assert tracedsync.flush()
    tracedsync.shutdown()


# -- a real program: an idle pool and a contended lock ----------


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/config_reload.py under ``tracedsync run``."""
    out = tmp_path_factory.mktemp("pool") / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracedsync",
            "run",
            "--output-dir",
            str(out),
            "--",
            sys.executable,
            str(ROOT / "examples" / "config_reload.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_contention_ranks_first_idle_waits_apart(
    pool_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reloader's lock tops PRIMITIVES; the pool's Queue.get waits are IDLE WAITS;
    the eight workers are one THREADS row, blocked time and idle time apart."""
    doc = report_json(capsys, str(pool_run))
    top = doc["primitives"][0]
    assert top["kind"] == "lock" and top["name"].startswith("config_lock (config_reload.py:")
    assert top["contentions"] > 0 and top["wait"]["total"] > 0
    assert {p["kind"] for p in doc["primitives"]} <= {"lock", "rlock", "semaphore"}
    idle = {p["name"].split(" (")[0]: p for p in doc["idle_waits"]}
    assert idle["not_empty"]["kind"] == "condition"
    assert idle["not_empty"]["name"].startswith("not_empty (queue.py:")
    assert idle["not_empty"]["wait"]["total"] > top["wait"]["total"]  # yet ranked apart
    assert set(doc) >= {"primitives", "idle_waits", "still_blocked", "threads"}
    workers = doc["threads"][0]
    assert (workers["name"], workers["threads"], workers["id"]) == ("worker-*", 8, None)
    assert workers["wait_total"] > 0 and workers["idle_total"] > workers["wait_total"]
    assert workers["most_waited_on"]["name"] == top["name"]
    # Every site is printed one way: relative, as the holder sites and names are.
    sites = [s["site"] for p in doc["primitives"] + doc["idle_waits"] for s in p["sites"]]
    holders = [h["site"] for p in doc["primitives"] for s in p["sites"] for h in s["holders"]]
    assert sites and holders
    assert all(not s.startswith("/") and s.startswith("config_reload.py:") for s in sites)
    assert all(h.startswith("config_reload.py:") for h in holders)


def test_wait_gates_count_contention_only(
    pool_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """wait-* gates look at PRIMITIVES only; idle-wait-* at IDLE WAITS."""
    rc, _, err = report(capsys, str(pool_run), "--fail-on", "wait-max>2s,wait-total>5s")
    assert rc == 0, err  # the pool's idle time (seconds) does not count
    rc, _, err = report(capsys, str(pool_run), "--fail-on", "idle-wait-total>1s")
    assert rc == 1
    assert "fail-on idle-wait-total>1s breached: condition not_empty (queue.py:" in err
    assert "lock config_lock" not in err


def test_html_and_summary_show_both_sections(
    pool_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page has both sections; tracedsync run's summary names both."""
    page = tmp_path / "r.html"
    assert report(capsys, str(pool_run), "-f", "html", "-o", str(page))[0] == 0
    text = page.read_text()
    assert '<section id="primitives">' in text and '<section id="idle-waits">' in text
    assert text.index("config_lock") < text.index('<section id="idle-waits">')
    summary = run_report(str(pool_run), width=200)
    assert "  lock config_lock (config_reload.py:" in summary
    assert "  idle: condition not_empty (queue.py:" in summary


# -- counting right ----------


def test_timed_out_acquire_is_a_contention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An acquire that blocked and timed out: a contention, a timeout, a wait."""
    out = tmp_path / "out"
    traced(out)
    lock = tracedsync.Lock(name="timeout_lock")
    with lock:
        t = threading.Thread(target=lambda: lock.acquire(timeout=0.05), name="impatient")
        t.start()
        t.join(10)
        assert not t.is_alive()
    finish()
    p = prim(report_json(capsys, str(out)), "timeout_lock")
    assert p["timeouts"] == 1
    assert p["contentions"] == 1 and p["contention_rate"] == 0.5
    assert p["wait"]["max"] >= 0.05


def test_single_wait_percentiles_are_that_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One contended wait among the acquisitions: p99 and max are that wait, exactly."""
    out = tmp_path / "out"
    traced(out)
    lock = tracedsync.Lock(name="once_lock")
    held = threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            wait_until(blocked_on(lock))

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    with lock:
        pass
    t.join(10)
    finish()
    p = prim(report_json(capsys, str(out)), "once_lock")
    assert p["contentions"] == 1
    assert p["wait"]["p99"] == p["wait"]["max"] == p["spans"]["wait_total"]
    assert p["wait"]["p50"] == 0.0


def test_histogram_quantile_of_one_sample_is_the_sample() -> None:
    """One 8.00 s wait in a (4.19 s, 8.39 s] bucket: every percentile is 8.00 s."""
    bounds = [2.0**-20 * 2**i for i in range(24)]
    counts = [0] * 25
    counts[23] = 1
    h = Hist(bounds, counts, 8.0, None, 8.0)
    assert h.quantile(0.5) == h.quantile(0.95) == h.quantile(0.99) == 8.0


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.floats(min_value=1e-7, max_value=100.0), min_size=1, max_size=40),
    zeros=st.integers(min_value=0, max_value=5),
    q=st.floats(min_value=0.0, max_value=1.0),
)
def test_histogram_quantile_stays_inside_what_was_seen(
    samples: list[float], zeros: int, q: float
) -> None:
    """Interpolated or exact, a percentile never leaves [min, max] of the samples,
    and with the samples known it is the sample of that rank."""
    bounds = [2.0**-20 * 2**i for i in range(28)]
    h = Hist(bounds, [zeros] + [0] * 28, 0.0, None, None)
    for s in samples:
        h.add_sample(s)
    lo = 0.0 if zeros else min(samples)
    got = h.quantile(q)
    assert got is not None and lo - 1e-12 <= got <= max(samples) + 1e-12
    exact = sorted(s for s in samples if s > bounds[0])
    if len(exact) == len([s for s in samples if s > bounds[0]]) and all(
        s > bounds[0] for s in samples
    ):
        rank = max(1, math.ceil(q * h.count - 1e-9))
        want = 0.0 if rank <= zeros else exact[rank - zeros - 1]
        assert h.quantile(q, exact) == want


def test_threads_grouped_by_name_pattern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twelve Thread-N (serve) threads are one row with a count; a lone worker-1 stays itself."""
    out = tmp_path / "out"
    traced(out)
    lock = tracedsync.Lock(name="request_lock")

    def serve() -> None:
        with lock:
            pass

    with lock:
        threads = [threading.Thread(target=serve) for _ in range(12)]
        threads.append(threading.Thread(target=serve, name="worker-1"))
        for t in threads:
            t.start()
        wait_until(lambda: len(_waiting(lock)) == 13)
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    finish()
    doc = report_json(capsys, str(out))
    rows = {t["name"]: t for t in doc["threads"]}
    assert rows["Thread-* (serve)"]["threads"] == 12
    assert rows["Thread-* (serve)"]["waits"] == 12
    assert rows["worker-1"]["threads"] == 1 and rows["worker-1"]["id"] is not None
    rc, text, _ = report(capsys, str(out), "--width", "200")
    assert rc == 0
    assert "Thread-* (serve) (12 threads)" in text


def _waiting(prim_: Any) -> list[Any]:
    from tracedsync import waits

    return [t for t, entry in waits.snapshot().items() if entry.prim is prim_]


# -- waits still blocked at the end ----------


#: Two threads deadlocked over lock_a and lock_b (instances from two sites)
#: and a worker idle in queue.get(), all daemons: the program ends once all
#: three are blocked, and the runtime reports their waits still blocked.
BANK = """\
import queue
import threading

from tracedsync.testing import blocked_on, wait_until

lock_a = threading.Lock()
lock_b = threading.Lock()
jobs = queue.Queue()
both = threading.Barrier(2)


def t1():
    with lock_a:
        both.wait()
        with lock_b:  # T1-WAIT
            pass


def t2():
    with lock_b:
        both.wait()
        with lock_a:  # T2-WAIT
            pass


def worker():
    jobs.get()  # IDLE-WAIT


threads = [
    threading.Thread(target=t1, name="t1", daemon=True),
    threading.Thread(target=t2, name="t2", daemon=True),
    threading.Thread(target=worker, name="worker-1", daemon=True),
]
for t in threads:
    t.start()
wait_until(blocked_on(lock_a))
wait_until(blocked_on(lock_b))
wait_until(blocked_on(jobs.not_empty, idle=True))
"""


def bank_line(marker: str) -> int:
    return next(i for i, text in enumerate(BANK.splitlines(), 1) if marker in text)


def deadlocked_run(directory: Path) -> Path:
    """BANK under ``tracedsync run``: its output directory (unfinished wait
    spans and unfinished_wait events at exit, metrics without those waits)."""
    app = directory / "bank.py"
    app.write_text(BANK)
    out = directory / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--output-dir", str(out), "--",
         sys.executable, str(app)],
        capture_output=True, text=True, timeout=120, cwd=str(directory),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_still_blocked_waits_count_in_both_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deadlocked program: its locks show as contended with the waits still
    blocked; the idle worker is "still waiting", listed and gated, not a finding."""
    d = deadlocked_run(tmp_path)
    doc = report_json(capsys, str(d))
    still = {u["thread"]: u for u in doc["still_blocked"]}
    assert {(t, u["section"]) for t, u in still.items()} == {
        ("t1", "primitives"),
        ("t2", "primitives"),
        ("worker-1", "idle_waits"),
    }
    assert doc["still_blocked_total"] == {"primitives": 2, "idle_waits": 1}
    for name, thread in (("lock_a (bank.py:6)", "t2"), ("lock_b (bank.py:7)", "t1")):
        p = prim(doc, name)
        assert p in doc["primitives"]
        assert p["contentions"] == 1 and p["acquisitions"] == 1 and p["calls"] == 2
        assert p["still_blocked"]["count"] == 1
        assert (
            still[thread]["name"] == name
            and still[thread]["holder"] == ({"t1", "t2"} - {thread}).pop()
        )
        assert p["wait"]["max"] == pytest.approx(still[thread]["waited"], abs=1e-6)
        assert p["wait"]["total"] == pytest.approx(still[thread]["waited"], abs=1e-6)
    q = prim(doc, "not_empty (queue.py:46)")
    assert q in doc["idle_waits"] and q["still_blocked"]["count"] == 1
    assert q["blocked"] == 1
    assert q["wait"]["max"] == pytest.approx(still["worker-1"]["waited"], abs=1e-6)
    # Each blocked lock wait is one finding (its span and its events of each
    # flush count once); the idle one is none.
    assert doc["findings_by_event"]["unfinished_wait"] == 2
    assert {f["thread"] for f in doc["findings"] if f["event"] == "unfinished_wait"} == {"t1", "t2"}
    rc, out, err = report(capsys, str(d), "--width", "160", "--fail-on", "idle-unfinished>0")
    assert rc == 1 and "fail-on idle-unfinished>0 breached: 1" in err
    assert f"    still blocked at exit: t1 at bank.py:{bank_line('T1-WAIT')} for" in out
    assert f"held by t2 at bank.py:{bank_line('T2-WAIT')}" in out
    assert f"    still waiting at exit: worker-1 at bank.py:{bank_line('IDLE-WAIT')} for" in out


def test_still_blocked_waits_are_in_the_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Waits still blocked at exit are samples of the profiles, with the time
    they had waited: the deadlock is what the flame graph shows."""
    d = deadlocked_run(tmp_path)
    doc = report_json(capsys, str(d))
    rc, out, err = report(capsys, str(d), "-f", "folded")
    assert rc == 0, err
    lines = dict(line.rpartition(" ")[::2] for line in out.splitlines())
    for u in doc["still_blocked"]:
        if u["section"] != "primitives":
            continue
        [stack] = [s for s in lines if s.endswith(f"lock.wait {u['name']}")]
        assert stack.split(";")[-2] == f"{u['thread']} (bank.py:{u['site'].split(':')[1]})"
        # the JSON gives seconds to the microsecond; the profile, nanoseconds
        # (half a microsecond apart at most, and a float product may add a
        # hair to exactly that: compared to the microsecond, as above)
        assert int(lines[stack]) / 1e9 == pytest.approx(u["waited"], abs=1e-6)


# -- summary files ----------


def summary_doc(run: str, pid: int, **extra: Any) -> dict[str, Any]:
    doc = {
        "format": "tracedsync-summary/1",
        "run_id": run,
        "pid": pid,
        "argv": ["python", "app.py"],
        "start": "2027-01-15T08:00:00Z",
        "end": "2027-01-15T08:00:05Z",
        "histogram_bounds": files.BOUNDS,
        "primitives": [
            files.counters(
                "lock", "db_lock (app.py:3)", acquisitions=10, contentions=2, waits=[0.1, 0.3],
                holds=[0.05] * 10, uncontended=8,
            ),
            files.counters("event", "ready (app.py:4)", acquisitions=0, contentions=1, waits=[1.0]),
        ],
        "findings": [
            files.event(
                "stuck_wait", 3000, level="error", thread__name="w", sync__kind="lock",
                sync__name="db_lock (app.py:3)", message="w stuck on db_lock",
            )
        ],
        "unfinished": [],
        "telemetry": {
            "produced": 40, "dropped": 0, "suppressed": 3,
            "exporters": {"otlp": {"offered": 40, "exported": 30, "lane_dropped": 10, "failed": 0}},
        },
        "files": [],
    }  # fmt: skip
    doc.update(extra)
    return doc


def test_summary_file_alone_gives_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A summary directory alone (an otlp- or console-only run): counters, findings
    and each exporter's lane."""
    (tmp_path / "summary-s1-9.json").write_text(json.dumps(summary_doc("s1", 9)))
    doc = report_json(capsys, str(tmp_path))
    db = prim(doc, "db_lock (app.py:3)")
    assert (db["acquisitions"], db["contentions"], db["source"]) == (10, 2, "metrics")
    assert db["wait"]["total"] == pytest.approx(0.4) and db["wait"]["max"] == pytest.approx(0.3)
    assert prim(doc, "ready (app.py:4)") in doc["idle_waits"]
    assert doc["findings_by_event"] == {"stuck_wait": 1}
    assert doc["telemetry"]["exporters"]["otlp"]["lane_dropped"] == 10
    assert doc["runs"] == [{"run_id": "s1", "pids": [9]}]
    rc, out, _ = report(capsys, str(tmp_path), "--width", "160")
    assert rc == 0
    assert "exporter otlp: 30 of 40 exported, 10 dropped, 0 failed" in out


def test_summary_beside_metrics_and_logs_counts_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Summary and jsonl files of one run and pid: the metrics' counters win and
    the finding in both is one finding; a summary's listed files are read."""
    out = tmp_path / "out"
    out.mkdir()
    metrics = files.write(
        out / "metrics-s1-9.jsonl",
        [
            files.metrics_line(
                "s1",
                9,
                [files.counters("lock", "db_lock (app.py:3)", acquisitions=12, contentions=3,
                                waits=[0.1, 0.3, 0.2], uncontended=9)],
            )
        ],
    )  # fmt: skip
    doc = summary_doc("s1", 9)
    logs = files.write(out / "logs-s1-9.jsonl", [json.dumps(doc["findings"][0])])
    summaries = tmp_path / "summaries"
    summaries.mkdir()
    doc["files"] = [str(metrics), str(logs)]
    (summaries / "summary-s1-9.json").write_text(json.dumps(doc))
    for paths in ([str(summaries), str(out)], [str(summaries)]):
        result = report_json(capsys, *paths)
        db = prim(result, "db_lock (app.py:3)")
        assert (db["acquisitions"], db["contentions"]) == (12, 3)
        assert result["findings_by_event"] == {"stuck_wait": 1}
    text = run_report(str(summaries), full=True, width=160)
    assert "db_lock (app.py:3)" in text and "12" in text


def test_bad_summary_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A summary that is not one: one error line naming the file, exit 2."""
    bad = tmp_path / "summary-s1-9.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    rc, _, err = report(capsys, str(tmp_path))
    assert rc == 2 and f"{bad}: not a tracedsync summary" in err
    bad.write_text(json.dumps(summary_doc("s1", 9, primitives=[{"kind": "lock"}])))
    rc, _, err = report(capsys, str(tmp_path))
    assert rc == 2 and "primitives[0] lacks kind or name" in err
