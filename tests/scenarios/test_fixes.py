"""Runtime faults the scenarios found, each pinned down in-process.

The scenarios (``test_scenarios.py``) show them end to end, under
``tracedsync run``; these tests say exactly what was wrong, and fail fast.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.report import files
from tracedsync import _sites, acquisition, cli, detection, recorder, waits
from tracedsync.testing import LogCollector, blocked_on, threads_running, wait_until

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def configure(logs: LogCollector, **kw: Any) -> None:
    options: dict[str, Any] = {"watchdog_interval_ms": 50, "stuck_after_ms": 60_000}
    options.update(kw)
    tracedsync.configure(exporters=[logs], **options)


def test_unfinished_wait_events_carry_a_timestamp(logs: LogCollector) -> None:
    """``unfinished_wait`` has a timestamp like every other event (the report
    sorted it first, as "?")."""
    configure(logs)
    never = tracedsync.Event(name="never")
    waiter = threading.Thread(target=never.wait, name="waiter", daemon=True)
    waiter.start()
    try:
        wait_until(blocked_on(never))
        assert tracedsync.flush(10)
        (event,) = logs.named("unfinished_wait")
        assert ISO_UTC.fullmatch(event["timestamp"])
    finally:
        never.set()
        waiter.join(10)


SECOND_SIGTERM = """
import os, signal, sys
from tracedsync import child, lifecycle

calls = []

def final_flush():
    calls.append(1)
    if len(calls) == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # another SIGTERM while this flush runs
        sum(range(100000))                    # bytecodes: the pending handler runs here
        sys.stdout.write(f"flushed, {len(calls)} flush\\n")
        sys.stdout.flush()

lifecycle.final_flush = final_flush
child._flush_on_sigterm()
os.kill(os.getpid(), signal.SIGTERM)
sum(range(100000))
sys.stdout.write("survived SIGTERM\\n")
"""


def test_a_second_sigterm_does_not_cut_the_final_flush_short() -> None:
    """A SIGTERM sent to the process group reaches the program twice (directly
    and forwarded by ``tracedsync run``): the second, arriving during the
    final flush, killed the process before the flush had written anything."""
    result = subprocess.run(
        [sys.executable, "-c", SECOND_SIGTERM], capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "flushed, 1 flush\n", result.stderr
    assert result.returncode == -signal.SIGTERM


def take_three(pool: Any) -> None:
    for _ in range(3):
        pool.acquire()  # TAKEN_LINE


TAKEN_LINE = f"tests/scenarios/test_fixes.py:{take_three.__code__.co_firstlineno + 2}"


def test_permits_leaked_by_an_ended_thread_name_it_also_under_a_reused_ident(
    logs: LogCollector,
) -> None:
    """A thread that ended holding permits is named (not ``thread-<ident>``)
    and said to have ended -- also when the waiter runs under the ident the
    leaker had (threads started later reuse idents), which made the waiter
    take the leaked permits for its own and name no holder at all."""
    configure(logs, watchdog_interval_ms=60_000, wait_threshold_ms=0)
    pool = tracedsync.BoundedSemaphore(3, name="pool")
    leaker = threading.Thread(target=take_three, args=(pool,), name="worker-1")
    leaker.start()
    leaker.join(10)
    reused = False
    for attempt in range(20):
        waiter = threading.Thread(
            target=pool.acquire, kwargs={"timeout": 0.01}, name=f"request-{attempt}"
        )
        waiter.start()
        waiter.join(10)
        if waiter.ident == leaker.ident:
            reused = True
            break
    assert tracedsync.flush(10)
    waits = [e for e in logs.named("long_wait") if e["sync.name"] == "pool"]
    assert waits
    for wait in waits:
        assert wait["sync.holder.thread.name"] == "worker-1"
        assert wait["sync.holder.ended"] is True
        assert wait["sync.holder.permits"] == 3
        assert wait["sync.holder.acquired_at"] == TAKEN_LINE
    if not reused:  # the C library decides; glibc reuses at once
        print("no thread ran under the leaker's ident: the reuse case was not exercised")


def test_an_rlock_left_by_a_short_lived_thread_names_it(logs: LogCollector) -> None:
    """A thread that ended holding an RLock before any watchdog pass saw its
    name is still named (it was ``thread-<ident>``), in the waiter's span and
    in ``abandoned_hold``."""
    configure(logs, watchdog_interval_ms=60_000, wait_threshold_ms=0)
    store_lock = tracedsync.RLock(name="store_lock")
    request = threading.Thread(target=store_lock.acquire, name="request-17")
    request.start()
    request.join(10)
    assert store_lock.acquire(timeout=0.01) is False
    watchdog = detection.watchdog()
    assert watchdog is not None
    watchdog.check()
    assert tracedsync.flush(10)
    (wait,) = [e for e in logs.named("long_wait") if e["sync.name"] == "store_lock"]
    assert wait["sync.holder.thread.name"] == "request-17"
    assert wait["sync.holder.ended"] is True
    (abandoned,) = logs.named("abandoned_hold")
    assert abandoned["thread.name"] == "request-17"
    assert abandoned["message"].startswith("request-17 ended holding rlock store_lock #1")


def count_twice(lock: Any) -> bool:
    with lock:  # OUTER_LINE
        if lock.acquire(timeout=0.05):
            lock.release()
            return True
        return False


OUTER_LINE = f"tests/scenarios/test_fixes.py:{count_twice.__code__.co_firstlineno + 1}"


def test_a_self_deadlock_wait_names_its_own_thread_as_holder(logs: LogCollector) -> None:
    """A thread blocked on a Lock it holds itself had a wait span with no
    ``sync.holder.*`` and no ``released_before_wait``: holder information
    silently missing. It names the thread itself, taken at the outer ``with``."""
    configure(logs, wait_threshold_ms=0)
    lock = tracedsync.Lock(name="inventory")
    worker = threading.Thread(target=count_twice, args=(lock,), name="restocker")
    worker.start()
    worker.join(10)
    assert tracedsync.flush(10)
    (wait,) = [e for e in logs.named("long_wait") if e["sync.name"] == "inventory"]
    assert wait["sync.outcome"] == "timeout"
    assert wait["sync.holder.thread.name"] == "restocker"
    assert wait["sync.holder.acquired_at"] == OUTER_LINE
    assert "sync.holder.waiting_on.name" not in wait
    assert "sync.holder.ended" not in wait


def test_a_holder_inside_tracedsync_is_placed_where_the_program_called_it(
    tmp_path: Path,
) -> None:
    """A holder caught while tracedsync reads a source file (a waiter naming
    where the holder took a lock parses the holder's source) was "now at
    tokenize.py:396": the frames tracedsync called are not the program's."""
    fifo = tmp_path / "source.py"
    os.mkfifo(fifo)
    code = compile("import sys\nframe = sys._getframe()\n", str(fifo), "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    lock = tracedsync.Lock()
    started = threading.Event()

    def read_source() -> None:  # opening the FIFO blocks until a writer comes
        started.set()
        acquisition.inferred(lock, [namespace["frame"]])  # READ_LINE

    reader = threading.Thread(target=read_source, name="reader")
    reader.start()
    try:
        started.wait(10)
        wait_until(lambda: "tokenize" in str(sys._current_frames().get(reader.ident)))
        site = _sites.thread_site(reader.ident or 0)
        stack = _sites.thread_stack(reader.ident or 0)
    finally:
        with open(fifo, "w"):
            pass
        reader.join(10)
    read_line = read_source.__code__.co_firstlineno + 2
    assert site is not None
    assert _sites.format_site(site) == f"tests/scenarios/test_fixes.py:{read_line}"
    assert stack[0].startswith(f"tests/scenarios/test_fixes.py:{read_line} in read_source")


def test_permits_leaked_together_are_one_abandoned_hold(logs: LogCollector) -> None:
    """A thread that ended holding three permits is one ``abandoned_hold`` with
    count 3 (it was three identical events, one per permit)."""
    configure(logs, watchdog_interval_ms=60_000)
    pool = tracedsync.BoundedSemaphore(3, name="pool")
    leaker = threading.Thread(target=take_three, args=(pool,), name="worker-1")
    leaker.start()
    leaker.join(10)
    watchdog = detection.watchdog()
    assert watchdog is not None
    watchdog.check_abandoned({}, at_exit=True)
    watchdog.check_abandoned({}, at_exit=True)
    assert tracedsync.flush(10)
    (event,) = logs.named("abandoned_hold")
    assert event["thread.name"] == "worker-1"
    assert event["count"] == 3
    assert event["acquired_at"] == TAKEN_LINE


def test_a_semaphore_made_empty_is_a_signal_with_no_holders(logs: LogCollector) -> None:
    """Semaphore(0) counting items (queue's pure-Python SimpleQueue): the
    consumers that took items and ended owe nothing back, and a consumer
    waiting for the next item waits for a release, not for a holder: an
    idle wait (stuck only past idle_stuck_after_ms)."""
    configure(logs, watchdog_interval_ms=60_000)
    items = tracedsync.Semaphore(0, name="items")
    items.release(3)
    consumers = [threading.Thread(target=items.acquire, name=f"consumer-{i}") for i in range(3)]
    for c in consumers:
        c.start()
        c.join(10)
    waiter = threading.Thread(target=items.acquire, name="next-consumer", daemon=True)
    waiter.start()
    try:
        wait_until(blocked_on(items))
        watchdog = detection.watchdog()
        assert watchdog is not None
        watchdog.check_abandoned(waits.snapshot(), at_exit=True)
        assert recorder.describe_holder(items, waiter.ident or 0) == (None, False)
        assert waits.snapshot()[waiter.ident or 0].idle
    finally:
        items.release()
        waiter.join(10)
    assert tracedsync.flush(10)
    assert logs.named("abandoned_hold") == []


def test_a_wait_still_blocked_at_two_flushes_is_one_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each flush reports a wait still blocked again (a program ending flushes
    twice: before joining its threads, and at exit). ``tracedsync report``
    counted each report as a finding; it is one, the latest kept. (A wait
    that ends after a report is not a finding at all: see
    test_scenarios.test_waits_blocked_when_the_main_thread_returns_that_end_later.)"""
    out = tmp_path / "out"
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(out), idle_stuck_after_ms=1)
    never = tracedsync.Event(name="never")
    waiter = threading.Thread(target=never.wait, name="consumer", daemon=True)
    waiter.start()
    try:
        wait_until(blocked_on(never))
        entry = waits.snapshot()[waiter.ident or 0]
        wait_until(lambda: time.monotonic_ns() - entry.since > 2_000_000)
        assert tracedsync.flush(10)
        assert tracedsync.flush(10)
        tracedsync.shutdown()  # before the wait ends: it ends unreported
    finally:
        never.set()
        waiter.join(10)
    capsys.readouterr()
    assert cli.main(["report", "--format", "json", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings_by_event"] == {"unfinished_wait": 1}
    (finding,) = doc["findings"]
    reports = [
        json.loads(line)
        for path in out.glob("logs-*.jsonl")
        for line in path.read_text().splitlines()
        if '"unfinished_wait"' in line
    ]
    assert len(reports) == 3  # two flushes and the shutdown's
    assert finding["timestamp"] == max(r["timestamp"] for r in reports)


def test_reports_of_one_wait_match_although_their_start_moved_a_microsecond(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each flush turns a wait's monotonic start into wall time afresh, so two
    reports of one wait may differ in ``since`` by a microsecond: one finding.
    The same thread's next wait on the same lock is another."""

    def report(at_ms: float, since: str, waited_ms: float) -> dict[str, Any]:
        return files.event(
            "unfinished_wait", at_ms, level="error", idle=False, waited_ms=waited_ms,
            thread__name="philosopher-2", thread__id=7, sync__kind="lock", sync__id=4,
            sync__name="forks (app.py:9)", sync__instance=4, since=since, site="app.py:20",
            message=f"still blocked at exit: philosopher-2 has waited {waited_ms} ms",
        )  # fmt: skip

    events = [
        report(5, "2027-01-15T08:00:00.000001Z", 4.6),
        report(168, "2027-01-15T08:00:00.000002Z", 168.3),
        report(9000, "2027-01-15T08:00:05.000000Z", 4000.0),
    ]
    files.write(tmp_path / "logs-r1-7.jsonl", [json.dumps(e) for e in events])
    capsys.readouterr()
    assert cli.main(["report", "--format", "json", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings_by_event"] == {"unfinished_wait": 2}
    assert sorted(f["fields"]["waited_ms"] for f in doc["findings"]) == [168.3, 4000.0]


def test_a_lock_let_go_by_condition_wait_gives_its_waiter_a_handoff(logs: LogCollector) -> None:
    """A waiter that gets a Condition's lock when its holder calls ``wait()``
    had no ``sync.wait.handoff`` (that release did not note its time)."""
    configure(logs, wait_threshold_ms=0)
    lock = tracedsync.Lock(name="state")
    cond = tracedsync.Condition(lock)
    holding = threading.Event()

    def sleeper() -> None:
        with cond:
            holding.set()
            wait_until(blocked_on(lock))
            cond.wait(10)  # lets the lock go to the waker

    def waker() -> None:
        holding.wait(10)
        with cond:
            cond.notify()

    threads = [threading.Thread(target=sleeper), threading.Thread(target=waker, name="waker")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert tracedsync.flush(10)
    waits_ = [e for e in logs.named("long_wait") if e["sync.name"] == "state"]
    woken = [e for e in waits_ if e["thread.name"] == "waker"]
    assert woken
    for wait in woken:
        assert 0 <= wait["sync.wait.handoff"] <= wait["duration_ms"] / 1e3 + 1e-6


def test_a_notified_waiter_blocked_by_its_notifier_is_a_deadlock(logs: LogCollector) -> None:
    """The uploader holds ``session`` and waits on ``slots``; the scheduler
    notifies and, still holding ``slots``'s lock, wants ``session``. The
    notified uploader cannot take ``slots``'s lock back: a deadlock, which the
    watchdog missed (the uploader counted as idle, waiting for a notify)."""
    configure(logs, watchdog_interval_ms=20)
    session = tracedsync.Lock(name="session")
    slots = tracedsync.Condition(name="slots")
    free = [0]
    waiting, reported = threading.Event(), threading.Event()

    def upload() -> None:
        with session, slots:
            waiting.set()
            while not free[0]:
                slots.wait(10)

    def schedule() -> None:
        waiting.wait(10)
        with slots:  # NOTIFIER_LINE
            free[0] = 1
            slots.notify()
            while not session.acquire(timeout=0.05):  # gives up once reported
                if reported.is_set():
                    return
            session.release()

    with threads_running(upload, schedule, names=["uploader", "scheduler"], release=reported):
        wait_until(lambda: bool(tracedsync.flush(1) and logs.named("deadlock_detected")))
    (event,) = logs.named("deadlock_detected")
    by_thread = {t["thread.name"]: t for t in event["threads"]}
    assert set(by_thread) == {"uploader", "scheduler"}
    uploader = by_thread["uploader"]
    assert (uploader["waits_for"], uploader["waits_for_kind"]) == ("slots", "rlock")
    assert uploader["held_by"] == ["scheduler"]
    assert by_thread["scheduler"]["waits_for"] == "session"
    assert by_thread["scheduler"]["held_by"] == ["uploader"]


def test_a_holder_that_took_a_condition_is_placed_at_its_with(logs: LogCollector) -> None:
    """A thread that took a Condition's lock with ``with cond:`` is named as
    the holder of that lock taken there (``acquired_at`` was missing: the
    ``with`` names the condition, not its lock)."""
    configure(logs)
    jobs = tracedsync.Condition(name="jobs")
    held, release = threading.Event(), threading.Event()

    def dispatcher() -> None:
        with jobs:  # HELD_LINE
            held.set()
            release.wait(10)

    def worker() -> None:
        held.wait(10)
        with jobs:
            pass

    with threads_running(dispatcher, worker, names=["dispatcher", "worker"], release=release):
        wait_until(blocked_on(jobs._lock))
    assert tracedsync.flush(10)
    (wait,) = [e for e in logs.named("long_wait") if e["thread.name"] == "worker"]
    line = dispatcher.__code__.co_firstlineno + 1
    assert wait["sync.holder.thread.name"] == "dispatcher"
    assert wait["sync.holder.acquired_at"] == f"tests/scenarios/test_fixes.py:{line}"


def take_unrecorded(
    lock: Any, taken: threading.Event, record: threading.Event, release: threading.Event
) -> None:
    assert lock._try(False)  # taken, its owner not recorded yet: a hand-over
    taken.set()
    record.wait(10)
    lock._taken(time.monotonic_ns())
    release.wait(10)  # HANDED_OVER_LINE
    lock.release()


def test_a_waiter_during_a_hand_over_names_the_new_owner(logs: LogCollector) -> None:
    """A lock a thread has taken but not yet recorded itself as holding (it
    needs the GIL for that line, which the waiter has: with several waiters,
    the common case) was "released before the wait": 66 of hot_lock.py's 73
    waits said so while every one of them waited for a 10 ms fetch. The
    waiter looks again until the owner is recorded, and names it."""
    configure(logs, wait_threshold_ms=0)
    lock = tracedsync.Lock(name="handed")
    taken, record, release = threading.Event(), threading.Event(), threading.Event()
    owner = threading.Thread(
        target=take_unrecorded, args=(lock, taken, record, release), name="new-owner"
    )
    owner.start()
    taken.wait(10)
    waiter = threading.Thread(target=lambda: lock.acquire(timeout=10) and lock.release())
    waiter.start()

    def waiting_for_the_lock_only() -> bool:  # done looking for its holder
        frame = sys._current_frames().get(waiter.ident or 0)
        if frame is not None and frame.f_code.co_name == "_try":  # the pure Lock's
            frame = frame.f_back
        if frame is None or frame.f_code.co_name != "_block":
            return False
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno or 0)
        return "got = try_acquire(True, remaining)" in line

    try:
        wait_until(blocked_on(lock))
        record.set()
        wait_until(waiting_for_the_lock_only)
    finally:
        record.set()
        release.set()
        owner.join(10)
        waiter.join(10)
    assert tracedsync.flush(10)
    (wait,) = [e for e in logs.named("long_wait") if e["sync.name"] == "handed"]
    assert wait["sync.outcome"] == "acquired"
    assert "sync.holder.released_before_wait" not in wait
    assert wait["sync.holder.thread.name"] == "new-owner"
    line = take_unrecorded.__code__.co_firstlineno + 7
    assert wait["sync.holder.site"] == f"tests/scenarios/test_fixes.py:{line}"


HOLDER_SOURCE = """
def hold(lock, release, parked):
    with lock:
        release.wait(10)
    parked.wait(10)
"""


def open_for_writing(fifo: Path) -> int | None:
    """The FIFO's write end, if a reader has it open (never blocks)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def test_a_holder_that_releases_while_the_waiter_looks_is_not_described_by_its_next_steps(
    logs: LogCollector, tmp_path: Path
) -> None:
    """A waiter reads where a live holder took the lock and what it does from
    the holder's frames, while it runs: a holder that released meanwhile was
    named with what it did next (no site, "now at" a line outside the lock),
    and counter.py's waits had holders without ``acquired_at``. The waiter
    checks the hold is still there once it has looked, and otherwise says the
    holder released before it could look."""
    configure(logs, wait_threshold_ms=0)
    fifo = tmp_path / "holder.py"
    os.mkfifo(fifo)
    namespace: dict[str, Any] = {}
    exec(compile(HOLDER_SOURCE, str(fifo), "exec"), namespace)
    lock = tracedsync.Lock(name="ledger")
    release, parked = threading.Event(), threading.Event()
    holder = threading.Thread(target=namespace["hold"], args=(lock, release, parked), name="holder")
    holder.start()
    waiter = threading.Thread(
        target=lambda: lock.acquire(timeout=10) and lock.release(), name="waiter"
    )
    writer = None
    try:
        wait_until(lambda: lock._owner == holder.ident)
        waiter.start()
        # The waiter reads the holder's source: opening the FIFO blocks it.
        wait_until(lambda: "tokenize" in str(sys._current_frames().get(waiter.ident)))
        release.set()
        wait_until(lambda: not lock.locked())
        writer = open_for_writing(fifo)
        assert writer is not None
        os.write(writer, HOLDER_SOURCE.encode())
    finally:
        if writer is None:
            writer = open_for_writing(fifo)
        if writer is not None:
            os.close(writer)
        release.set()
        waiter.join(10)
        parked.set()
        holder.join(10)
    assert tracedsync.flush(10)
    (wait,) = [e for e in logs.named("long_wait") if e["sync.name"] == "ledger"]
    assert wait["sync.outcome"] == "acquired"
    assert wait["sync.holder.released_before_wait"] is True
    assert "sync.holder.thread.name" not in wait


INTERRUPTED_INSTALL = """
import os, runpy, sys
from tracedsync import child, runner

def interrupted():
    raise KeyboardInterrupt  # Ctrl-C while tracedsync installs

child.bootstrap_child = interrupted
runpy.run_path(os.path.join(runner.BOOTSTRAP_DIR, "sitecustomize.py"))
print("the program ran")
"""


def test_ctrl_c_while_tracedsync_installs_ends_the_program_by_sigint() -> None:
    """A Ctrl-C while ``tracedsync run``'s child installs tracedsync (a few
    hundred ms of imports) escaped sitecustomize: "Fatal Python error:
    init_import_site", a traceback. The child now ends by SIGINT, silently,
    as an interrupted program does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    env["TRACEDSYNC_RUN"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_INSTALL],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == -signal.SIGINT
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
