"""Contract tests of the traced primitives: semantics and exact statistics."""

from __future__ import annotations

import gc
import sys
import threading
import time
import tracemalloc
import weakref
from typing import Any

import pytest

import tracedsync
from tracedsync import _stdlib
from tracedsync.testing import held_in_thread, run_threads

LOCK_LIKE = {
    "Lock": lambda: tracedsync.Lock(),
    "RLock": lambda: tracedsync.RLock(),
    "Semaphore": lambda: tracedsync.Semaphore(1),
    "BoundedSemaphore": lambda: tracedsync.BoundedSemaphore(1),
    "Condition": lambda: tracedsync.Condition(),
}


def _stats_of(prim: Any) -> tracedsync.PrimitiveStats:
    # A Condition's acquisitions are recorded by its own RLock.
    target = prim._lock if isinstance(prim, tracedsync.Condition) else prim
    return target.statistics()


@pytest.mark.parametrize("make", LOCK_LIKE.values(), ids=list(LOCK_LIKE))
def test_mutual_exclusion_and_exact_counts(make: Any) -> None:
    """N threads x M operations: no lost update, acquisitions and holds counted exactly."""
    prim = make()
    threads, per_thread = 8, 1500
    box = {"value": 0}
    start = threading.Barrier(threads)

    def bump(v: int) -> int:
        return v + 1

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            with prim:
                box["value"] = bump(box["value"])

    run_threads(*[work] * threads)
    total = threads * per_thread
    assert box["value"] == total
    s = _stats_of(prim)
    assert s.acquisitions == total
    assert 0 <= s.contentions <= s.acquisitions
    assert s.timeouts == 0 and s.would_block == 0
    assert sum(s.hold_histogram) == total
    assert sum(s.wait_histogram) == total
    assert s.hold_total > 0
    assert s.hold_max <= s.hold_total


@pytest.mark.parametrize("make", LOCK_LIKE.values(), ids=list(LOCK_LIKE))
def test_failed_try_is_counted_not_acquired(make: Any) -> None:
    """A failed non-blocking try counts as would_block and nothing else."""
    prim = make()
    with held_in_thread(prim):
        assert prim.acquire(False) is False
        assert prim.acquire(blocking=False) is False
    s = _stats_of(prim)
    assert (s.would_block, s.acquisitions, s.contentions, s.timeouts) == (2, 1, 0, 0)


@pytest.mark.parametrize("make", LOCK_LIKE.values(), ids=list(LOCK_LIKE))
def test_timeout_is_counted(make: Any) -> None:
    """An acquire that times out returns False and counts one timeout, which
    is also a contention (it blocked)."""
    prim = make()
    with held_in_thread(prim):
        before = time.monotonic()
        assert prim.acquire(timeout=0.05) is False
        assert time.monotonic() - before >= 0.045
    s = _stats_of(prim)
    assert (s.timeouts, s.acquisitions, s.contentions) == (1, 1, 1)
    assert s.wait_total >= 0.045
    assert sum(s.wait_histogram) == s.acquisitions + s.timeouts


@pytest.mark.parametrize("cls", [tracedsync.Lock, tracedsync.RLock])
def test_arguments_checked_before_the_try(cls: Any) -> None:
    """Bad arguments raise exactly what the stdlib raises, even on a free lock."""
    std = threading.Lock() if cls is tracedsync.Lock else threading.RLock()
    lock = cls()
    for args, kwargs in [
        ((), {"timeout": -100}),
        ((False, 1), {}),
        ((), {"timeout": float("nan")}),
        ((), {"timeout": "x"}),
        ((), {"timeout": 2**63}),
    ]:
        with pytest.raises(Exception) as expected:
            std.acquire(*args, **kwargs)
        with pytest.raises(type(expected.value)) as got:
            lock.acquire(*args, **kwargs)
        assert str(got.value) == str(expected.value)
    assert not lock.locked()
    assert lock.statistics().acquisitions == 0


def test_rlock_reentries_are_not_acquisitions() -> None:
    """Nested RLock acquires count as reentries; one hold spans the outermost pair."""
    lock = tracedsync.RLock()
    with lock, lock, lock:
        assert lock._recursion_count() == 3
    s = lock.statistics()
    assert (s.acquisitions, s.reentries) == (1, 2)
    assert sum(s.hold_histogram) == 1


def test_rlock_release_by_non_owner_raises() -> None:
    """Releasing an RLock owned by another thread raises like the stdlib."""
    lock = tracedsync.RLock()
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        lock.release()
    lock.acquire()
    errors = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(str(exc))

    run_threads(other)
    assert errors == ["cannot release un-acquired lock"]
    lock.release()


def test_lock_release_unlocked_raises() -> None:
    """Releasing an unlocked Lock raises the stdlib's error and counts nothing."""
    lock = tracedsync.Lock()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    assert sum(lock.statistics().hold_histogram) == 0


def test_lock_released_by_another_thread() -> None:
    """A Lock may legally be released by a thread that did not acquire it."""
    lock = tracedsync.Lock()
    lock.acquire()
    run_threads(lock.release)
    assert not lock.locked()
    assert sum(lock.statistics().hold_histogram) == 1


@pytest.mark.parametrize("lock_factory", [None, tracedsync.Lock, tracedsync.RLock])
def test_condition_wait_is_not_hold_time(lock_factory: Any) -> None:
    """Time released inside Condition.wait is not hold time; the re-acquire is
    not a new acquisition."""
    lock = lock_factory() if lock_factory else None
    cond = tracedsync.Condition(lock)
    with cond:
        assert cond.wait(0.2) is False
    s = (lock or cond._lock).statistics()
    assert s.acquisitions == 1
    assert s.hold_total < 0.1
    w = cond.statistics()
    assert (w.waits, w.timeouts) == (1, 1)
    assert w.wait_total >= 0.19


def test_condition_notify_wakes_waiter() -> None:
    """notify() ends a wait with True; the condition counts the wait."""
    cond = tracedsync.Condition()
    waiting = threading.Event()
    results = []

    def waiter() -> None:
        with cond:
            waiting.set()
            results.append(cond.wait(10))

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(10)
    with cond:  # the waiter is inside wait() once we get the lock
        cond.notify()
    t.join(10)
    assert not t.is_alive()
    assert results == [True]
    s = cond.statistics()
    assert (s.waits, s.timeouts, s.contentions) == (1, 0, 1)


def test_bounded_semaphore_over_release_raises() -> None:
    """Releasing a BoundedSemaphore too often raises ValueError like the stdlib."""
    sem = tracedsync.BoundedSemaphore(2)
    with pytest.raises(ValueError, match="Semaphore released too many times"):
        sem.release()
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError, match="Semaphore released too many times"):
        sem.release()
    assert sem._value == 2
    s = sem.statistics()
    assert (s.acquisitions, sum(s.hold_histogram)) == (1, 1)


def test_semaphore_counts_units() -> None:
    """A Semaphore(3) lets three threads in at once; the fourth try fails."""
    sem = tracedsync.Semaphore(3)
    assert all(sem.acquire(False) for _ in range(3))
    assert sem.acquire(False) is False
    sem.release(3)
    s = sem.statistics()
    assert (s.acquisitions, s.would_block, sum(s.hold_histogram)) == (3, 1, 3)


def test_event_wait_counts() -> None:
    """Event.wait returns the flag; waits, blocking waits and timeouts are counted."""
    ev = tracedsync.Event()
    assert ev.wait(0.01) is False
    ev.set()
    assert ev.wait() is True
    s = ev.statistics()
    assert (s.waits, s.contentions, s.timeouts) == (2, 1, 1)


def test_barrier_passes_and_breaks() -> None:
    """Barrier.wait returns distinct indices; a timeout breaks it."""
    barrier = tracedsync.Barrier(3)
    indices = []
    run_threads(*[lambda: indices.append(barrier.wait(10))] * 3)
    assert sorted(indices) == [0, 1, 2]
    with pytest.raises(tracedsync.BrokenBarrierError):
        barrier.wait(0.01)
    assert barrier.broken
    s = barrier.statistics()
    assert (s.waits, s.timeouts) == (4, 1)


def test_broken_barrier_error_is_the_stdlib_one() -> None:
    """BrokenBarrierError is re-exported, not copied."""
    assert tracedsync.BrokenBarrierError is threading.BrokenBarrierError


pool_lock = tracedsync.Lock()
_POOL_LINE = sys._getframe().f_lineno - 1


class _Queue:
    def __init__(self) -> None:
        self.not_empty = tracedsync.Condition()


def test_names_are_inferred_from_assignment_and_site() -> None:
    """Names come from the assigned variable or attribute plus the creation site."""
    assert pool_lock.name == f"pool_lock (tests/test_primitives.py:{_POOL_LINE})"
    q = _Queue()
    assert q.not_empty.name.startswith("not_empty (tests/test_primitives.py:")
    assert q.not_empty._lock.name == q.not_empty.name
    local_event = tracedsync.Event()
    assert local_event.name.startswith("local_event (")
    line = sys._getframe().f_lineno + 1
    anonymous = [tracedsync.Semaphore()]
    assert anonymous[0].name == f"tests/test_primitives.py:{line}"
    assert tracedsync.Lock(name="db pool").name == "db pool"


def test_names_are_stable_and_ids_unique() -> None:
    """Primitives created at one site share a name but never an id."""
    locks = [tracedsync.Lock() for _ in range(3)]
    assert len({lk.name for lk in locks}) == 1
    assert len({lk.id for lk in locks}) == 3
    assert all(lk.kind == "lock" for lk in locks)


def test_name_must_be_a_string() -> None:
    """A non-string name is a TypeError naming what was given."""
    with pytest.raises(TypeError, match="name must be a str, got int"):
        tracedsync.Lock(name=3)  # type: ignore[arg-type]


def test_repr_keeps_the_stdlib_shape_and_adds_the_name() -> None:
    """repr() matches the stdlib's shape (lock_tests regexes) with the name added."""
    lock = tracedsync.Lock(name="pool_lock")
    assert repr(lock).startswith("<unlocked tracedsync.Lock object name='pool_lock' at 0x")
    with lock:
        assert repr(lock).startswith("<locked tracedsync.Lock object")
    rlock = tracedsync.RLock(name="r")
    assert "owner=0 count=0" in repr(rlock)
    assert repr(tracedsync.Event(name="e")).endswith("name='e': unset>")
    assert repr(tracedsync.BoundedSemaphore(3, name="s")).endswith("name='s': value=3/3>")


def test_stats_include_collected_primitives_folded() -> None:
    """Garbage-collected primitives stay in stats(), folded by name and kind."""
    for _ in range(3):
        lock = tracedsync.Lock(name="folded")
        with lock:
            pass
    del lock
    gc.collect()
    # By name: a lock of an earlier test may be collected here too (3.13).
    folded = [s for s in tracedsync.stats() if s.id is None and s.name == "folded"]
    assert len(folded) == 1
    assert (folded[0].instances, folded[0].acquisitions) == (3, 3)


def test_stats_are_frozen() -> None:
    """PrimitiveStats cannot be modified."""
    s = tracedsync.Lock().statistics()
    with pytest.raises(AttributeError):
        s.acquisitions = 5  # type: ignore[misc]


def test_kill_switch_gives_stdlib_objects() -> None:
    """enabled=False makes every constructor return the stdlib's object."""
    tracedsync.configure(enabled=False)
    assert type(tracedsync.Lock()) is type(_stdlib.Lock())
    assert type(tracedsync.Condition()) is _stdlib.Condition
    assert type(tracedsync.Event()) is _stdlib.Event
    tracedsync.configure(enabled=True)
    assert type(tracedsync.Lock()) is tracedsync.Lock


def test_excluded_modules_get_stdlib_objects() -> None:
    """A primitive created by an excluded module (here: grpc) is the stdlib's."""
    scope: dict[str, Any] = {"__name__": "grpc._channel", "tracedsync": tracedsync}
    exec("lock = tracedsync.Lock(); event = tracedsync.Event()", scope)
    assert type(scope["lock"]) is type(_stdlib.Lock())
    assert type(scope["event"]) is _stdlib.Event
    scope = {"__name__": "myapp.db", "tracedsync": tracedsync}
    exec("lock = tracedsync.Lock()", scope)
    assert type(scope["lock"]) is tracedsync.Lock


def test_exclude_and_include_options() -> None:
    """exclude adds module prefixes; include opts a default-excluded one back in."""
    tracedsync.configure(exclude=["myapp.vendor"], include=["logging"])
    for module, traced in [("myapp.vendor.x", False), ("myapp.core", True), ("logging", True)]:
        scope: dict[str, Any] = {"__name__": module, "tracedsync": tracedsync}
        exec("lock = tracedsync.Lock()", scope)
        assert (type(scope["lock"]) is tracedsync.Lock) is traced, module


def test_subclasses_work() -> None:
    """Subclassing a traced primitive works like subclassing the stdlib's."""

    class MyEvent(tracedsync.Event):
        def __init__(self) -> None:
            super().__init__()
            self.extra = 1

    ev = MyEvent()
    ev.set()
    assert ev.wait(0) and ev.extra == 1


def test_uncontended_path_does_not_grow_memory() -> None:
    """10,000 uncontended with-blocks leave no allocation behind (a few counters
    grow into new int objects: a constant, not a per-operation cost)."""
    lock = tracedsync.Lock()
    rlock = tracedsync.RLock()
    for _ in range(1000):
        with lock, rlock:
            pass
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(10_000):
            with lock, rlock:
                pass
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if "tracedsync" in str(stat.traceback)
    )
    assert grown < 1024, f"{grown} bytes allocated by tracedsync on the uncontended path"


def test_weakref_and_collection() -> None:
    """Primitives support weak references and are collectable."""
    import weakref

    lock = tracedsync.Lock()
    ref = weakref.ref(lock)
    del lock
    gc.collect()
    assert ref() is None


def test_a_signal_semaphore_keeps_no_thread_alive() -> None:
    """A semaphore made empty counts what other threads released (queue's
    pure-Python SimpleQueue): the threads that consumed from it are not
    holders, and it keeps none of them alive (CPython's tests count the
    Thread objects left)."""
    items = tracedsync.Semaphore(0)
    items.release(2)
    consumers = [threading.Thread(target=items.acquire) for _ in range(2)]
    for c in consumers:
        c.start()
        c.join(10)
    refs = [weakref.ref(c) for c in consumers]
    del consumers, c
    gc.collect()
    assert [r() for r in refs] == [None, None]
    assert items._holders() == [] and items.statistics().acquisitions == 2
