"""``tracedsync report``: real files in, the numbers tracedsync itself measured out."""

from __future__ import annotations

import ast
import gc
import io
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.helpers import HOLDER_SITES, Contention
from tracedsync import HISTOGRAM_BOUNDS, recorder, registry
from tracedsync.cli import main
from tracedsync.report import model as report_model
from tracedsync.report import parse_fail_on, parse_time, print_run_report, run_summary
from tracedsync.report.model import Hist, Sketch
from tracedsync.report.read import ReportError, split_lines

ROOT = Path(__file__).resolve().parent.parent.parent
EVIL = 'evil <script>alert("x")</script> \x1b[31mred\x1b[0m\nnext'


@dataclass
class Run:
    """One traced run written to ``out`` and what tracedsync.stats() said."""

    out: Path
    stats: dict[tuple[str, str], tracedsync.PrimitiveStats]
    lock: str
    event: str
    waiter_line: int


def workload(rounds: int = 3, lock_name: str | None = None) -> tuple[Any, Any, int]:
    """Forced contention on a lock (``rounds`` times) and one timed-out event wait."""
    pool_lock = tracedsync.Lock(name=lock_name) if lock_name else tracedsync.Lock()
    ready = tracedsync.Event()
    line = 0
    for _ in range(rounds):
        c = Contention(pool_lock, extra_hold=0.005)
        c.run()
        line = c.acquire_line
    assert not ready.wait(0.002)
    return pool_lock, ready, line


def record(
    out: Path,
    rounds: int = 3,
    lock_name: str | None = None,
    flush_each: bool = False,
    **config: Any,
) -> Run:
    """Configure jsonfile into ``out``, run the workload, flush and shut down."""
    tracedsync.configure(
        exporters=["jsonfile"],
        output_dir=str(out),
        wait_threshold_ms=0,
        hold_threshold_ms=0,
        **config,
    )
    if flush_each:  # one batch per round: small files rotate between batches
        for _ in range(rounds - 1):
            workload(1, lock_name)
            assert tracedsync.flush()
        lock, event, line = workload(1, lock_name)
    else:
        lock, event, line = workload(rounds, lock_name)
    assert tracedsync.flush()
    names = (lock._meta.name, event._meta.name)
    # Primitives other tests left alive are in stats() (and in the metrics) too.
    stats = {(s.kind, s.name): s for s in tracedsync.stats() if s.name in names}
    tracedsync.shutdown()
    return Run(out, stats, names[0], names[1], line)


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return record(tmp_path / "out")


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``tracedsync report ARGS`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = main(["report", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def report_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    rc, out, err = report(capsys, *args, "--format", "json")
    assert rc == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def prim(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The entry of ``name`` in either section (PRIMITIVES or IDLE WAITS)."""
    entries = doc["primitives"] + doc["idle_waits"]
    found = [p for p in entries if p["name"] == name]
    assert len(found) == 1, [p["name"] for p in entries]
    return found[0]


def spans_in(paths: Iterator[Path] | list[Path]) -> int:
    """Tracedsync spans in files, counted independently of the report."""
    n = 0
    for path in paths:
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    if ss["scope"]["name"] == "tracedsync":
                        n += len(ss["spans"])
    return n


def bucket_range(histogram: tuple[int, ...], q: float) -> tuple[float, float]:
    """Bounds of the bucket holding the ``q`` quantile of a stats histogram."""
    count = sum(histogram)
    seen = 0
    for i, c in enumerate(histogram):
        seen += c
        if c and seen >= q * count:
            if i == 0:
                return 0.0, 0.0
            upper = HISTOGRAM_BOUNDS[i] if i < len(HISTOGRAM_BOUNDS) else float("inf")
            return HISTOGRAM_BOUNDS[i - 1], upper
    raise AssertionError("empty histogram")


# -- numbers ----------


def test_json_numbers_match_stats(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """Per primitive, counts, totals and maxima equal tracedsync.stats() of the run."""
    doc = report_json(capsys, str(run.out))
    for (kind, name), s in run.stats.items():
        p = prim(doc, name)
        assert p["kind"] == kind
        assert p["source"] == "metrics"
        assert p["contentions" if kind == "lock" else "blocked"] == s.contentions
        assert p["timeouts"] == s.timeouts
        assert p["wait"]["total"] == pytest.approx(s.wait_total, abs=1e-9)
        assert p["wait"]["max"] == pytest.approx(s.wait_max, abs=1e-9)
        assert p["wait"]["count"] == sum(s.wait_histogram)
        if kind == "lock":
            assert p["acquisitions"] == s.acquisitions == 6
            assert p["contention_rate"] == pytest.approx(s.contention_rate, abs=1e-6)
            assert p["hold"]["total"] == pytest.approx(s.hold_total, abs=1e-9)
            assert p["hold"]["max"] == pytest.approx(s.hold_max, abs=1e-9)
            assert p["hold"]["count"] == sum(s.hold_histogram)
            assert p in doc["primitives"]
        else:
            assert "acquisitions" not in p and "hold" not in p
            assert p["waits"] == s.waits == 1
            assert p in doc["idle_waits"]


def test_percentiles_lie_in_the_buckets_of_the_true_quantiles(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """p50/p95/p99 fall inside the histogram bucket that holds each true quantile."""
    doc = report_json(capsys, str(run.out))
    s = run.stats[("lock", run.lock)]
    p = prim(doc, run.lock)
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        for hist, section in ((s.wait_histogram, "wait"), (s.hold_histogram, "hold")):
            lo, hi = bucket_range(hist, q)
            assert lo - 1e-12 <= p[section][key] <= hi + 1e-12, (section, key)


def test_sites_holders_and_threads(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """The waiting call site, the holder's site and thread, and threads by wait time."""
    doc = report_json(capsys, str(run.out))
    p = prim(doc, run.lock)
    site = p["sites"][0]
    assert site["site"].endswith(f"tests/helpers.py:{run.waiter_line}")
    assert site["waits"] == p["spans"]["waits"] == 3
    assert site["holders"][0]["site"] in HOLDER_SITES
    assert site["holders"][0]["threads"] == ["holder"]
    assert site["holders"][0]["waits"] == 3
    # Each round has its own "waiter" and "holder" threads (thread ids may repeat).
    waiters = [t for t in doc["threads"] if t["name"] == "waiter"]
    holders = [t for t in doc["threads"] if t["name"] == "holder"]
    assert doc["threads"][0]["name"] == "waiter"
    assert sum(t["waits"] for t in waiters) == 3
    assert all(t["most_waited_on"]["name"] == run.lock for t in waiters)
    assert sum(t["holds"] for t in holders) >= 3
    waited = sum(t["wait_total"] for t in doc["threads"])
    assert waited == pytest.approx(sum(q["spans"]["wait_total"] for q in doc["primitives"]))


def test_table_shows_primitives_threads_and_findings(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default table: the lock under PRIMITIVES with its sites, the event under
    IDLE WAITS, threads, findings; every site printed relative to its sys.path entry."""
    rc, out, err = report(capsys, str(run.out), "--width", "200")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("tracedsync report: run ")
    primitives = lines.index(next(ln for ln in lines if ln.startswith("PRIMITIVES by time")))
    idle = lines.index(next(ln for ln in lines if ln.startswith("IDLE WAITS")))
    threads = lines.index(next(ln for ln in lines if ln.startswith("THREADS by time blocked")))
    assert primitives < idle < threads
    prim_lines = [ln for ln in lines if ln.startswith(("lock ", "event "))]
    assert run.lock in prim_lines[0] and lines.index(prim_lines[0]) < idle
    assert run.event in prim_lines[1] and idle < lines.index(prim_lines[1]) < threads
    cells = prim_lines[0].split()
    assert "6" in cells and "50.0%" in cells
    assert f"    waited at tests/helpers.py:{run.waiter_line} in acquire: 3 waits" in out
    assert "← held at tests/helpers.py:" in out
    assert any(ln.startswith("waiter ") for ln in lines)
    assert "FINDINGS" in out


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_table_fits_the_width(run: Run, capsys: pytest.CaptureFixture[str], width: int) -> None:
    """No line is wider than --width; narrow tables drop columns, never the name."""
    rc, out, _ = report(capsys, str(run.out), "--width", str(width))
    assert rc == 0
    assert max(len(line) for line in out.splitlines()) <= width
    assert "pool_lo" in out


def test_last_metrics_line_per_process_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Metrics lines are cumulative: the report uses the last one of the process."""
    out = tmp_path / "out"
    tracedsync.configure(
        exporters=["jsonfile"], output_dir=str(out), wait_threshold_ms=0, hold_threshold_ms=0
    )
    lock = tracedsync.Lock()
    Contention(lock, extra_hold=0.002).run()
    assert tracedsync.flush()
    Contention(lock, extra_hold=0.002).run()
    with lock:
        pass
    assert tracedsync.flush()
    [s] = [s for s in tracedsync.stats() if s.name == lock._meta.name]
    tracedsync.shutdown()
    [metrics] = out.glob("metrics-*.jsonl")
    assert len(metrics.read_text().splitlines()) >= 2
    p = prim(report_json(capsys, str(out)), s.name)
    assert p["acquisitions"] == s.acquisitions == 5
    assert p["contentions"] == s.contentions == 2


def test_processes_of_a_run_are_summed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes of one run (same run id, two pids): counts add up."""
    out = tmp_path / "out"
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys, threading
            sys.path.insert(0, {str(ROOT)!r})
            import tracedsync
            from tests.helpers import Contention
            tracedsync.configure(exporters=["jsonfile"], output_dir={str(out)!r},
                                 wait_threshold_ms=0, hold_threshold_ms=0)
            lock = tracedsync.Lock(name="shared_lock")
            for _ in range(int(sys.argv[1])):
                Contention(lock, extra_hold=0.002).run()
            tracedsync.flush()
            [s] = [s for s in tracedsync.stats() if s.name == "shared_lock"]
            print(json.dumps([s.acquisitions, s.contentions, s.wait_total]))
            """
        )
    )
    env = {**os.environ, "TRACEDSYNC_RUN_ID": "multi-1"}
    results = []
    for rounds in (1, 2):
        proc = subprocess.run(
            [sys.executable, str(script), str(rounds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.splitlines()[-1]))
    doc = report_json(capsys, str(out))
    assert doc["runs"][0]["run_id"] == "multi-1"
    assert len(doc["runs"][0]["pids"]) == 2
    p = prim(doc, "shared_lock")
    assert p["acquisitions"] == sum(r[0] for r in results) == 6
    assert p["contentions"] == sum(r[1] for r in results) == 3
    assert p["wait"]["total"] == pytest.approx(sum(r[2] for r in results), abs=1e-8)


# -- selecting files ----------


def test_rotated_files_are_all_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With small files, every rotated spans file counts, from a directory or named."""
    r = record(tmp_path / "out", rounds=6, flush_each=True, file_max_bytes=4096)
    spans = sorted(r.out.glob("spans-*.jsonl"))
    assert any(p.name.count(".") == 2 for p in spans), [p.name for p in spans]
    expected = spans_in(spans)
    doc = report_json(capsys, str(r.out))
    assert doc["spans"]["analysed"] == expected
    assert set(doc["files"]) >= {str(p) for p in spans}
    assert prim(doc, r.lock)["spans"]["waits"] == 6
    named = report_json(capsys, *[str(p) for p in r.out.iterdir()])
    assert named["spans"]["analysed"] == expected
    assert prim(named, r.lock)["acquisitions"] == 12  # 6 rounds, 6 locks of one name


def test_latest_run_by_default_all_runs_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory with two runs: the newest by default, both with --all-runs, one by --run."""
    out = tmp_path / "out"
    monkeypatch.setenv("TRACEDSYNC_RUN_ID", "run-old")
    old = record(out, rounds=1, lock_name="old_lock")
    gc.collect()
    registry.reset_stats()  # one process plays two runs: forget the first one's locks
    for f in out.iterdir():
        os.utime(f, (1_000_000_000, 1_000_000_000))
    monkeypatch.setenv("TRACEDSYNC_RUN_ID", "run-new")
    new = record(out, rounds=1, lock_name="new_lock")
    names = lambda d: {p["name"] for p in d["primitives"]}  # noqa: E731
    latest = report_json(capsys, str(out))
    assert [r["run_id"] for r in latest["runs"]] == ["run-new"]
    assert new.lock in names(latest) and old.lock not in names(latest)
    both = report_json(capsys, str(out), "--all-runs")
    assert {r["run_id"] for r in both["runs"]} == {"run-old", "run-new"}
    assert {old.lock, new.lock} <= names(both)
    chosen = report_json(capsys, str(out), "--run", "run-old")
    assert old.lock in names(chosen) and new.lock not in names(chosen)
    rc, _, err = report(capsys, str(out), "--run", "nope")
    assert rc == 2 and "run-old" in err and "run-new" in err


def test_foreign_scope_spans_are_skipped_and_counted(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Collector-style file mixing an app's scope with ours: ours analysed, theirs counted."""
    [spans] = run.out.glob("spans-*.jsonl")
    first = json.loads(spans.read_text().splitlines()[0])
    ours = first["resourceSpans"][0]["scopeSpans"][0]
    app_span = {
        "traceId": "0" * 31 + "1",
        "spanId": "0" * 15 + "1",
        "name": "GET /orders",
        "kind": 2,
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [],
    }
    mixed = {
        "resourceSpans": [
            {
                "resource": first["resourceSpans"][0]["resource"],
                "scopeSpans": [
                    {"scope": {"name": "opentelemetry.instrumentation.flask"}, "spans": [app_span]},
                    ours,
                    {"scope": {"name": "app"}, "spans": [app_span, app_span]},
                ],
            }
        ]
    }
    collector = tmp_path / "collector-traces.json"
    collector.write_text(json.dumps(mixed) + "\n")
    doc = report_json(capsys, str(collector))
    assert doc["spans"]["foreign_skipped"] == 3
    assert doc["spans"]["foreign_scopes"] == {"app": 2, "opentelemetry.instrumentation.flask": 1}
    assert doc["spans"]["analysed"] == len(ours["spans"])
    rc, out, _ = report(capsys, str(collector))
    assert rc == 0 and "3 spans of other scopes skipped" in out


# -- filters ----------


def test_kind_and_name_filters(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """--kind and --name keep matching primitives only, in every section."""
    events = report_json(capsys, str(run.out), "--kind", "event")
    assert events["primitives"] == []
    assert [p["name"] for p in events["idle_waits"]] == [run.event]
    assert all(t["most_waited_on"]["name"] == run.event for t in events["threads"])
    locks = report_json(capsys, str(run.out), "--name", "pool_* (tests/report/test_report.py:*)")
    assert [p["name"] for p in locks["primitives"]] == [run.lock]
    both = report_json(capsys, str(run.out), "--kind", "lock,event")
    assert [p["name"] for p in both["primitives"]] == [run.lock]
    assert [p["name"] for p in both["idle_waits"]] == [run.event]
    none = report_json(capsys, str(run.out), "--name", "nothing*")
    assert none["primitives"] == [] and none["threads"] == []
    rc, _, err = report(capsys, str(run.out), "--kind", "mutex")
    assert rc == 2 and "mutex" in err


def test_top_limits_primitives_and_threads(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """--top 1: the primitive with most wait and the thread that waited most."""
    doc = report_json(capsys, str(run.out), "--top", "1")
    assert [p["name"] for p in doc["primitives"]] == [run.lock]
    assert [p["name"] for p in doc["idle_waits"]] == [run.event]
    assert [t["name"] for t in doc["threads"]] == ["waiter"]
    rc, out, _ = report(capsys, str(run.out), "--top", "1")
    assert rc == 0
    assert f"THREADS by time blocked on contention, top 1 of {doc['threads_total']}" in out


def test_time_window(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """--since/--until: relative to the run start or ISO; outside the run, nothing."""
    everything = report_json(capsys, str(run.out), "--since", "0s")
    assert everything["spans"]["analysed"] == spans_in(list(run.out.glob("spans-*")))
    assert prim(everything, run.lock)["acquisitions"] == 6
    later = report_json(capsys, str(run.out), "--since", "1h")
    assert later["spans"]["analysed"] == 0 and later["primitives"] == []
    assert later["spans"]["filtered_out"] == everything["spans"]["analysed"]
    before = report_json(capsys, str(run.out), "--until", "2001-01-01T00:00:00Z")
    assert before["spans"]["analysed"] == 0 and before["primitives"] == []
    assert before["time"]["until"] == "2001-01-01T00:00:00.000000Z"
    start = everything["time"]["run_start"]
    window = report_json(capsys, str(run.out), "--since", start, "--until", "1h")
    assert window["spans"]["analysed"] == everything["spans"]["analysed"]
    rc, _, err = report(capsys, str(run.out), "--since", "yesterday")
    assert rc == 2 and "yesterday" in err and "ISO 8601" in err
    rc, _, err = report(capsys, str(run.out), "--since", "2s", "--until", "1s")
    assert rc == 2 and "before" in err


def test_parse_time_formats() -> None:
    """Durations count from the run start; ISO times with Z, offsets or none (UTC)."""
    start = 1_000_000_000_000_000_000
    assert parse_time("30s", start, "--since") == start + 30_000_000_000
    assert parse_time("+1m30s", start, "--since") == start + 90_000_000_000
    assert parse_time("250ms", start, "--since") == start + 250_000_000
    assert parse_time("1.5h", start, "--since") == start + 5_400_000_000_000
    iso = parse_time("2001-09-09T01:46:40Z", None, "--since")
    assert iso == start
    assert parse_time("2001-09-09T03:46:40+02:00", None, "--since") == start
    assert parse_time("2001-09-09T01:46:40", None, "--since") == start
    with pytest.raises(ReportError, match="no run start"):
        parse_time("30s", None, "--since")


# -- fail-on ----------


def test_fail_on_breach_exits_1_and_names_it(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """A breached threshold: exit 1, the report still printed, each breach on stderr."""
    rc, out, err = report(
        capsys, str(run.out), "--fail-on", "wait-max>1us,contention-rate>=20%,idle-wait-max>1us"
    )
    assert rc == 1
    assert "PRIMITIVES" in out
    assert f"fail-on wait-max>1us breached: lock {run.lock}: " in err
    # wait-* gates count contention only; the event's wait has its own gate.
    assert f"fail-on wait-max>1us breached: event {run.event}" not in err
    assert f"fail-on idle-wait-max>1us breached: event {run.event}: " in err
    assert f"fail-on contention-rate>=20% breached: lock {run.lock}: 50.0%" in err
    doc = json.loads(report(capsys, str(run.out), "-f", "json", "--fail-on", "hold-p99>0ns")[1])
    assert doc["fail_on"][0]["condition"] == "hold-p99>0ns"
    assert doc["fail_on"][0]["breached"] is True
    assert doc["fail_on"][0]["breaches"][0]["name"] == run.lock


def test_fail_on_not_breached_exits_0(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """Thresholds that hold: exit 0, nothing on stderr."""
    rc, _, err = report(
        capsys,
        str(run.out),
        "--fail-on",
        "wait-p99>1h",
        "--fail-on",
        "hold-max>10min,contentions>100,inversions>0,stuck-waits>=1",
    )
    assert rc == 0
    assert err == ""


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("wait-p99", "expected METRIC OP VALUE"),
        ("latency>1s", "unknown metric 'latency'"),
        ("wait-p99>fast", "'fast' is not a duration"),
        ("contention-rate>lots", "is not a fraction"),
    ],
)
def test_fail_on_bad_expressions(
    run: Run, capsys: pytest.CaptureFixture[str], expr: str, message: str
) -> None:
    """A malformed --fail-on is a one-line usage error, exit 2."""
    rc, _, err = report(capsys, str(run.out), "--fail-on", expr)
    assert rc == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_parse_fail_on_units() -> None:
    """Durations in seconds, rates as fractions or percentages, counts as numbers."""
    a, b, c, d = parse_fail_on(["wait-p99>50ms,contention-rate>20%", "findings>=1", "hold-max<2s"])
    assert (a.metric, a.op, a.value) == ("wait-p99", ">", 0.05)
    assert b.value == pytest.approx(0.2)
    assert (c.metric, c.op, c.value) == ("findings", ">=", 1)
    assert (d.op, d.value) == ("<", 2.0)


# -- findings ----------


def test_findings_from_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Findings in the logs are listed (event, level, thread, primitive, message) and gated."""
    out = tmp_path / "out"
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(out))
    lock = tracedsync.Lock(name="ledger_lock")
    with lock:
        pass
    recorder.finding(
        "deadlock_detected",
        {
            "message": "worker-1 waits for ledger_lock held by worker-2, which waits for it",
            "thread.name": "worker-1",
            "sync.name": "ledger_lock",
            "level": "error",
            "cycle": ["worker-1", "worker-2"],
        },
    )
    recorder.finding(
        "future_finding", {"message": "something new", "level": "warning", "weird": {"x": 1}}
    )
    assert tracedsync.flush()
    tracedsync.shutdown()
    doc = report_json(capsys, str(out))
    # (Drops earlier tests of this process caused may be reported too.)
    assert doc["findings_by_event"]["deadlock_detected"] == 1
    assert doc["findings_by_event"]["future_finding"] == 1
    dl = next(f for f in doc["findings"] if f["event"] == "deadlock_detected")
    assert dl["level"] == "error"
    assert dl["thread"] == "worker-1"
    assert dl["primitive"] == "ledger_lock"
    assert dl["fields"]["cycle"] == ["worker-1", "worker-2"]
    assert dl["timestamp"].endswith("Z")
    rc, table, err = report(capsys, str(out), "--fail-on", "deadlocks>0", "--width", "200")
    assert rc == 1 and "fail-on deadlocks>0 breached: 1" in err
    assert "deadlock_detected [worker-1 · ledger_lock]: worker-1 waits for ledger_lock" in table
    assert "future_finding: something new" in table
    filtered = report_json(capsys, str(out), "--name", "other*")
    assert "deadlock_detected" not in filtered["findings_by_event"]
    assert filtered["findings_by_event"]["future_finding"] == 1


def test_drops_and_export_failures_are_findings(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """telemetry_dropped and exporter_failed events and the telemetry metrics are reported."""
    [logs] = run.out.glob("logs-*.jsonl")
    with logs.open("a") as f:
        f.write(
            json.dumps(
                {
                    "timestamp": "2030-01-01T00:00:00.000000Z",
                    "level": "warning",
                    "event": "telemetry_dropped",
                    "dropped": 7,
                    "dropped_total": 7,
                    "produced_total": 100,
                }
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "timestamp": "2030-01-01T00:00:01.000000Z",
                    "level": "error",
                    "event": "exporter_failed",
                    "exporter": "otlp",
                    "error": "ConnectionError",
                    "detail": "refused",
                }
            )
            + "\n"
        )
    rc, out, err = report(capsys, str(run.out), "--fail-on", "export-failures>0", "--width", "200")
    assert rc == 1 and "export-failures>0 breached" in err
    assert "telemetry_dropped: tracedsync dropped 7 records (7 of 100 in all)" in out
    assert "exporter_failed: exporter otlp failed: ConnectionError: refused" in out
    doc = report_json(capsys, str(run.out))
    assert doc["telemetry"]["produced"] > 0
    assert set(doc["telemetry"]) == {
        "produced",
        "exported",
        "dropped",
        "failed",
        "suppressed",
        "exporters",
    }


# -- bad input ----------


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc, _, err = report(capsys, *args)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tracedsync report: ")
    return lines[0]


def test_missing_path_and_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing path or a directory without tracedsync files: one line, exit 2."""
    err = one_line_error(capsys, str(tmp_path / "nope"))
    assert f"no such file or directory: {tmp_path / 'nope'}" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    err = one_line_error(capsys, str(tmp_path / "empty"))
    assert "no tracedsync files" in err and str(tmp_path / "empty") in err


def test_non_json_line_names_file_and_line(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line that is not JSON (not the last one): file:line, exit 2."""
    [spans] = run.out.glob("spans-*.jsonl")
    first = spans.read_text().splitlines()[0]
    bad = tmp_path / "spans-bad-1.jsonl"
    bad.write_text(f"{first}\n{{not json\n{first}\n")
    err = one_line_error(capsys, str(bad))
    assert f"{bad}:2: not JSON" in err


@pytest.mark.parametrize(
    "line",
    ['{"hello": "world"}', "[1, 2, 3]", '{"resourceSpans": {"not": "a list"}}', "42"],
)
def test_json_that_is_not_an_export_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    """JSON that is no OTLP export request: file:line, exit 2."""
    bad = tmp_path / "traces.jsonl"
    bad.write_text(line + "\n")
    err = one_line_error(capsys, str(bad))
    assert f"{bad}:1: " in err
    assert "OTLP" in err or "resourceSpans" in err


def test_log_line_that_is_not_an_event(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """A logs file line without "event": file:line, exit 2."""
    [logs] = run.out.glob("logs-*.jsonl")
    n = len(logs.read_text().splitlines())
    with logs.open("a") as f:
        f.write('{"level": "info"}\n{"event": "x"}\n')
    err = one_line_error(capsys, str(run.out))
    assert f"{logs}:{n + 1}: not a tracedsync log event" in err


def test_span_missing_sync_attributes(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tracedsync wait/hold span without sync.kind: file:line, exit 2."""
    [spans] = run.out.glob("spans-*.jsonl")
    lines = spans.read_text().splitlines()
    doc = json.loads(lines[0])
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "sync.kind"]
    bad = tmp_path / "spans-x-1.jsonl"
    bad.write_text(lines[0] + "\n" + json.dumps(doc) + "\n")
    err = one_line_error(capsys, str(bad))
    assert f"{bad}:2: tracedsync span" in err and "lacks sync.kind" in err


def test_truncated_last_line_is_a_warning(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """A killed process's half-written last line: a warning, the rest analysed, exit 0."""
    before = report_json(capsys, str(run.out))
    [spans] = run.out.glob("spans-*.jsonl")
    n = len(spans.read_text().splitlines())
    with spans.open("a") as f:
        f.write(spans.read_text().splitlines()[0][:150])
    rc, out, err = report(capsys, str(run.out), "--format", "json")
    assert rc == 0
    assert f"warning: {spans}:{n + 1}: truncated last line skipped" in err
    after = json.loads(out)
    assert after["spans"] == before["spans"]
    assert any("truncated" in w for w in after["warnings"])


def test_line_length_cap(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """A line longer than --max-line-bytes is an error naming file:line, not a memory hog."""
    [spans] = run.out.glob("spans-*.jsonl")
    err = one_line_error(capsys, str(spans), "--max-line-bytes", "1000")
    assert f"{spans}:1: line longer than 1000 bytes" in err


def test_unwritable_output(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o into a missing directory: one line, exit 2."""
    err = one_line_error(capsys, str(run.out), "-o", str(tmp_path / "no" / "such" / "r.txt"))
    assert "cannot write" in err


# -- escaping ----------


@pytest.fixture
def evil_run(tmp_path: Path) -> Run:
    return record(tmp_path / "out", rounds=1, lock_name=EVIL)


def test_hostile_names_are_escaped_in_table_and_json(
    evil_run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """Control characters and ANSI escapes never reach the terminal; JSON escapes <script>."""
    rc, out, _ = report(capsys, str(evil_run.out), "--width", "300")
    assert rc == 0
    assert "\x1b" not in out
    assert "\\x1b[31mred" in out
    assert "\\x0anext" in out
    rc, text, _ = report(capsys, str(evil_run.out), "--format", "json")
    assert "<script>" not in text and "\x1b" not in text
    assert "\\u003cscript\\u003e" in text
    assert prim(json.loads(text), EVIL)["name"] == EVIL


def test_hostile_names_are_escaped_in_html_and_perfetto(
    evil_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The HTML page and the trace carry the name only escaped."""
    page = tmp_path / "r.html"
    trace = tmp_path / "t.json"
    assert report(capsys, str(evil_run.out), "-f", "html", "-o", str(page))[0] == 0
    assert report(capsys, str(evil_run.out), "-f", "perfetto", "-o", str(trace))[0] == 0
    html_text = page.read_text()
    assert "<script>alert" not in html_text
    assert "\x1b" not in html_text
    assert "&lt;script&gt;alert(&quot;x&quot;)" in html_text
    trace_text = trace.read_text()
    assert "<script>" not in trace_text and "\x1b" not in trace_text
    names = {
        e["args"]["primitive"] for e in json.loads(trace_text)["traceEvents"] if e["ph"] == "X"
    }
    assert EVIL in names


# -- perfetto ----------


def test_perfetto_trace_structure(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Chrome Trace Event JSON: named thread tracks, X slices, paired flow arrows."""
    trace = tmp_path / "trace.json"
    rc, _, err = report(capsys, str(run.out), "--format", "perfetto", "-o", str(trace))
    assert rc == 0, err
    doc = json.loads(trace.read_text())
    events = doc["traceEvents"]
    assert doc["displayTimeUnit"] == "ms"
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == spans_in(list(run.out.glob("spans-*")))
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    assert set(names.values()) >= {"holder", "waiter"}
    for e in slices:
        assert (e["pid"], e["tid"]) in names
        assert e["ts"] >= 0 and e["dur"] >= 0
        assert e["cat"] in ("wait", "hold")
        assert names[(e["pid"], e["tid"])] == e["args"]["thread"]
        assert 0 < e["tid"] < 2**31
    waits = [e for e in slices if e["cat"] == "wait" and e["args"]["primitive"] == run.lock]
    assert len(waits) == 3 and all(w["args"]["holder"] == "holder" for w in waits)
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    finishes = {e["id"]: e for e in events if e["ph"] == "f"}
    assert len(starts) >= 3 and starts.keys() == finishes.keys()
    for fid, s in starts.items():
        f = finishes[fid]
        assert names[(s["pid"], s["tid"])] == "holder"
        assert names[(f["pid"], f["tid"])] == "waiter"
        assert f["bp"] == "e" and f["ts"] >= s["ts"]
        # Each end sits inside a slice of its thread.
        for end in (s, f):
            assert any(
                x["tid"] == end["tid"] and x["ts"] <= end["ts"] <= x["ts"] + x["dur"]
                for x in slices
            )


# -- entry points and internals ----------


def test_python_dash_m_report(run: Run) -> None:
    """``python -m tracedsync report DIR`` prints the table."""
    proc = subprocess.run(
        [sys.executable, "-m", "tracedsync", "report", str(run.out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr
    assert "pool_lock (tests/" in proc.stdout and "THREADS" in proc.stdout


def test_default_path_from_environment(
    run: Run, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No PATH: $TRACEDSYNC_OUTPUT_DIR (else ./tracedsync-out)."""
    monkeypatch.setenv("TRACEDSYNC_OUTPUT_DIR", str(run.out))
    rc, out, _ = report(capsys)
    assert rc == 0 and run.lock in out


def test_run_summary_for_tracedsync_run(run: Run) -> None:
    """tracedsync run's exit summary: a few lines, or the full table with --report."""
    short = run_summary(str(run.out), None, full=False, width=200)
    lines = short.splitlines()
    assert lines[0].startswith("tracedsync: run ") and "1 process(es)" in lines[0]
    assert lines[1].startswith(f"  lock {run.lock}: 6 calls, 3 contended (50.0%)")
    assert lines[-1] == f"  tracedsync report {run.out}   for the full analysis"
    assert any(ln.startswith(f"  idle: event {run.event}: 1 waits") for ln in lines)
    full = run_summary(str(run.out), None, full=True, width=200)
    assert "PRIMITIVES by time waited on contention" in full and "IDLE WAITS" in full
    missing = run_summary(str(run.out), "no-such-run", full=True)
    assert missing.startswith("tracedsync report: no files of run 'no-such-run'")
    assert len(missing.splitlines()) == 1


def test_print_run_report_hook(run: Run) -> None:
    """The hook for ``tracedsync run --report`` prints the table of one run."""
    stream = io.StringIO()
    assert print_run_report(str(run.out), stream=stream, width=120)
    assert run.lock in stream.getvalue()
    bad = io.StringIO()
    assert not print_run_report(str(run.out / "missing"), stream=bad)
    assert bad.getvalue().startswith("tracedsync report: no such file")


def test_report_imports_neither_opentelemetry_nor_structlog() -> None:
    """The report reads files with json only: no OpenTelemetry, structlog, pickle or
    eval, and of tracedsync only its own package, the CLI's error and _format."""
    modules = sorted((ROOT / "tracedsync" / "report").glob("*.py"))
    assert len(modules) >= 9
    for path in modules:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), path
                continue
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in ("opentelemetry", "structlog", "pickle", "marshal"), (path, name)
                if top == "tracedsync":
                    assert name in (
                        "tracedsync._format",
                        "tracedsync.cli",
                        "tracedsync.kinds",
                        "tracedsync.report",
                    ) or name.startswith("tracedsync.report."), (path, name)


def test_hist_quantile_interpolates_and_merges() -> None:
    """Quantiles interpolate inside buckets, clamp to max, and histograms add up."""
    h = Hist([1.0, 2.0, 4.0], [0, 10, 0, 0], 15.0, 1.0, 2.0)
    assert h.quantile(0.5) == pytest.approx(1.5)
    assert h.quantile(1.0) == pytest.approx(2.0)
    h.add(Hist([1.0, 2.0, 4.0], [10, 0, 0, 0], 0.0, 0.0, 0.5))
    assert h.count == 20 and h.min == 0.0
    assert h.quantile(0.25) == 0.0
    assert Hist([1.0], [0, 0], 0.0, None, None).quantile(0.5) is None


def test_sketch_quantiles_are_within_an_eighth() -> None:
    """The span sketch keeps a few hundred buckets and quantiles within 12.5%."""
    sketch = Sketch()
    values = [int(1000 * 1.01**i) for i in range(2000)]
    for v in values:
        sketch.add(v)
    assert len(sketch.buckets) <= 8 * 30  # 8 per power of two
    for q in (0.5, 0.95, 0.99):
        true = sorted(values)[int(q * len(values)) - 1]
        got = sketch.quantile(q)
        assert got is not None and abs(got - true) / true <= 0.125
    assert sketch.quantile(1.0) == max(values)


def test_event_waits_count_as_calls(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    """For an Event (an idle wait): wait() calls, those that blocked, those that timed out."""
    p = prim(report_json(capsys, str(run.out)), run.event)
    s = run.stats[("event", run.event)]
    assert p["waits"] == s.waits == 1
    assert p["blocked"] == s.contentions == 1
    assert p["timeouts"] == s.timeouts == 1


def test_worker_processes_give_the_same_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spans files cut into chunks for worker processes: the same document as one reader."""
    r = record(tmp_path / "out", rounds=6, flush_each=True)
    single = report_json(capsys, str(r.out), "--jobs", "1")
    monkeypatch.setattr(report_model, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(report_model, "CHUNK_BYTES", 2000)
    [spans] = r.out.glob("spans-*.jsonl")
    assert len(split_lines(str(spans), 2000)) >= 3
    multi = report_json(capsys, str(r.out), "--jobs", "2")
    assert multi == single
    traces = []
    for jobs in ("1", "2"):
        path = tmp_path / f"trace-{jobs}.json"
        rc, _, err = report(capsys, str(r.out), "-j", jobs, "-f", "perfetto", "-o", str(path))
        assert rc == 0, err
        events = json.loads(path.read_text())["traceEvents"]
        slices = sorted((e["args"]["span_id"], e["tid"], e["ts"]) for e in events if e["ph"] == "X")
        names = sorted(
            (e["tid"], e["args"]["name"]) for e in events if e.get("name") == "thread_name"
        )
        flows = sorted((e["ph"], e["tid"], e["ts"]) for e in events if e["ph"] in ("s", "f"))
        traces.append((slices, names, flows))
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tracedsync")] == []
    assert traces[0] == traces[1]
    assert len(traces[0][2]) == 12  # 6 waits, each an arrow from its holder's release
    # The profiles too, the holder side included (a wait's hold may be in the
    # chunk before).
    for side in ("waiter", "holder"):
        folded = [report(capsys, str(r.out), "-j", j, "-f", "folded", "--profile-side", side)
                  for j in ("1", "2")]  # fmt: skip
        assert folded[0] == folded[1] and folded[0][0] == 0
        assert "(holder unknown)" not in folded[0][1]
    # An error in a later chunk still names the right line of the file.
    lines = spans.read_text().splitlines()
    lines[-2] = "{broken"
    spans.write_text("\n".join(lines) + "\n")
    err = one_line_error(capsys, str(r.out), "--jobs", "2")
    assert f"{spans}:{len(lines) - 1}: not JSON" in err


def test_split_lines_cuts_at_line_ends(tmp_path: Path) -> None:
    """Chunks cover the file exactly, end at newlines and know the lines before them."""
    path = tmp_path / "f.jsonl"
    lines = [json.dumps({"n": i, "pad": "x" * (i % 37)}) for i in range(500)]
    path.write_text("\n".join(lines) + "\n")
    data = path.read_bytes()
    chunks = split_lines(str(path), 1000)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(data)
    for (_, e0, _), (s1, _, n1) in itertools.pairwise(chunks):
        assert e0 == s1 and data[e0 - 1 : e0] == b"\n"
        assert data[:s1].count(b"\n") == n1


def test_window_uses_the_difference_of_metrics_snapshots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since between two exports: counts are what happened after it, spans too."""
    out = tmp_path / "out"
    tracedsync.configure(
        exporters=["jsonfile"], output_dir=str(out), wait_threshold_ms=0, hold_threshold_ms=0
    )
    lock = tracedsync.Lock(name="window_lock")
    for _ in range(2):
        Contention(lock, extra_hold=0.002).run()
    assert tracedsync.flush()
    middle = time.time_ns()
    time.sleep(0.01)
    for _ in range(3):
        Contention(lock, extra_hold=0.002).run()
    with lock:
        pass
    assert tracedsync.flush()
    tracedsync.shutdown()
    since = datetime.fromtimestamp(middle / 1e9, tz=timezone.utc).isoformat()
    whole = prim(report_json(capsys, str(out)), "window_lock")
    assert (whole["acquisitions"], whole["contentions"]) == (11, 5)
    later = prim(report_json(capsys, str(out), "--since", since), "window_lock")
    assert (later["acquisitions"], later["contentions"]) == (7, 3)
    assert later["spans"]["waits"] == 3
    assert later["wait"]["count"] == 7
    assert later["wait"]["total"] < whole["wait"]["total"]


def test_table_to_a_file(run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o FILE writes the report there and nothing on stdout; no temporary file stays."""
    target = tmp_path / "report.txt"
    rc, out, _ = report(capsys, str(run.out), "-o", str(target))
    assert rc == 0 and out == ""
    assert run.lock in target.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("report.txt")] == ["report.txt"]


def test_a_traced_program_never_imports_the_report(tmp_path: Path) -> None:
    """install(), contention, flush and exit under jsonfile: no tracedsync.report module loaded."""
    code = textwrap.dedent(
        f"""
        import sys, threading
        import tracedsync
        tracedsync.configure(exporters=["jsonfile"], output_dir={str(tmp_path)!r},
                             wait_threshold_ms=0, hold_threshold_ms=0)
        tracedsync.install()
        lock = threading.Lock()
        with lock:
            t = threading.Thread(target=lambda: lock.acquire(timeout=0.01))
            t.start()
            t.join(10)
        tracedsync.flush()
        print(sorted(m for m in sys.modules if m.startswith("tracedsync.report")))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_wait_folding_buckets_like_the_sketch() -> None:
    """The wait path writes Sketch.add out for speed: the same buckets, count and max."""
    from tracedsync.report.model import Analysis
    from tracedsync.report.read import NO_HOLDER, SpanAttrs, SpanRecord

    analysis = Analysis()
    reference = Sketch()
    attrs = SpanAttrs("lock", "l")
    for i, dur in enumerate([0, 1, 15, 16, 17, 1000, 123_456, 10**9, 7 * 10**9 + 3]):
        rec = SpanRecord(attrs, NO_HOLDER, "r", 1, True, 10**18, 10**18 + dur, f"s{i}", [], None)
        analysis.add_span(rec)
        reference.add(dur)
    prim = analysis.prims[("lock", "l")]
    for sketch in (prim.wait_sketch, prim.sites["?"].sketch):
        assert (sketch.buckets, sketch.count, sketch.max) == (
            reference.buckets,
            reference.count,
            reference.max,
        )
