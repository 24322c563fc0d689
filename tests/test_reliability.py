"""Reliability: nothing lost, nothing broken, nothing leaked (issue 9).

Each test names the guarantee it proves; the README's reliability section
lists them.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracedsync
from tests.telemetry_counts import counted
from tracedsync import _stdlib, config, waits
from tracedsync.testing import LogCollector, blocked_on, run_threads, wait_until

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDSYNC_", "OTEL_"))}
    env.update(extra)
    return env


# --------------------------------------------------------------------------
# Semantics under stress: the same random program on threading and tracedsync
# --------------------------------------------------------------------------

PRIMS = ("lock", "rlock", "sem", "bsem", "event", "cond")
OPS = {
    "lock": ["try", "timed", "release", "locked"],
    "rlock": ["try", "timed", "release", "owned", "count"],
    "sem": ["try", "timed", "release"],
    "bsem": ["try", "timed", "release"],
    "event": ["set", "clear", "is_set", "wait"],
    "cond": ["try", "release", "notify", "wait"],
}
step_strategy = st.tuples(
    st.integers(0, 2),
    st.sampled_from([(p, op) for p in PRIMS for op in OPS[p]]),
)


def _make(module: Any) -> dict[str, Any]:
    return {
        "lock": module.Lock(),
        "rlock": module.RLock(),
        "sem": module.Semaphore(2),
        "bsem": module.BoundedSemaphore(2),
        "event": module.Event(),
        "cond": module.Condition(),
    }


def _do(prims: dict[str, Any], prim: str, op: str) -> Any:
    p = prims[prim]
    if op == "try":
        return p.acquire(False)
    if op == "timed":
        return p.acquire(timeout=0.001)
    if op == "release":
        return p.release()
    if op == "locked":
        return p.locked()
    if op == "owned":
        return p._is_owned()
    if op == "count":
        return p._recursion_count() if hasattr(p, "_recursion_count") else None
    if op == "set":
        return p.set()
    if op == "clear":
        return p.clear()
    if op == "is_set":
        return p.is_set()
    if op == "wait":
        return p.wait(0.001)
    if op == "notify":
        return p.notify()
    raise AssertionError(op)


def _execute(module: Any, program: list[tuple[int, tuple[str, str]]]) -> list[Any]:
    """Run the steps one at a time, each on its thread; return every outcome."""
    prims = _make(module)
    inboxes: list[queue.Queue[Any]] = [queue.Queue() for _ in range(3)]
    outcomes: queue.Queue[Any] = queue.Queue()

    def worker(inbox: queue.Queue[Any]) -> None:
        while (step := inbox.get()) is not None:
            try:
                outcomes.put(("ok", _do(prims, *step)))
            except Exception as exc:  # the exception is the observable result
                outcomes.put(("raised", type(exc).__name__, str(exc)))

    threads = [threading.Thread(target=worker, args=(box,), daemon=True) for box in inboxes]
    for t in threads:
        t.start()
    results = []
    try:
        for thread_no, step in program:
            inboxes[thread_no].put(step)
            results.append(outcomes.get(timeout=10))
    finally:
        for box in inboxes:
            box.put(None)
        for t in threads:
            t.join(10)
    results.append(("final", prims["lock"].locked(), prims["event"].is_set(), prims["sem"]._value))
    if module is tracedsync:
        results.append(("stats", prims))
    return results


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(step_strategy, min_size=1, max_size=25))
def test_random_programs_agree_with_threading(program: list[tuple[int, tuple[str, str]]]) -> None:
    """Random acquire/release/try/timeout/wait/notify/set programs over three
    threads give the same results with tracedsync as with threading, and the
    stats invariants hold."""
    expected = _execute(_stdlib_module(), program)
    got = _execute(tracedsync, program)
    prims = got.pop()[1]
    assert got == expected
    successes = {p: 0 for p in PRIMS}
    reentries = 0
    owner_depth: dict[int, int] = {}
    for (thread_no, (prim, op)), outcome in zip(program, got[:-1], strict=True):
        if op in ("try", "timed") and outcome == ("ok", True):
            if prim == "rlock" or prim == "cond":
                depth = owner_depth.get((prim, thread_no), 0)  # type: ignore[call-overload]
                if depth:
                    reentries += prim == "rlock"
                else:
                    successes[prim] += 1
                owner_depth[(prim, thread_no)] = depth + 1  # type: ignore[index]
            else:
                successes[prim] += 1
        if op == "release" and outcome == ("ok", None) and prim in ("rlock", "cond"):
            owner_depth[(prim, thread_no)] -= 1  # type: ignore[index]
    for prim in ("lock", "rlock", "sem", "bsem"):
        s = prims[prim].statistics()
        assert s.acquisitions == successes[prim], prim
        assert s.contentions - s.timeouts <= s.acquisitions  # a timeout is a contention too
    assert prims["rlock"].statistics().reentries == reentries
    assert prims["cond"]._lock.statistics().acquisitions == successes["cond"]


def _stdlib_module() -> Any:
    class Std:
        Lock = _stdlib.Lock
        RLock = _stdlib.RLock
        Semaphore = _stdlib.Semaphore
        BoundedSemaphore = _stdlib.BoundedSemaphore
        Event = _stdlib.Event
        Condition = _stdlib.Condition

    return Std


def test_lock_holds_never_overlap() -> None:
    """Per-thread holds of one Lock, as measured, never overlap."""
    tracedsync.configure(exporters=[], hold_threshold_ms=0)
    lock = tracedsync.Lock()
    intervals: list[tuple[int, int]] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(500):
            with lock:
                t0 = time.monotonic_ns()
                intervals.append((t0, time.monotonic_ns()))

    run_threads(*[work] * 4)
    intervals.sort()
    for (_, end), (begin, _) in itertools.pairwise(intervals):
        assert end <= begin
    assert lock.statistics().acquisitions == 2000


# --------------------------------------------------------------------------
# Accounting
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_accounting_is_exact_with_a_small_buffer(logs: LogCollector) -> None:
    """8 threads x 100,000 operations, thresholds 0, a small buffer: records
    produced = offered + dropped at the buffer, and the exporter's
    offered = exported + lane_dropped + failed, exactly; drops are reported."""
    tracedsync.configure(
        exporters=[logs],
        wait_threshold_ms=0,
        hold_threshold_ms=0,
        max_spans_per_second=0,
        buffer_size=256,
    )
    locks = [tracedsync.Lock() for _ in range(4)]
    start = threading.Barrier(8)

    def work(n: int) -> Callable[[], None]:
        def body() -> None:
            start.wait()
            lock = locks[n % 4]
            for _ in range(100_000):
                with lock:
                    pass

        return body

    with counted() as out:
        run_threads(*[work(n) for n in range(8)], timeout=600)
        assert tracedsync.flush(30)
    (c,) = out
    c.assert_exact()
    assert c.produced >= 800_000
    assert c.dropped > 0
    assert c.of("collector")["failed"] == 0
    reported = sum(e["dropped"] for e in logs.named("telemetry_dropped") if "exporter" not in e)
    lane_reported = sum(e["dropped"] for e in logs.named("telemetry_dropped") if "exporter" in e)
    assert reported == c.dropped
    assert lane_reported == c.of("collector")["lane_dropped"]
    assert sum(s.acquisitions for s in (lk.statistics() for lk in locks)) == 800_000


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------

BLOCKING_APP = """
import sys, time, threading, tracedsync
from tracedsync.exporters import Exporter

class Stuck(Exporter):
    name = "stuck"
    wants_spans = True
    def export_spans(self, spans):
        threading.Event().wait()          # blocks forever

tracedsync.configure(exporters=[Stuck()], hold_threshold_ms=0, shutdown_timeout_ms=500)
lock = tracedsync.Lock()
total = 0
for i in range(1000):
    with lock:
        total += i
print(total)
print("end", time.monotonic(), flush=True)
sys.exit(3)
"""


def test_exporter_blocking_forever_does_not_hold_the_program(tmp_path: Path) -> None:
    """An exporter that never returns: same output and exit code, and the process
    ends within the shutdown timeout of its own end, saying what was lost."""
    script = tmp_path / "app.py"
    script.write_text(BLOCKING_APP)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    ended = time.monotonic()
    assert result.returncode == 3
    total, end_line = result.stdout.splitlines()
    assert total == str(sum(range(1000)))
    program_end = float(end_line.split()[1])
    assert ended - program_end < 0.5 + 2.0  # the timeout, plus interpreter teardown
    assert "exporter stuck did not finish within the shutdown timeout of 0.5 s" in result.stderr
    assert "1000 records it held count as failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_daemon_threads_holding_locks_at_exit(tmp_path: Path) -> None:
    """Daemon threads still holding traced locks at exit, and exceptions inside
    `with lock:` blocks: no exit-time errors, consistent stats."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, time, tracedsync
            tracedsync.configure(exporters=["console"], hold_threshold_ms=0)
            lock, rlock = tracedsync.Lock(), tracedsync.RLock()
            held = threading.Event()
            def hog():
                with lock, rlock:
                    held.set()
                    time.sleep(3600)
            threading.Thread(target=hog, daemon=True).start()
            held.wait()
            other = tracedsync.Lock()
            for _ in range(5):
                try:
                    with other:
                        raise ValueError("inside")
                except ValueError:
                    pass
            assert not other.locked()
            s = other.statistics()
            assert (s.acquisitions, sum(s.hold_histogram)) == (5, 5), s
            assert lock.locked() and lock.statistics().acquisitions == 1
            print("ok")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr


def _interrupt_main_when(predicate: Callable[[], bool]) -> threading.Thread:
    main_ident = threading.main_thread().ident
    assert main_ident is not None

    def interrupter() -> None:
        wait_until(predicate)
        time.sleep(0.01)
        signal.pthread_kill(main_ident, signal.SIGINT)

    t = threading.Thread(target=interrupter, daemon=True)
    t.start()
    return t


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
@pytest.mark.parametrize("how", ["acquire", "acquire_timeout", "condition_wait", "event_wait"])
def test_keyboard_interrupt_leaves_primitives_consistent(how: str) -> None:
    """Ctrl-C (SIGINT to the main thread) while it waits: KeyboardInterrupt, and the
    primitive is left consistent (no phantom holder, no leaked waiter)."""
    tracedsync.configure(exporters=[LogCollector()])
    lock = tracedsync.Lock()
    cond = tracedsync.Condition()
    event = tracedsync.Event()
    release = threading.Event()
    holder = None
    if how.startswith("acquire"):
        held = threading.Event()

        def hold() -> None:
            with lock:
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        waiting = blocked_on(lock, idle=False)
    else:
        target = cond if how == "condition_wait" else event
        waiting = lambda: any(  # noqa: E731
            e.prim is target for e in waits.snapshot().values() if e.idle
        )
    interrupter = _interrupt_main_when(waiting)
    with pytest.raises(KeyboardInterrupt):
        if how == "acquire":
            lock.acquire()
        elif how == "acquire_timeout":
            lock.acquire(timeout=30)
        elif how == "condition_wait":
            with cond:
                cond.wait(30)
        else:
            event.wait(30)
    interrupter.join(10)
    release.set()
    if holder is not None:
        holder.join(10)
    assert not waiting()
    assert waits.snapshot() == {}
    assert lock.acquire(timeout=5)
    assert lock._owner == threading.get_ident()
    lock.release()
    assert not lock.locked() and lock._owner == 0
    assert not cond._lock.locked() and len(cond._waiters) == 0
    with cond:
        assert cond.wait(0.01) is False
    event.set()
    assert event.wait(1)


# --------------------------------------------------------------------------
# Hostile input
# --------------------------------------------------------------------------

VARIABLES = [
    *sorted(var for var, _ in config._OPTIONS.values() if var and var.startswith("TRACEDSYNC_")),
    "TRACEDSYNC_DISABLED",
    "TRACEDSYNC_PURE_PYTHON",
]
#: List-valued variables accept empty (none) and any module-like word; path
#: variables accept any non-empty text.
GARBAGE = ["\x1b[31m;rm -rf /", "", "9" * 400, "-5", "nan", "1e999", "0x1F"]


def _acceptable(var: str, value: str) -> bool:
    if var in ("TRACEDSYNC_EXCLUDE", "TRACEDSYNC_INCLUDE"):
        return value in ("", "nan")  # none, or a module called "nan"
    if var == "TRACEDSYNC_EXPORTERS":
        return value == ""
    if var == "TRACEDSYNC_OUTPUT_DIR":
        return value != ""
    if var in ("TRACEDSYNC_LOCK_ORDER", "TRACEDSYNC_DISABLED", "TRACEDSYNC_PURE_PYTHON"):
        return value == ""
    return False


@pytest.mark.parametrize("var", VARIABLES)
def test_every_variable_rejects_garbage(var: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Garbage, empty, huge or negative values: `run` refuses them naming the
    variable; inside a program they cost one warning line and the default."""
    for value in GARBAGE:
        errors = config.environment_errors({var: value})
        if _acceptable(var, value):
            assert errors == [], (var, value)
            continue
        assert len(errors) == 1 and errors[0].startswith(var), (var, value, errors)
        assert "\n" not in errors[0] and len(errors[0]) < 300
        os.environ[var] = value
        try:
            cfg = config.resolve({})
        finally:
            del os.environ[var]
        err = capsys.readouterr().err
        if var not in ("TRACEDSYNC_PURE_PYTHON",):
            assert err.count("\n") == 1 and var in err, (var, value, err)
        assert isinstance(cfg, config.Config)


def test_run_refuses_each_bad_variable_before_starting(tmp_path: Path) -> None:
    """Under `tracedsync run` a bad variable is a one-line error, exit 2, no program."""
    marker = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    for var in VARIABLES:
        value = "-5" if var != "TRACEDSYNC_OUTPUT_DIR" else ""
        result = subprocess.run(
            [sys.executable, "-m", "tracedsync", "run", "--", sys.executable, str(script)],
            cwd=tmp_path,
            env=_clean_env(**{var: value}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (var, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and var in result.stderr
        assert not marker.exists()


def test_hostile_names_are_escaped_on_the_console(tmp_path: Path) -> None:
    """Lock and thread names with newlines, quotes, HTML and ANSI escapes cannot
    forge or colour console lines."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, time, tracedsync
            tracedsync.configure(exporters=["console"], hold_threshold_ms=1)
            lock = tracedsync.Lock(name='<script>alert("x")</script>\\n\\x1b[2J fake line')
            def hold():
                with lock:
                    time.sleep(0.01)
            t = threading.Thread(target=hold, name="evil\\r\\nthread\\x1b[31m")
            t.start(); t.join()
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert "evil\\x0d\\x0athread\\x1b[31m" in lines[0]


def test_output_files_are_private_and_carry_no_user_data(tmp_path: Path) -> None:
    """Files are 0o600; spans carry names and sites, never the program's values."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading, time
            secret = "hunter2-password"
            lock = threading.Lock()
            def hold(value):
                with lock:
                    time.sleep(0.02)
                    return value.upper()
            ts = [threading.Thread(target=hold, args=(secret,)) for _ in range(3)]
            [t.start() for t in ts]; [t.join() for t in ts]
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--", sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    files = list((tmp_path / "tracedsync-out").glob("*.jsonl"))
    assert files
    for path in files:
        assert oct(path.stat().st_mode & 0o777) == oct(0o600)
        assert "hunter2" not in path.read_text()
    assert oct((tmp_path / "tracedsync-out").stat().st_mode & 0o777) == oct(0o700)


@pytest.mark.slow
def test_soak_memory_stays_flat() -> None:
    """30 s of mixed load (the 10-minute soak's script): memory does not grow."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--seconds", "30", "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["operations"] > 10_000
    assert summary["growth_mb"] <= summary["max_growth_mb"]
