"""The two implementations of Semaphore and BoundedSemaphore: compiled (C) and
pure Python, held to one set of rules here (CPython's lock_tests run against
the one loaded, ``tests/conformance``).

Races are forced with a Barrier (every thread starts at once) and with
``time.sleep(0)`` inside the held section (the holder gives up the GIL, so
the others find no unit left and block); every join has a timeout.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tracedsync import _stdlib, acquisition, primitives, waits
from tracedsync.testing import run_threads, wait_until

IMPLEMENTATIONS: dict[str, tuple[Any, Any]] = {
    "pure": (primitives.PureSemaphore, primitives.PureBoundedSemaphore)
}
if primitives.CompiledSemaphore is not None:
    IMPLEMENTATIONS["compiled"] = (
        primitives.CompiledSemaphore,
        primitives.CompiledBoundedSemaphore,
    )

#: (implementation, kind) -> class.
CLASSES = {
    f"{impl}-{kind}": pair[i]
    for impl, pair in IMPLEMENTATIONS.items()
    for i, kind in enumerate(("Semaphore", "BoundedSemaphore"))
}
classes = pytest.mark.parametrize("cls", list(CLASSES.values()), ids=list(CLASSES))
bounded_classes = pytest.mark.parametrize(
    "cls", [pair[1] for pair in IMPLEMENTATIONS.values()], ids=list(IMPLEMENTATIONS)
)
semaphore_classes = pytest.mark.parametrize(
    "cls", [pair[0] for pair in IMPLEMENTATIONS.values()], ids=list(IMPLEMENTATIONS)
)


def test_the_loaded_classes_are_the_implementation() -> None:
    """tracedsync.Semaphore/BoundedSemaphore are the compiled classes exactly
    when Lock is; both present themselves under the stdlib's names."""
    if tracedsync.IMPLEMENTATION == "compiled":
        assert tracedsync.Semaphore is primitives.CompiledSemaphore
        assert tracedsync.BoundedSemaphore is primitives.CompiledBoundedSemaphore
    else:
        assert tracedsync.Semaphore is primitives.PureSemaphore
        assert tracedsync.BoundedSemaphore is primitives.PureBoundedSemaphore
    for sem_cls, bounded_cls in IMPLEMENTATIONS.values():
        assert issubclass(bounded_cls, sem_cls)
        assert (sem_cls.__name__, bounded_cls.__name__) == ("Semaphore", "BoundedSemaphore")
        assert sem_cls.__module__ == bounded_cls.__module__ == "tracedsync"


@classes
def test_never_more_than_k_inside(cls: Any) -> None:
    """N threads hammering a Semaphore(k), started together: never more than
    k inside (counted under a raw lock), every unit back at the end, every
    acquisition and hold counted, nothing left held."""
    k, n_threads, rounds = 3, 8, 300
    sem = cls(k, name="race")
    count_lock = _stdlib.Lock()
    inside = [0]
    most = [0]
    start = threading.Barrier(n_threads)

    def enter() -> None:
        with count_lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0)  # let the others in: they find no unit and block
        with count_lock:
            inside[0] -= 1

    def worker(i: int) -> None:
        start.wait(timeout=30)
        for r in range(rounds):
            style = (i + r) % 3
            if style == 0:
                with sem:
                    enter()
            elif style == 1:
                assert sem.acquire(timeout=30)
                enter()
                sem.release()
            elif sem.acquire(False):
                enter()
                sem.release()
            else:
                assert sem.acquire()
                enter()
                sem.release()

    run_threads(*[lambda i=i: worker(i) for i in range(n_threads)], timeout=120)
    assert most[0] <= k
    assert most[0] >= 1
    assert sem._value == k
    assert sem._holders() == []
    stats = sem.statistics()
    assert stats.acquisitions == n_threads * rounds
    assert sum(stats.hold_histogram) == n_threads * rounds
    assert stats.contentions >= stats.timeouts == 0


@bounded_classes
def test_over_release_races_raise_as_the_stdlib(cls: Any) -> None:
    """Threads racing to release a BoundedSemaphore(k) with k units taken:
    exactly k releases succeed and every other raises ValueError, as with
    threading.BoundedSemaphore; the value ends at k."""
    k, n_threads = 3, 8

    def race(sem: Any) -> tuple[int, list[str]]:
        for _ in range(k):
            assert sem.acquire(False)
        start = threading.Barrier(n_threads)
        ok: list[int] = []
        errors: list[str] = []

        def releaser() -> None:
            start.wait(timeout=30)
            try:
                sem.release()
                ok.append(1)
            except ValueError as exc:
                errors.append(str(exc))

        run_threads(*[releaser] * n_threads)
        return len(ok), errors

    traced = cls(k)
    ok, errors = race(traced)
    std_ok, std_errors = race(_stdlib.BoundedSemaphore(k))
    assert (ok, errors) == (std_ok, std_errors) == (k, [std_errors[0]] * (n_threads - k))
    assert errors[0] == "Semaphore released too many times"
    assert traced._value == k
    assert traced._holders() == []  # the other threads' releases paired with the holds


@bounded_classes
def test_over_release_by_n(cls: Any) -> None:
    """release(n) past the bound raises before giving anything back."""
    sem = cls(3)
    assert sem.acquire() and sem.acquire()
    with pytest.raises(ValueError, match="Semaphore released too many times"):
        sem.release(3)
    assert sem._value == 1
    assert len(sem._holders()) == 2
    sem.release(2)
    assert sem._value == 3
    assert sem._holders() == []


@semaphore_classes
def test_release_n_wakes_up_to_n_waiters(cls: Any) -> None:
    """Five threads blocked on a Semaphore(0): release(3) lets exactly three
    through, release(2) the other two."""
    sem = cls(0)
    through: list[int] = []
    done = threading.Semaphore(0)

    def waiter(i: int) -> None:
        assert sem.acquire(timeout=30)
        through.append(i)
        done.release()

    threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(5)]
    for t in threads:
        t.start()
    wait_until(lambda: sem._nwait == 5)
    sem.release(3)
    for _ in range(3):
        assert done.acquire(timeout=30)
    wait_until(lambda: sem._nwait == 2)
    assert len(through) == 3
    sem.release(2)
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert sorted(through) == list(range(5))
    assert sem._value == 0
    assert sem.statistics().acquisitions == 5


@classes
def test_bad_arguments_raise_as_the_stdlib(cls: Any) -> None:
    """ValueError for n < 1 and for a timeout on a non-blocking acquire,
    TypeError for what does not fit the signatures, with the messages of the
    pure implementation; nothing is taken or given back."""
    sem = cls(2)
    pure = primitives.PureBoundedSemaphore(2) if "Bounded" in repr(sem) else None
    pure = pure or primitives.PureSemaphore(2)
    calls = [
        lambda s: s.release(0),
        lambda s: s.release(-1),
        lambda s: s.acquire(False, 1),
        lambda s: s.acquire(blocking=False, timeout=0),
        lambda s: s.acquire(True, 1, 2),
        lambda s: s.acquire(block=True),
        lambda s: s.release(1, 2),
        lambda s: s.release(m=1),
        lambda s: s.release("1"),
    ]
    sem.acquire()
    pure.acquire()
    for call in calls:
        with pytest.raises((ValueError, TypeError)) as got:
            call(sem)
        with pytest.raises(got.type) as expected:
            call(pure)
        assert str(got.value) == str(expected.value)
    assert sem._value == 1
    assert len(sem._holders()) == 1


@classes
def test_a_hold_names_its_thread_and_site(cls: Any) -> None:
    """A thread that ends holding a unit is named by its Thread and the line
    it took the unit on, after it has ended."""
    sem = cls(2)

    def leaker() -> None:
        sem.acquire()  # the line named below

    line = leaker.__code__.co_firstlineno + 1
    run_threads(leaker, names=["leaker-1"])
    ((ident, since, site, thread),) = sem._holders()
    assert thread.name == "leaker-1" and not thread.is_alive() and ident == thread.ident
    assert since > 0
    assert acquisition.recorded(site).endswith(f"test_semaphores.py:{line}")
    assert sem.statistics().acquisitions == 1


@semaphore_classes
def test_a_signal_has_no_holds(cls: Any) -> None:
    """A semaphore made empty is a signal: its acquisitions are counted, and
    are not holds anyone owes back."""
    signal = cls(0)
    signal.release(2)
    assert signal.acquire() and signal.acquire(timeout=1)
    assert signal._holders() == []
    s = signal.statistics()
    assert (s.acquisitions, sum(s.hold_histogram)) == (2, 0)


@classes
def test_releases_pair_with_holds(cls: Any) -> None:
    """A release ends this thread's latest hold, else the oldest outstanding one."""
    sem = cls(3)
    ready = threading.Event()
    finish = threading.Event()

    def other() -> None:
        sem.acquire()
        ready.set()
        finish.wait(timeout=30)

    t = threading.Thread(target=other, daemon=True)
    t.start()
    assert ready.wait(timeout=30)
    sem.acquire()
    sem.acquire()
    me = threading.get_ident()
    holders = [(h[0], h[1]) for h in sem._holders()]
    assert [ident for ident, _ in holders] == [t.ident, me, me]
    sem.release()  # my latest
    assert [(h[0], h[1]) for h in sem._holders()] == holders[:2]
    sem.release()
    sem.release()  # none of mine left: the other thread's
    assert sem._holders() == []
    finish.set()
    t.join(timeout=30)
    assert not t.is_alive()


@semaphore_classes
def test_initial_values_outside_c_counting(cls: Any) -> None:
    """Values the compiled core does not count in (a float, a huge int) work
    as with the stdlib (they make the pure-Python semaphore); a negative one
    is refused."""
    for value in (1.5, 2**70):
        sem = cls(value)
        assert sem.acquire(False)
        sem.release()
        assert sem._value == value
    with pytest.raises(ValueError, match="semaphore initial value must be >= 0"):
        cls(-1)


@classes
def test_a_cycle_through_a_held_thread_is_collected(cls: Any) -> None:
    """A semaphore whose leaked hold keeps a Thread that refers back to it is
    freed by the garbage collector (the compiled core traverses its holds)."""
    sem = cls(1)
    ref = weakref.ref(sem)

    def leak(prim: Any) -> None:
        prim.acquire()

    t = threading.Thread(target=leak, args=(sem,), daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    t.back = sem  # type: ignore[attr-defined]  # the Thread refers to the semaphore
    del sem, t
    gc.collect()
    assert ref() is None


@semaphore_classes
def test_waits_time_out(cls: Any) -> None:
    """acquire(timeout) on an empty semaphore returns False after the
    timeout; counted as a contention and a timeout."""
    sem = cls(1)
    assert sem.acquire()
    assert sem.acquire(timeout=0.01) is False
    assert sem.acquire(timeout=0) is False
    assert sem.acquire(timeout=-1) is False
    s = sem.statistics()
    assert (s.contentions, s.timeouts, s.would_block) == (1, 1, 2)
    sem.release()


def test_refcounts_do_not_leak() -> None:
    """The compiled acquire and release keep no reference they took."""
    if primitives.CompiledSemaphore is None:
        pytest.skip("the extension is not built")
    sem = primitives.CompiledSemaphore(2)
    code = sys._getframe().f_code
    thread = threading.current_thread()
    before = (sys.getrefcount(code), sys.getrefcount(thread))
    for _ in range(100):
        with sem:
            pass
        sem.acquire()
        sem.acquire()
        sem.release(2)
    assert (sys.getrefcount(code), sys.getrefcount(thread)) == before


@semaphore_classes
def test_the_largest_counted_value(cls: Any) -> None:
    """Semaphore(sys.maxsize) counts like any other; the compiled one (which
    counts in a C long long) refuses a release past it with OverflowError."""
    sem = cls(sys.maxsize)
    assert sem.acquire(False)
    sem.release()
    assert sem._value == sys.maxsize
    if cls is primitives.CompiledSemaphore:
        with pytest.raises(OverflowError):
            sem.release()
        assert sem._value == sys.maxsize


@classes
@pytest.mark.parametrize("threshold_ms", [0, 60_000])
def test_a_wait_is_noted_past_the_wait_threshold(
    cls: Any, threshold_ms: int, spans: InMemorySpanExporter
) -> None:
    """A blocked acquire first waits the wait threshold through unnoted (most
    waits end there: no holder is named, the watchdog does not see it); past
    it -- at once with a threshold of 0 -- the wait is noted and becomes a
    span naming the holder. Either way it is counted."""
    tracedsync.configure(exporters=[spans], wait_threshold_ms=threshold_ms)
    sem = cls(1, name="pool")
    line = sys._getframe().f_lineno + 1
    assert sem.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(sem.acquire(timeout=60)), daemon=True)
    t.start()
    wait_until(lambda: sem._nwait == 1)
    assert (waits.of(t.ident or 0) is not None) == (threshold_ms == 0)
    sem.release()
    t.join(timeout=30)
    assert not t.is_alive() and got == [True]
    tracedsync.flush()
    waited = [s for s in spans.get_finished_spans() if s.name.endswith(".wait")]
    if threshold_ms == 0:
        (span,) = waited
        assert span.attributes is not None
        assert span.attributes.get("sync.holder.acquired_at", "").endswith(f":{line}")
    else:
        assert waited == []
    assert sem.statistics().contentions == 1
