"""Who blocked a wait, and whether the lock did: the hand-off share (the
time from the holder's release to the waiter's return) and the waits whose
holder the runtime could not name, from real traced runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.test_report import prim, report, report_json
from tracedsync.report import run_summary

#: gil_lock: the holder releases it as soon as the waiter blocks, then keeps
#: the GIL for 30 ms (a pure-Python loop; the switch interval is 1 s), so the
#: waiter, woken, waits for the GIL, not the lock. slow_lock: held 30 ms, then
#: released by a thread that ends: the lock is the cause.
HANDOFF_APP = """\
import sys
import threading
import time

from tracedsync.testing import blocked_on, wait_until

gil_lock = threading.Lock()
slow_lock = threading.Lock()
held = threading.Event()


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def holder(lock, hold_s, spin_s):
    lock.acquire()
    held.set()
    wait_until(blocked_on(lock))
    time.sleep(hold_s)
    lock.release()
    spin(spin_s)


def waiter(lock):
    held.wait(10)
    with lock:
        pass


sys.setswitchinterval(1.0)
for lock, hold_s, spin_s in [(gil_lock, 0.0, 0.03)] * 4 + [(slow_lock, 0.03, 0.0)] * 4:
    held.clear()
    threads = [
        threading.Thread(target=holder, args=(lock, hold_s, spin_s), name="holder"),
        threading.Thread(target=waiter, args=(lock,), name="waiter"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
"""

#: "first" releases the lock to "second" (blocked in it) and keeps the GIL
#: 10 ms, then takes the lock again: "second" holds it at the OS level but has
#: not run to say so, so first's wait names no holder.
RELEASED_APP = """\
import sys
import threading
import time

from tracedsync.testing import blocked_on, wait_until

lock = threading.Lock()
held = threading.Event()


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def first():
    lock.acquire()
    held.set()
    wait_until(blocked_on(lock))
    lock.release()
    spin(0.01)
    with lock:
        pass


def second():
    held.wait(10)
    with lock:
        pass


sys.setswitchinterval(1.0)
threads = [
    threading.Thread(target=first, name="first"),
    threading.Thread(target=second, name="second"),
]
for t in threads:
    t.start()
for t in threads:
    t.join(10)
"""


def traced(tmp_path: Path, source: str, *options: str) -> Path:
    app = tmp_path / "app.py"
    app.write_text(source)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--output-dir", str(out), *options, "--",
         sys.executable, str(app)],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def wait_spans(out: Path) -> list[dict[str, object]]:
    """Every wait span's attributes, read apart from the report."""
    found = []
    for path in out.glob("spans-*.jsonl"):
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        if span["name"].endswith(".wait"):
                            attrs = {
                                a["key"]: next(iter(a["value"].values()))
                                for a in span["attributes"]
                            }
                            found.append(attrs)
    return found


def test_handoff_share_flags_a_cpu_bound_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lock whose waits are mostly hand-off is flagged "wait far exceeds holds:
    CPU/GIL-bound, not this lock" in every format; a lock held long is not."""
    out = traced(tmp_path, HANDOFF_APP)
    doc = report_json(capsys, str(out))
    gil, slow = prim(doc, "gil_lock (app.py:7)"), prim(doc, "slow_lock (app.py:8)")
    spans = wait_spans(out)
    for p in (gil, slow):
        mine = [s for s in spans if s["sync.name"] == p["name"]]
        handoffs = [float(s["sync.wait.handoff"]) for s in mine]  # type: ignore[arg-type]
        assert len(handoffs) == p["handoff"]["waits"] == 4
        assert p["handoff"]["total"] == pytest.approx(sum(handoffs), abs=1e-6)
        assert p["handoff"]["wait_total"] == pytest.approx(p["spans"]["wait_total"], abs=1e-9)
    assert gil["handoff"]["share"] > 0.5 and gil["handoff"]["scheduling_bound"] is True
    assert slow["handoff"]["share"] < 0.5 and slow["handoff"]["scheduling_bound"] is False
    rc, text, _ = report(capsys, str(out), "--width", "200")
    assert rc == 0
    lines = text.splitlines()
    flag = "    ! wait far exceeds holds: CPU/GIL-bound, not this lock (hand-off "
    flagged = [i for i, line in enumerate(lines) if line.startswith(flag)]
    assert len(flagged) == 1 and "gil_lock (app.py:7)" in lines[flagged[0] - 1]
    assert any(line.startswith("    hand-off ") and "over 4 waits" in line for line in lines)
    summary = run_summary(str(out), width=200)
    assert "gil_lock (app.py:7)" in summary and "CPU/GIL-bound, not this lock" in summary
    assert summary.count("CPU/GIL-bound") == 1
    page = tmp_path / "r.html"
    assert report(capsys, str(out), "-f", "html", "-o", str(page))[0] == 0
    assert page.read_text().count("wait far exceeds holds: CPU/GIL-bound, not this lock") == 1


def test_waits_without_a_named_holder_are_counted_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each wait span is under the holder it names or, when the span says its
    holder released before the waiter looked, counted as such, per site and per
    primitive: the numbers are those of the spans in the files."""
    out = traced(tmp_path, RELEASED_APP, "--wait-threshold-ms", "0")
    doc = report_json(capsys, str(out))
    p = prim(doc, "lock (app.py:7)")
    spans = [s for s in wait_spans(out) if s["sync.name"] == p["name"]]
    named = [s for s in spans if "sync.holder.thread.name" in s]
    gone = [s for s in spans if s.get("sync.holder.released_before_wait") is True]
    assert len(named) + len(gone) == len(spans) == p["spans"]["waits"]
    assert p["released_before_wait"] == len(gone)
    assert sum(s["released_before_wait"] for s in p["sites"]) == len(gone)
    assert sum(h["waits"] for s in p["sites"] for h in s["holders"]) == len(named)
    rc, text, _ = report(capsys, str(out), "--width", "200")
    assert rc == 0
    if gone:
        assert f", {len(gone)} released before the waiter looked" in text
