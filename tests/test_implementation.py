"""The two implementations of Lock and RLock: compiled (C) and pure Python.

Which one is loaded is asserted against ``TRACEDSYNC_EXPECT_IMPLEMENTATION``
(CI sets it), so a silently skipped build fails instead of passing. Every other
test here runs over both implementations (the compiled one where built).
"""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tracedsync import _impl, _settings, counters, primitives, recorder, records, stacks, waits
from tracedsync.testing import blocked_on, held_in_thread, run_threads, wait_until

HOT_METHODS = ("acquire", "__enter__", "release", "__exit__")

IMPLEMENTATIONS: dict[str, tuple[Any, Any]] = {"pure": (primitives.PureLock, primitives.PureRLock)}
if primitives.CompiledLock is not None:
    IMPLEMENTATIONS["compiled"] = (primitives.CompiledLock, primitives.CompiledRLock)

#: (implementation, kind) -> class, for parametrizing over both.
CLASSES = {
    f"{impl}-{kind}": pair[i]
    for impl, pair in IMPLEMENTATIONS.items()
    for i, kind in enumerate(("Lock", "RLock"))
}
classes = pytest.mark.parametrize("cls", list(CLASSES.values()), ids=list(CLASSES))


# -- which implementation ------------------------------------------------------


def _sleeping(thread: threading.Thread) -> bool:
    """The OS thread of ``thread`` is asleep (blocked in the kernel)."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] == "S"
    except OSError:
        return False


def test_expected_implementation_is_loaded() -> None:
    """tracedsync.IMPLEMENTATION is what TRACEDSYNC_EXPECT_IMPLEMENTATION (set by CI) says."""
    assert tracedsync.IMPLEMENTATION in ("compiled", "pure")
    expected = os.environ.get("TRACEDSYNC_EXPECT_IMPLEMENTATION")
    if expected is not None:
        assert expected == tracedsync.IMPLEMENTATION, (
            f"expected the {expected} implementation, got {tracedsync.IMPLEMENTATION} "
            f"({_impl.REASON})"
        )
    if _impl.pure_python_forced():
        assert tracedsync.IMPLEMENTATION == "pure"


def test_selected_classes_match_the_implementation() -> None:
    """tracedsync.Lock/RLock are the compiled classes exactly when IMPLEMENTATION says so."""
    if tracedsync.IMPLEMENTATION == "compiled":
        assert tracedsync.Lock is primitives.CompiledLock
        assert tracedsync.RLock is primitives.CompiledRLock
        assert type(tracedsync.Condition()._lock) is primitives.CompiledRLock
    else:
        assert tracedsync.Lock is primitives.PureLock
        assert tracedsync.RLock is primitives.PureRLock
    assert tracedsync.Lock.__name__ == "Lock" and tracedsync.Lock.__module__ == "tracedsync"


def test_pure_python_variable_values() -> None:
    """TRACEDSYNC_PURE_PYTHON takes the usual booleans; anything else means the default."""
    assert _impl.pure_python_forced({"TRACEDSYNC_PURE_PYTHON": "1"})
    assert _impl.pure_python_forced({"TRACEDSYNC_PURE_PYTHON": " Yes "})
    assert not _impl.pure_python_forced({"TRACEDSYNC_PURE_PYTHON": "0"})
    assert not _impl.pure_python_forced({})
    assert not _impl.pure_python_forced({"TRACEDSYNC_PURE_PYTHON": "maybe"})
    assert _impl.invalid_value({"TRACEDSYNC_PURE_PYTHON": "maybe"}) == "maybe"
    assert _impl.invalid_value({"TRACEDSYNC_PURE_PYTHON": "off"}) is None


def test_bad_pure_python_value_is_one_warning_at_configure() -> None:
    """A bad TRACEDSYNC_PURE_PYTHON: nothing at import, one warning line from configure()."""
    code = "import tracedsync, sys; sys.stderr.write('imported\\n'); tracedsync.configure()"
    env = dict(os.environ, TRACEDSYNC_PURE_PYTHON="maybe")
    env.pop("TRACEDSYNC_EXPECT_IMPLEMENTATION", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "imported" and len(lines) == 2
    assert "TRACEDSYNC_PURE_PYTHON='maybe'" in lines[1]
    assert re.search(r"using the (compiled|pure) implementation$", lines[1])


@pytest.mark.skipif(primitives.CompiledLock is None, reason="extension not built")
def test_compiled_hot_methods_are_the_c_ones() -> None:
    """The Python subclasses' hot methods are the C ones (no Python frame on the
    hot path), in descriptors of their own: CPython specialises a C method call
    only when the descriptor's type is the instance's (adopt_methods)."""
    from tracedsync import _speedups

    for cls, core in (
        (primitives.CompiledLock, _speedups.LockCore),
        (primitives.CompiledRLock, _speedups.RLockCore),
    ):
        assert cls is not None
        for name in HOT_METHODS:
            method, c_method = getattr(cls, name), getattr(core, name)
            assert type(method) is types.MethodDescriptorType, name
            assert method.__objclass__ is cls and c_method.__objclass__ is core, name
            assert (method.__name__, method.__doc__) == (c_method.__name__, c_method.__doc__)
        lock = cls()
        assert lock.acquire() and lock.locked()
        lock.release()
        with pytest.raises(RuntimeError):
            lock.release()
        with pytest.raises(TypeError):
            cls.__dict__["release"](object())


@pytest.mark.skipif(primitives.CompiledLock is None, reason="extension not built")
def test_hold_threshold_reaches_the_c_code(spans: InMemorySpanExporter) -> None:
    """configure() thresholds reach the C hot path as they reach the pure one."""
    from tracedsync import _speedups

    # Not recording: C never calls out; Python calls out from 2**30 ns on,
    # for hold_end to drop (a smaller int compares faster in Python).
    assert _speedups.hold_threshold() == _settings.NEVER
    assert _settings.current.hold_gate_ns == _settings.HOLD_OFF_NS == (1 << 30) - 1
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0)
    assert _speedups.hold_threshold() == _settings.current.hold_gate_ns == 0
    tracedsync.shutdown()
    assert _speedups.hold_threshold() == _settings.NEVER
    assert _settings.current.hold_gate_ns == _settings.HOLD_OFF_NS


@classes
def test_a_long_hold_while_nothing_records_is_counted_and_dropped(cls: Any) -> None:
    """Not recording, a hold of 2**30 ns or more (the pure lock then calls
    hold_end) is counted like any other and makes no record."""
    assert not _settings.current.recording
    lock = cls()
    lock.acquire()
    lock._t -= 1 << 31  # as if held for 2.1 s
    lock._blame = 7  # a waiter's reservation is spent by the hold, as when recording
    lock.release()
    s = lock.statistics()
    assert (s.acquisitions, sum(s.hold_histogram)) == (1, 1)
    assert s.hold_max >= 2.1 and lock._blame is None
    assert not records.buffer


@pytest.mark.skipif(primitives.CompiledLock is None, reason="extension not built")
def test_subinterpreters_use_pure_python_and_leave_the_main_one_alone() -> None:
    """A subinterpreter importing tracedsync gets pure Python; the compiled types of the
    main interpreter keep calling its recorder (the extension's state is process-wide)."""
    support = pytest.importorskip("test.support")
    pytest.importorskip("_testcapi")
    code = (
        "import tracedsync\n"
        "assert tracedsync.IMPLEMENTATION == 'pure', tracedsync.IMPLEMENTATION\n"
        "lock = tracedsync.Lock()\n"
        "with lock: pass\n"
    )
    assert support.run_in_subinterp(code) == 0
    lock = tracedsync.Lock()
    with held_in_thread(lock):
        assert lock.acquire(timeout=0.01) is False  # the slow path, through the recorder
    assert lock.statistics().contentions == 1


# -- the attribute contract the recorder relies on -----------------------------


@classes
def test_recorder_attributes(cls: Any) -> None:
    """_t, _owner, _rt, _hsum, _hmax, _hsup, _hhist, _blame, _st, _meta,
    _track, _acq_at, _admit, _window (and for an RLock _count, _reent and
    _depth, the deepest recursion of the current hold)."""
    lock = cls(name="contract")
    assert (lock._t, lock._owner, lock._hsum, lock._hmax, lock._hsup) == (0, 0, 0, 0, 0)
    assert (lock._admit, lock._window, lock._rt) == (0, 0, 0)
    assert not hasattr(lock, "_acq")  # acquisitions come from the histogram
    assert lock._blame is None and lock._st is None and lock._acq_at is None
    assert lock._track is False
    assert (lock._meta.name, lock._meta.kind) == (
        "contract",
        "rlock" if "RLock" in repr(lock) else "lock",
    )
    with lock:
        assert lock._owner == threading.get_ident()
        assert lock._t > 0 and abs(time.monotonic_ns() - lock._t) < 60_000_000_000
        assert lock._acq_at is None  # not contended yet: sites are not noted
    assert lock._t == 0 and lock._owner == 0 and lock._rt > 0
    lock._track = True
    line = sys._getframe().f_lineno + 1
    with lock:
        code, offset = lock._acq_at
        assert code is sys._getframe().f_code
        assert _sites_line(code, offset) == line
    hist = list(lock._hhist)
    assert len(hist) == counters.RAW_BUCKETS and sum(hist) == 2
    assert lock._hsum > 0 and lock._hmax <= lock._hsum
    lock._blame = 12345
    assert lock._blame == 12345
    lock._blame = None
    if hasattr(lock, "_count"):
        with lock, lock:
            assert lock._count == 2
            with lock:
                pass
            assert lock._depth == 3
        assert lock._count == 0 and lock._reent == 2
        with lock:
            assert lock._depth == 1


@classes
def test_acquisitions_count_the_hold_under_way_and_never_go_back(cls: Any) -> None:
    """Acquisitions are the finished holds plus the one under way. A hold
    suspended in Condition.wait (the lock released meanwhile) is not under
    way, yet the figure already reported for it does not go back."""
    lock = cls()

    def acquisitions() -> int:
        return int(lock.statistics().acquisitions)

    with lock:
        assert acquisitions() == 1
    assert acquisitions() == 1
    cond = threading.Condition(lock)
    holding, go = threading.Event(), threading.Event()

    def waiter() -> None:
        with cond:
            holding.set()
            go.wait(10)
            cond.wait(10)

    thread = threading.Thread(target=waiter)
    thread.start()
    assert holding.wait(10)
    assert acquisitions() == 2
    go.set()
    wait_until(lambda: not lock.locked())  # released inside cond.wait()
    assert acquisitions() == 2
    with cond:
        cond.notify()
    thread.join(10)
    assert not thread.is_alive()
    assert acquisitions() == 3 == sum(lock.statistics().hold_histogram)


@classes
def test_try_acquires_like_the_stdlib_lock(cls: Any) -> None:
    """_try(blocking, timeout) is the underlying lock's acquire, arguments and all."""
    lock = cls()
    assert lock._try(False) is True
    assert lock._try(False) is False
    assert lock._try(blocking=True, timeout=0.01) is False
    assert lock._try(True, 0) is False
    with pytest.raises(ValueError, match="non-blocking"):
        lock._try(False, 1)
    lock._rel()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock._rel()
    assert lock._try() is True
    lock._rel()


@classes
def test_bad_arguments_raise_what_the_stdlib_raises(cls: Any) -> None:
    """Every bad call shape raises the interpreter's own error, message included."""
    std = threading.Lock()
    lock = cls()
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {"timeout": -100}),
        ((False, 1), {}),
        ((), {"timeout": float("nan")}),
        ((), {"timeout": "x"}),
        ((), {"timeout": 2**63}),
        ((), {"timeout": 1e300}),
        ((), {"blocking": True, "timeout": -5}),
    ]
    for args, kwargs in calls:
        with pytest.raises(Exception) as expected:
            std.acquire(*args, **kwargs)
        with pytest.raises(type(expected.value)) as got:
            lock.acquire(*args, **kwargs)
        assert str(got.value) == str(expected.value), (args, kwargs)
    with pytest.raises(TypeError):
        lock.acquire(foo=1)
    with pytest.raises(TypeError):
        lock.acquire(True, -1, 3)
    assert not lock.locked()
    assert lock.statistics().acquisitions == 0


@classes
def test_equivalent_default_arguments_take_the_fast_path(cls: Any) -> None:
    """acquire(True, -1), acquire(timeout=-1.0), acquire(blocking=True) all just acquire."""
    lock = cls()
    for args, kwargs in [((True, -1), {}), ((), {"timeout": -1.0}), ((), {"blocking": True})]:
        assert lock.acquire(*args, **kwargs) is True
        lock.release()
    assert lock.acquire(1) is True  # truthy, not True: the slow path, same result
    lock.release()
    assert lock.statistics().acquisitions == 4


@classes
def test_weak_references_and_collection_fold_stats(cls: Any) -> None:
    """Weak references work; a collected primitive's stats are folded by name."""
    lock = cls(name="collected-one")
    with lock:
        pass
    ref = weakref.ref(lock)
    del lock
    gc.collect()
    assert ref() is None
    (folded,) = [s for s in tracedsync.stats() if s.name == "collected-one"]
    assert folded.id is None and folded.acquisitions == 1 and sum(folded.hold_histogram) == 1


@classes
def test_user_subclass_with_attributes(cls: Any) -> None:
    """A user's subclass (with a __dict__) works, keeps the hot path, and is collectable."""

    class MyLock(cls):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            self.extra = [self]  # a reference cycle only the GC can free

    lock = MyLock(name="mine")
    assert lock.name == "mine"
    with lock:
        assert lock.locked()
    assert lock.statistics().acquisitions == 1 and lock.extra[0] is lock
    ref = weakref.ref(lock)
    del lock
    gc.collect()
    assert ref() is None


@classes
def test_at_fork_reinit_frees_a_held_lock(cls: Any) -> None:
    """_at_fork_reinit (what a fork child runs) leaves the lock free and unowned."""
    lock = cls()
    lock.acquire()
    lock._at_fork_reinit()
    assert not lock.locked() and lock._owner == 0 and lock._t == 0
    assert lock.acquire(False)
    lock.release()


@classes
def test_condition_over_each_implementation(cls: Any) -> None:
    """Condition.wait releases and restores both implementations; waiting is not hold time."""
    cond = tracedsync.Condition(cls())
    ready = threading.Event()

    def notifier() -> None:
        ready.wait(10)
        with cond:
            cond.notify()

    t = threading.Thread(target=notifier)
    with cond:
        t.start()
        ready.set()
        assert cond.wait(10)
        assert cond._is_owned()
    t.join(10)
    assert not t.is_alive()
    s = cond._lock.statistics()
    assert s.acquisitions == 2


# -- the regression guard: the uncontended path ------------------------------


@pytest.fixture
def slow_path_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count every call into the recorder's slow paths (the C code looks them up per call)."""
    calls: list[str] = []
    for module, name in ((recorder, "acquire_slow"), (recorder, "hold_end"), (records, "emit")):
        original = getattr(module, name)

        def counting(*args: Any, _name: str = name, _fn: Any = original) -> Any:
            calls.append(_name)
            return _fn(*args)

        monkeypatch.setattr(module, name, counting)
    yield calls


def _uncontended(lock: Any, n: int) -> None:
    acquire, release = lock.acquire, lock.release
    for _ in range(n):
        with lock:
            pass
        acquire()
        release()


@classes
def test_uncontended_path_allocates_nothing(cls: Any) -> None:
    """Uncontended with-blocks and acquire/release keep no allocation per operation."""
    lock = cls()
    _uncontended(lock, 2000)  # warm up (caches, specialisation)
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        _uncontended(lock, 1000)
        after_small = tracemalloc.get_traced_memory()[0]
        _uncontended(lock, 20_000)
        after_large = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Growth does not scale with the number of operations: 21x more operations,
    # the same few bytes at most (counters growing into larger int objects).
    assert after_small - base < 1024
    assert after_large - base < 1024, f"{after_large - base} bytes kept after 21,000 operations"
    assert lock.statistics().acquisitions == 2 * 23_000


@classes
def test_uncontended_path_makes_no_record_and_no_span(
    cls: Any, spans: InMemorySpanExporter, slow_path_calls: list[str]
) -> None:
    """With a pipeline running and default thresholds, the uncontended path never calls
    into the recorder: no record, no span."""
    tracedsync.configure(exporters=[spans])  # default thresholds: 1 ms wait, 10 ms hold
    lock = cls()
    produced = records.accounting.produced
    for _ in range(200):
        # Each hold is far below 10 ms, but a preempted thread can hold longer:
        # count only what was not that.
        _uncontended(lock, 10)
    assert tracedsync.flush(10)
    long_holds = [s for s in spans.get_finished_spans() if s.name.endswith(".hold")]
    calls = [c for c in slow_path_calls if c not in ("hold_end", "emit")]
    assert calls == []
    assert records.accounting.produced - produced == len(long_holds)
    assert all(s.end_time - s.start_time >= 10_000_000 for s in long_holds)
    assert [s for s in spans.get_finished_spans() if not s.name.endswith(".hold")] == []
    assert lock.statistics().acquisitions == 2 * 2000


# -- signals: a blocked acquire is interruptible --------------------------------


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sites_line(code: Any, offset: int) -> int:
    return int(sys.modules["tracedsync._sites"].line_at(code, offset))


def _hold_until(lock: Any, release: threading.Event, held: threading.Event) -> Callable[[], None]:
    def holder() -> None:
        with lock:
            held.set()
            release.wait(30)

    return holder


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
@pytest.mark.parametrize("timeout", [None, 5.0], ids=["forever", "timeout=5"])
@classes
def test_ctrl_c_interrupts_a_blocked_acquire(
    cls: Any, timeout: float | None, sigint_raises: None
) -> None:
    """SIGINT to the main thread blocked in acquire() on a held lock raises KeyboardInterrupt
    there at once; no phantom owner or waiter is left and the lock works afterwards."""
    assert threading.current_thread() is threading.main_thread()
    lock = cls()
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_until(lock, release, held), daemon=True)
    holder.start()
    assert held.wait(10)
    holder_ident = holder.ident
    main = threading.main_thread().ident
    assert main is not None

    def interrupter() -> None:
        # Noted as blocked: from here the signal lands just before the
        # blocking call (raised at the next instruction) or inside it (the
        # wait is woken); both must leave the same lock behind.
        wait_until(blocked_on(lock))
        signal.pthread_kill(main, signal.SIGINT)
        # A wait that ignored the signal would now acquire the freed lock and
        # see KeyboardInterrupt only afterwards: caught below as still_held False.
        caught.wait(2)
        release.set()

    caught = threading.Event()
    sender = threading.Thread(target=interrupter, daemon=True)
    sender.start()
    interrupted = still_held = False
    try:
        if timeout is None:
            lock.acquire()
        else:
            lock.acquire(timeout=timeout)
    except KeyboardInterrupt:
        interrupted = True
        still_held = not release.is_set()
        caught.set()
    finally:
        release.set()
    sender.join(10)
    holder.join(10)
    assert not holder.is_alive() and not sender.is_alive()
    assert interrupted and still_held, "KeyboardInterrupt did not interrupt the wait"
    # No phantom: the interrupted wait left no owner, hold or waiter behind.
    assert not lock.locked() and lock._owner == 0 and lock._t == 0
    assert main not in waits.snapshot()
    assert lock.acquire(timeout=5) is True
    assert lock._owner == main
    lock.release()
    s = lock.statistics()
    assert (s.acquisitions, s.contentions, s.timeouts) == (2, 0, 0)
    assert holder_ident is not None


@pytest.mark.skipif(sys.platform == "win32", reason="pthread_kill")
@classes
def test_signal_handlers_run_while_blocked(cls: Any) -> None:
    """A signal handler runs during a blocked acquire (pending calls), which then goes on
    waiting and acquires once the lock is free — as CPython's lock does."""
    lock = cls()
    held, release = threading.Event(), threading.Event()
    ran: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        ran.append(not release.is_set())
        release.set()

    previous = signal.signal(signal.SIGUSR1, handler)
    main = threading.main_thread().ident
    assert main is not None

    def interrupter() -> None:
        wait_until(blocked_on(lock))  # the handler runs before or during the blocking call
        signal.pthread_kill(main, signal.SIGUSR1)

    try:
        holder = threading.Thread(target=_hold_until(lock, release, held), daemon=True)
        holder.start()
        assert held.wait(10)
        sender = threading.Thread(target=interrupter, daemon=True)
        sender.start()
        assert lock.acquire() is True
        lock.release()
        sender.join(10)
        holder.join(10)
        assert not holder.is_alive() and not sender.is_alive()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        release.set()
    assert ran == [True], "the handler did not run while the acquire was blocked"
    assert lock.statistics().contentions == 1


@classes
def test_stress_mixed_acquires_keep_mutual_exclusion(cls: Any) -> None:
    """8 threads, switching the GIL constantly, mixing blocking, timed, non-blocking and
    with-acquires: mutual exclusion holds, nothing hangs, every count is exact."""
    import random

    lock = cls()
    box = {"inside": 0, "acquired": 0, "timeouts": 0, "failed_tries": 0}
    violations: list[int] = []
    deadline = time.monotonic() + 1.0

    def critical() -> None:
        box["inside"] += 1
        if box["inside"] != 1:
            violations.append(box["inside"])
        box["acquired"] += 1
        box["inside"] -= 1

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            mode = rng.randrange(4)
            if mode == 3:
                with lock:
                    critical()
                continue
            if mode == 0:
                got = lock.acquire()
            elif mode == 1:
                got = lock.acquire(timeout=rng.choice([0.0001, 0.001]))
                box["timeouts"] += not got
            else:
                got = lock.acquire(False)
                box["failed_tries"] += not got
            if got:
                critical()
                lock.release()

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        run_threads(*[lambda i=i: work(i) for i in range(8)], timeout=60)
    finally:
        sys.setswitchinterval(previous)
    assert violations == []
    assert not lock.locked() and lock._owner == 0
    s = lock.statistics()
    assert s.acquisitions == box["acquired"]
    assert (s.timeouts, s.would_block) == (box["timeouts"], box["failed_tries"])


# -- hold records: the same from both implementations -------------------


def _hold_spans(cls: Any, spans: InMemorySpanExporter, limit: int) -> tuple[list[Any], Any, int]:
    """Ten holds above a zero threshold, nested (an RLock goes two deep) under
    an application span, in a worker thread; the hold spans, the app span and
    the line of the outer ``with``."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("app")
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0, max_spans_per_second=limit)
    lock = cls(name="fast_or_not")
    reentrant = "RLock" in cls.__name__
    request: list[Any] = []

    def work() -> None:
        with tracer.start_as_current_span("request") as span:
            request.append(span)
            for _ in range(10):
                with lock:  # the line the hold spans name
                    if reentrant:
                        with lock:
                            pass

    t = threading.Thread(target=work, name="hold-maker")
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert tracedsync.flush(10)
    line = work.__code__.co_firstlineno + 4
    holds = [s for s in spans.get_finished_spans() if s.attributes["sync.name"] == "fast_or_not"]
    return holds, request[0], line


@classes
def test_hold_spans_carry_site_thread_parent_and_depth(
    cls: Any, spans: InMemorySpanExporter
) -> None:
    """From the C release or the Python one, a hold span is the same."""
    holds, request, line = _hold_spans(cls, spans, 0)
    assert len(holds) == 10
    for s in holds:
        assert s.attributes["code.file.path"] == __file__
        assert s.attributes["code.line.number"] == line
        assert s.attributes["code.function.name"] == "work"
        assert s.attributes["thread.name"] == "hold-maker"
        assert s.parent is not None and s.parent.span_id == request.context.span_id
        assert s.context.trace_id == request.context.trace_id
        if "RLock" in cls.__name__:
            assert s.attributes["sync.rlock.depth"] == 2


@classes
def test_hold_spans_name_the_release_line(cls: Any, spans: InMemorySpanExporter) -> None:
    """A hold ended by release() names the line of that call, whether it
    crossed the threshold or a waiter is blamed on it, from C or Python."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0, max_spans_per_second=0)
    lock = cls(name="released_here")
    lines = []
    for blamed in (False, True):
        lock.acquire()
        if blamed:
            lock._blame = 12345  # as a waiter does when it links to this hold
        lines.append(sys._getframe().f_lineno + 1)
        lock.release()
    assert tracedsync.flush(10)
    holds = [s for s in spans.get_finished_spans() if s.attributes["sync.name"] == "released_here"]
    assert [s.attributes["code.line.number"] for s in holds] == lines
    for s in holds:
        assert s.attributes["code.file.path"] == __file__
        assert s.attributes["code.function.name"] == "test_hold_spans_name_the_release_line"


@classes
def test_condition_wait_gives_the_lock_up_and_takes_it_back_alike(
    cls: Any, spans: InMemorySpanExporter
) -> None:
    """_release_save/_acquire_restore (in C for the compiled classes,
    _OwnedAPI's Python for the pure ones): the state given back, a hold that
    goes on across the wait, and a waiter's reserved hold span (_blame)
    recorded at the give-up under that span id."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0, max_spans_per_second=0)
    lock = cls(name="given_up")
    rlock = "RLock" in cls.__name__
    with pytest.raises(RuntimeError):
        lock._release_save()
    for _ in range(2 if rlock else 1):
        lock.acquire()
    lock._blame = 0x1234
    lock._t -= 50_000_000  # held for 50 ms so far
    state = lock._release_save()
    assert not lock.locked() and lock._owner == 0 and lock._t == 0 and lock._blame is None
    held = state[2] if rlock else state
    assert held >= 50_000_000
    if rlock:
        assert state[:2] == (2, threading.get_ident())
    lock._acquire_restore(state)
    assert lock.locked() and lock._owner == threading.get_ident()
    assert time.monotonic_ns() - lock._t >= held
    if rlock:
        assert lock._recursion_count() == 2
        lock.release()
    lock.release()
    assert not lock.locked()
    assert tracedsync.flush(10)
    holds = [s for s in spans.get_finished_spans() if s.attributes["sync.name"] == "given_up"]
    assert [s.context.span_id == 0x1234 for s in holds] == [True, False]
    for s in holds:
        assert s.end_time - s.start_time >= 50_000_000


@classes
def test_hold_spans_keep_to_the_budget(cls: Any, spans: InMemorySpanExporter) -> None:
    """max_spans_per_second=4: four hold spans; the other six are counted
    suppressed, whether the hot path kept them out or the recorder did."""
    holds, _, _ = _hold_spans(cls, spans, 4)
    assert len(holds) == 4
    (st,) = [s for s in tracedsync.stats() if s.name == "fast_or_not" and s.kind != "condition"]
    assert st.spans_suppressed == 6


@classes
def test_the_budget_keeps_the_slowest_holds_and_the_hot_path_cuts_the_rest(
    cls: Any, spans: InMemorySpanExporter, slow_path_calls: list[str]
) -> None:
    """Twenty holds of known lengths in one window, four kept: the four
    longest. Once the window is full, a hold shorter than all four kept never
    reaches the recorder (the hot path compares it with ``_admit``)."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0, max_spans_per_second=4)
    lock = cls(name="budgeted")
    lengths_ms = [3, 9, 1, 12, 5, 15, 2, 2, 8, 20, 1, 1, 1, 7, 30, 1, 2, 1, 11, 1]
    for ms in lengths_ms:
        lock.acquire()
        lock._t -= ms * 1_000_000  # as if held that long
        lock.release()
    kept_out_early = lock._hsup
    assert tracedsync.flush(10)
    got = sorted(
        round((s.end_time - s.start_time) / 1e6)
        for s in spans.get_finished_spans()
        if s.attributes["sync.name"] == "budgeted"
    )
    assert got == sorted(lengths_ms)[-4:] == [12, 15, 20, 30]
    assert lock.statistics().spans_suppressed == len(lengths_ms) - 4
    assert kept_out_early > 0  # cut on the hot path, before any Python ran
    assert slow_path_calls.count("hold_end") == len(lengths_ms) - kept_out_early


@pytest.mark.parametrize(
    "cls", [pair[1] for pair in IMPLEMENTATIONS.values()], ids=list(IMPLEMENTATIONS)
)
def test_rlock_takes_and_ignores_arguments_like_threading(cls: Any) -> None:
    """threading.RLock(*args, **kwargs) ignores them (3.13+: DeprecationWarning,
    CPython's test_threading test_signature); no arguments, no warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls()
        cls(name="named")
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []
    for args, kwargs in [((1,), {}), ((), {"a": 1}), ((1, 2), {"a": 1})]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lock = cls(*args, **kwargs)
        deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
        assert len(deprecations) == (1 if sys.version_info >= (3, 13) else 0)
        if deprecations:
            assert deprecations[0].filename == __file__  # points at the caller
        assert lock.acquire() and lock.acquire()
        lock.release()
        lock.release()


@pytest.mark.skipif(_impl.speedups is None, reason="the compiled implementation is not built")
def test_adopt_methods_keeps_overrides_and_refuses_other_classes() -> None:
    """adopt_methods gives a subclass descriptors of its own for the C methods
    it inherits, leaves a method a Python class overrides, and takes only
    subclasses of the C types."""

    class Sub(primitives.CompiledLock):  # type: ignore[misc,valid-type]
        def locked(self) -> bool:
            return True

    assert _impl.speedups.adopt_methods(Sub) == 11  # all but the overridden locked()
    assert _impl.speedups.adopt_methods(Sub) == 0  # done already
    assert Sub.__dict__["release"].__objclass__ is Sub
    assert Sub().locked() is True
    with pytest.raises(TypeError):
        _impl.speedups.adopt_methods(int)
    with pytest.raises(TypeError):
        _impl.speedups.adopt_methods(1)


# -- exactly a lock: racing releases ------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [pair[0] for pair in IMPLEMENTATIONS.values()] + [threading.Lock],
    ids=[*IMPLEMENTATIONS, "threading"],
)
def test_racing_double_release_succeeds_exactly_once(cls: Any) -> None:
    """Two threads release one held Lock at the same moment, 3,000 times with
    the GIL switching every microsecond: exactly one release succeeds and the
    other raises RuntimeError, every time, and the lock is free after -- as
    with threading.Lock (the third column)."""
    lock = cls()
    rounds = 3000
    start = threading.Barrier(3)
    done = threading.Barrier(3)
    outcomes: list[list[bool]] = [[], []]

    def racer(slot: int) -> None:
        for _ in range(rounds):
            start.wait(30)
            try:
                lock.release()
                outcomes[slot].append(True)
            except RuntimeError:
                outcomes[slot].append(False)
            done.wait(30)

    threads = [threading.Thread(target=racer, args=(i,), daemon=True) for i in (0, 1)]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    doubles = nones = 0
    try:
        for t in threads:
            t.start()
        for i in range(rounds):
            assert lock.acquire(timeout=10)
            start.wait(30)
            done.wait(30)
            succeeded = outcomes[0][i] + outcomes[1][i]
            doubles += succeeded == 2
            nones += succeeded == 0
            assert not lock.locked(), f"round {i}: the lock is still held"
    except BaseException:
        start.abort()  # let the racers go
        done.abort()
        raise
    finally:
        sys.setswitchinterval(previous)
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert (doubles, nones) == (0, 0)
    if cls is not threading.Lock:
        assert lock.statistics().acquisitions == rounds


# -- stacks: captured raw, resolved off-thread -------------------------------------

_sites = sys.modules["tracedsync._sites"]
_FAKE_PACKAGE_FILE = os.path.join(_sites.PACKAGE_DIR, "_fake_wrapper_for_tests.py")
#: Functions whose frames look like tracedsync's own (their file is in the package).
_PACKAGE_SRC = """
def via_package(fn):
    return fn()
"""
_package_ns: dict[str, Any] = {}
exec(compile(_PACKAGE_SRC, _FAKE_PACKAGE_FILE, "exec"), _package_ns)


def _capture_here(depth: int) -> Any:
    return stacks.capture(sys._getframe(), depth)


def test_a_stack_starts_at_the_first_user_frame_and_is_interned() -> None:
    """capture() skips tracedsync's frames at the top, keeps ``depth`` frames of
    user code, and gives the same object for the same stack."""
    got = []
    for _ in range(2):
        got.append(_package_ns["via_package"](lambda: stacks.capture(sys._getframe(), 3)))
    first, second = got
    assert first is second and len(first) == 3
    frames = stacks.frames(first)
    assert frames[0].startswith("tests/test_implementation.py:")
    assert frames[0].endswith(" in <lambda>")
    assert not any("_fake_wrapper_for_tests" in f for f in frames)
    assert frames[1].endswith(" in test_a_stack_starts_at_the_first_user_frame_and_is_interned")
    site = stacks.call_site(first)
    assert site is not None and site[0] == __file__ and site[2] == "<lambda>"


def test_a_stack_is_at_least_the_call_site() -> None:
    """depth 0 still keeps one frame: the call site."""
    stack = _capture_here(0)
    assert len(stack) == 1
    assert stacks.frames(stack)[0].endswith(" in _capture_here")


def test_a_stack_from_another_thread_names_that_thread_s_frames() -> None:
    out: list[Any] = []

    def body() -> None:
        out.append(_capture_here(2))

    run_threads(body)
    (stack,) = out
    assert stacks.frames(stack)[1].endswith(" in body")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
@classes
def test_a_wait_that_ends_within_the_threshold_is_counted(cls: Any) -> None:
    """A blocked acquire that gets the lock within the wait threshold (the
    compiled path waits that part in C) is one contention with its wait in
    the sums and histogram, and makes no record; the acquirer is the owner,
    an RLock at depth 1."""
    previous = _settings.current.wait_ns
    _settings.update(wait_ns=60 * 10**9)  # every wait here ends within it
    try:
        _wait_within_the_threshold(cls)
    finally:
        _settings.update(wait_ns=previous)


def _wait_within_the_threshold(cls: Any) -> None:
    lock = cls()
    lock.acquire()
    got = threading.Event()

    def waiter() -> None:
        lock.acquire()
        got.set()
        assert lock._owner == threading.get_ident()
        if hasattr(lock, "_count"):
            assert lock._count == 1
        lock.release()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: _sleeping(t) and not got.is_set())
    lock.release()
    t.join(10)
    assert not t.is_alive() and got.is_set()
    s = lock.statistics()
    assert (s.acquisitions, s.contentions, s.timeouts) == (2, 1, 0)
    assert 0 < s.wait_max <= s.wait_total and sum(s.wait_histogram) == 2
    assert not records.buffer
    lock._acq_at = None  # forgetting where a hold was taken forgets no wait
    assert lock.statistics().wait_histogram == s.wait_histogram


@pytest.mark.skipif(stacks._stack_key is None, reason="pure Python: no compiled stack walk")
@pytest.mark.parametrize("depth", [0, 1, 2, 3, 500])
def test_the_compiled_stack_key_is_the_python_walk_s(depth: int) -> None:
    """_speedups.stack_key walks the frames as stacks.walk does: same frames
    (tracedsync's own skipped, also between user frames), same offsets, same
    depth limit (clamped to 1..256)."""

    def both() -> tuple[Any, Any]:
        frame = sys._getframe(1)  # the lambda's, suspended here during both walks
        return stacks._stack_key(frame, depth, _sites.PACKAGE_DIR), stacks.walk(
            frame, min(depth, 256)
        )

    compiled, (key, codes) = _package_ns["via_package"](lambda: both())
    assert compiled == key and len(codes) == len(key) // 2
    assert all(id(c) == i for c, i in zip(codes, key[::2], strict=True))
    assert not any(_sites.is_tracedsync_file(c.co_filename) for c in codes)
    assert (
        len(codes) >= 2 or depth < 2
    )  # the lambda and this test, the package frame between skipped
    with pytest.raises(TypeError):
        stacks._stack_key(None, depth, _sites.PACKAGE_DIR)


def test_stack_lines_follow_the_instruction_not_the_function() -> None:
    """Two captures on two lines of one function: two stacks, two lines."""
    a = _capture_here(2)
    b = _capture_here(2)
    assert a is not b
    la = int(stacks.frames(a)[1].split(":")[1].split(" ")[0])
    lb = int(stacks.frames(b)[1].split(":")[1].split(" ")[0])
    assert lb == la + 1
