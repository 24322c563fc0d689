"""Detection: self-deadlocks, deadlocks, stuck waits, lock-order inversions, snapshots."""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tracedsync import detection
from tracedsync.testing import LogCollector, blocked_on, run_threads, threads_running, wait_until


def configure(logs: LogCollector, spans: InMemorySpanExporter | None = None, **kw: Any) -> None:
    options: dict[str, Any] = {"watchdog_interval_ms": 100, "stuck_after_ms": 60_000}
    options.update(kw)
    tracedsync.configure(exporters=[logs] + ([spans] if spans else []), **options)


def collect(logs: LogCollector, event: str) -> list[dict[str, Any]]:
    assert tracedsync.flush(10)
    return logs.named(event)


# -- self-deadlock -------------------------------------------------------------

shared_lock = tracedsync.Lock()
LINES: dict[str, int] = {}


def get_first_part() -> int:
    LINES["inner"] = sys._getframe().f_lineno + 1
    if shared_lock.acquire(timeout=0.3):
        shared_lock.release()
        return 1
    return 0


def get_both_parts() -> int:
    LINES["outer"] = sys._getframe().f_lineno + 1
    with shared_lock:
        return get_first_part()


def test_self_deadlock_reported_with_both_sites(logs: LogCollector) -> None:
    """Blocking on a Lock the thread holds is reported at once, with both
    acquisition sites; the wait still ends by its timeout."""
    configure(logs)
    assert get_both_parts() == 0
    (event,) = collect(logs, "self_deadlock_suspected")
    assert event["site"] == f"tests/test_detection.py:{LINES['inner']}"
    assert event["held_site"] == f"tests/test_detection.py:{LINES['outer']}"
    assert event["sync.name"] == shared_lock.name
    assert event["thread.name"] == "MainThread"
    assert "may be released by another thread" in event["message"]
    assert event["level"] == "error"
    assert any("get_both_parts" in frame for frame in event["stack"])


def test_self_deadlock_ends_normally_if_another_thread_releases(logs: LogCollector) -> None:
    """A Lock released by another thread ends the suspected self-deadlock normally."""
    configure(logs)
    lock = tracedsync.Lock()
    lock.acquire()
    results = []

    def releaser() -> None:
        wait_until(blocked_on(lock))
        lock.release()

    t = threading.Thread(target=releaser)
    t.start()
    results.append(lock.acquire(timeout=10))
    t.join(10)
    lock.release()
    assert results == [True]
    assert len(collect(logs, "self_deadlock_suspected")) == 1


def test_rlock_reentry_is_not_a_self_deadlock(logs: LogCollector) -> None:
    """Re-entering an RLock never reports anything."""
    configure(logs)
    lock = tracedsync.RLock()
    with lock, lock:
        pass
    assert collect(logs, "self_deadlock_suspected") == []


# -- deadlocks ---------------------------------------------------------------


def _cycle(
    locks: list[Any],
    timeout: float,
    wrap: Callable[[Callable[[], None]], None] | None = None,
) -> list[bool]:
    """Thread i holds locks[i] and then wants locks[i+1]: a cycle of len(locks)."""
    n = len(locks)
    barrier = threading.Barrier(n)
    results: list[bool] = []

    def worker(i: int) -> Callable[[], None]:
        def body() -> None:
            with locks[i]:
                barrier.wait()
                nxt = locks[(i + 1) % n]
                got = nxt.acquire(timeout=timeout)
                if got:
                    nxt.release()
                results.append(got)

        return (lambda: wrap(body)) if wrap else body

    run_threads(*[worker(i) for i in range(n)], names=[f"w{i}" for i in range(n)])
    return results


_CYCLE_WITH_LINE = _cycle.__code__.co_firstlineno + 12


def test_abba_deadlock_reported_once_with_span(
    logs: LogCollector, spans: InMemorySpanExporter
) -> None:
    """Two threads in ABBA: one deadlock_detected (threads, waits, holds, stacks) and
    a tracedsync.deadlock span linking the threads' spans; the waits end by timeout."""
    from opentelemetry.sdk.trace import TracerProvider

    configure(logs, spans)
    tracer = TracerProvider().get_tracer("app")
    lock_a, lock_b = tracedsync.Lock(), tracedsync.Lock()
    app_spans: list[Any] = []

    def in_span(body: Callable[[], None]) -> None:
        with tracer.start_as_current_span("job") as span:
            app_spans.append(span.get_span_context())
            body()

    results = _cycle([lock_a, lock_b], timeout=3.0, wrap=in_span)
    assert False in results  # the first timeout breaks the cycle
    (event,) = collect(logs, "deadlock_detected")
    threads = {t["thread.name"]: t for t in event["threads"]}
    assert set(threads) == {"w0", "w1"}
    assert threads["w0"]["waits_for"] == lock_b.name
    assert threads["w0"]["held_by"] == ["w1"]
    (held,) = threads["w0"]["holds"]
    assert held["sync.name"] == lock_a.name and held["sync.instance"] == lock_a.instance
    # Where it took it: the `with locks[i]:` line, read from its stack.
    assert held["acquired_at"] == f"tests/test_detection.py:{_CYCLE_WITH_LINE}"
    assert threads["w0"]["held_by_acquired_at"] == [held["acquired_at"]]
    assert threads["w1"]["waits_for"] == lock_a.name
    assert f"(took it at tests/test_detection.py:{_CYCLE_WITH_LINE})" in event["message"]
    assert any("_cycle" in frame or "body" in frame for frame in threads["w0"]["stack"])
    (span,) = [s for s in spans.get_finished_spans() if s.name == "tracedsync.deadlock"]
    assert {link.context.span_id for link in span.links} == {sc.span_id for sc in app_spans}
    assert event["span_id"] == f"{span.context.span_id:016x}"


def test_three_thread_cycle(logs: LogCollector) -> None:
    """A cycle of three threads is one deadlock with all three."""
    configure(logs)
    locks = [tracedsync.Lock(name=f"L{i}") for i in range(3)]
    _cycle(locks, timeout=1.5)
    (event,) = collect(logs, "deadlock_detected")
    assert sorted(t["waits_for"] for t in event["threads"]) == ["L0", "L1", "L2"]


def test_deadlock_through_rlock_and_semaphore(logs: LogCollector) -> None:
    """RLock and Semaphore holders take part in the wait-for graph."""
    configure(logs)
    _cycle([tracedsync.RLock(name="r"), tracedsync.BoundedSemaphore(1, name="s")], timeout=1.5)
    (event,) = collect(logs, "deadlock_detected")
    assert sorted(t["waits_for"] for t in event["threads"]) == ["r", "s"]


def test_deadlock_through_a_condition_lock(logs: LogCollector) -> None:
    """A thread holding a Condition's lock takes part in a deadlock."""
    configure(logs)
    cond = tracedsync.Condition(name="cond")
    other = tracedsync.Lock(name="other")
    _cycle([cond, other], timeout=1.5)
    (event,) = collect(logs, "deadlock_detected")
    assert sorted(t["waits_for"] for t in event["threads"]) == ["cond", "other"]


def test_deadlock_reported_within_two_watchdog_intervals(logs: LogCollector) -> None:
    """The report comes within two watchdog intervals of the deadlock forming."""
    interval_ms = 500
    configure(logs, watchdog_interval_ms=interval_ms)
    lock_a, lock_b = tracedsync.Lock(), tracedsync.Lock()
    formed: list[int] = []

    def watcher() -> None:
        wait_until(lambda: blocked_on(lock_a)() and blocked_on(lock_b)())
        formed.append(time.monotonic_ns())

    t = threading.Thread(target=watcher)
    t.start()
    _cycle([lock_a, lock_b], timeout=3.0)
    t.join(10)
    (event,) = collect(logs, "deadlock_detected")
    from datetime import datetime

    reported = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    formed_wall = time.time() - (time.monotonic_ns() - formed[0]) / 1e9
    assert reported - formed_wall <= 2 * interval_ms / 1000 + 0.1


def test_deadlock_graph_peels_threads_that_can_progress() -> None:
    """Only threads waiting on each other (not on a running holder) are deadlocked."""

    class P:
        def __init__(self, *holders: int) -> None:
            self.h = [(h, 0) for h in holders]

    waits = {1: P(2), 2: P(1), 3: P(1), 4: P(5), 6: P(6)}
    assert detection.deadlocked(waits, lambda p: p.h) == [[1, 2]]
    # a semaphore held by a blocked and a running thread is not a deadlock
    assert detection.deadlocked({1: P(2, 9), 2: P(1)}, lambda p: p.h) == []


# -- stuck waits ------------------------------------------------------------------


def test_stuck_wait_reported_while_blocked(logs: LogCollector) -> None:
    """A lock acquire blocked past stuck_after_ms is reported while still blocked,
    with the holder's stack."""
    configure(logs, stuck_after_ms=200)
    lock = tracedsync.Lock(name="slow")
    held, seen = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            seen.wait(10)

    def waiter() -> None:
        held.wait(10)
        with lock:
            pass

    with threads_running(holder, waiter, names=["holder", "waiter"], release=seen):
        wait_until(lambda: bool(tracedsync.flush(1) and logs.named("stuck_wait")), timeout=10)
        assert blocked_on(lock)(), "the report must come while the wait is blocked"
    (event,) = logs.named("stuck_wait")
    assert event["thread.name"] == "waiter"
    assert event["sync.holder.thread.name"] == "holder"
    assert any("holder" in frame for frame in event["holder_stacks"]["holder"])
    assert event["waited_ms"] >= 200


def test_idle_waits_are_never_stuck(logs: LogCollector) -> None:
    """Long Event and Condition waits are idle waits, not stuck waits."""
    configure(logs, stuck_after_ms=50)
    ev = tracedsync.Event()
    ev.wait(0.3)
    cond = tracedsync.Condition()
    with cond:
        cond.wait(0.3)
    assert collect(logs, "stuck_wait") == []


# -- lock order ---------------------------------------------------------------------


def test_inversion_reported_although_no_deadlock_happened(logs: LogCollector) -> None:
    """a->b in one thread, later b->a in another: an inversion, reported once with
    the acquisition sites of both edges."""
    configure(logs, lock_order=True)
    a, b = tracedsync.Lock(name="a"), tracedsync.Lock(name="b")

    def ab() -> None:
        with a, b:
            pass

    def ba() -> None:
        with b, a:
            pass

    run_threads(ab)
    run_threads(ba)
    run_threads(ba)
    (event,) = collect(logs, "lock_order_inversion")
    edges = {(e["outer"], e["inner"]) for e in event["edges"]}
    assert edges == {("a", "b"), ("b", "a")}
    assert all(e["outer_site"].startswith("tests/test_detection.py:") for e in event["edges"])
    assert collect(logs, "deadlock_detected") == []


def _a_test_lock() -> Any:
    return tracedsync.Lock()  # one creation site: one lock class


def test_a_lock_dropped_while_held_orders_nothing(logs: LogCollector) -> None:
    """``lock.acquire(); del lock`` (CPython's lock_tests do it): the lock is
    gone, so it is held by nobody and not kept alive for the tracking, and
    the locks taken afterwards are not ordered after it -- which made a later
    lock of its class, taken inside another, an inversion."""
    configure(logs, lock_order=True)
    dropped = _a_test_lock()
    dropped.acquire()
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert gone() is None
    outer = tracedsync.Lock(name="outer")
    with outer, _a_test_lock():
        pass
    assert collect(logs, "lock_order_inversion") == []


def test_three_lock_inversion_cycle(logs: LogCollector) -> None:
    """A cycle of any length: a->b, b->c, c->a."""
    configure(logs, lock_order=True)
    a, b, c = (tracedsync.Lock(name=n) for n in "abc")
    for outer, inner in ((a, b), (b, c), (c, a)):
        with outer, inner:
            pass
    (event,) = collect(logs, "lock_order_inversion")
    assert len(event["edges"]) == 3


def test_consistent_order_is_never_reported(logs: LogCollector) -> None:
    """10,000 nested acquisitions in one consistent order: no report."""
    configure(logs, lock_order=True)
    a, b, c = tracedsync.Lock(name="a"), tracedsync.RLock(name="b"), tracedsync.Lock(name="c")
    start = threading.Barrier(2)

    def work() -> None:
        start.wait()
        for _ in range(2500):
            with a, b, b, c:
                pass

    run_threads(work, work)
    assert collect(logs, "lock_order_inversion") == []


def test_two_instances_of_one_class_in_both_orders_is_an_inversion(logs: LogCollector) -> None:
    """transfer(a, b) then transfer(b, a) over locks made at one site: an
    inversion naming both instances and the four sites; the same pair nested
    in one order only, and non-blocking tries, are not."""
    configure(logs, lock_order=True)
    accounts = [tracedsync.Lock() for _ in range(3)]  # one site, one class

    balance: dict[int, int] = {}

    def transfer(src: Any, dst: Any) -> None:
        with src:
            balance[id(src)] = balance.get(id(src), 0) - 1
            with dst:  # the inner site
                balance[id(dst)] = balance.get(id(dst), 0) + 1

    transfer(accounts[0], accounts[1])
    transfer(accounts[0], accounts[2])
    transfer(accounts[1], accounts[2])  # always the lower first: consistent
    assert collect(logs, "lock_order_inversion") == []
    transfer(accounts[1], accounts[0])
    (event,) = collect(logs, "lock_order_inversion")
    assert event["same_class"] is True
    pairs = {(e["outer_instance"], e["inner_instance"]) for e in event["edges"]}
    assert pairs == {(1, 2), (2, 1)}
    outer_line = transfer.__code__.co_firstlineno + 1
    sites = {e["outer_site"] for e in event["edges"]} | {e["inner_site"] for e in event["edges"]}
    assert sites == {
        f"tests/test_detection.py:{outer_line}",
        f"tests/test_detection.py:{outer_line + 2}",
    }
    assert "#1" in event["message"] and "#2" in event["message"]
    x, y = tracedsync.Lock(name="x"), tracedsync.Lock(name="y")
    with x:
        assert y.acquire(False)
        y.release()
    with y:
        assert x.acquire(blocking=False)
        x.release()
    assert len(collect(logs, "lock_order_inversion")) == 1


def test_declared_order(logs: LogCollector) -> None:
    """An intended order can be declared: the first opposite nesting is reported."""
    configure(logs, lock_order=True)
    first, second = tracedsync.Lock(name="first"), tracedsync.Lock(name="second")
    tracedsync.declare_lock_order(first, second)
    with second, first:
        pass
    (event,) = collect(logs, "lock_order_inversion")
    assert {(e["outer"], e["inner"]) for e in event["edges"]} == {
        ("first", "second"),
        ("second", "first"),
    }


def test_lock_order_off_restores_the_methods() -> None:
    """Turning lock_order off puts the fast methods back."""
    before = {name: tracedsync.Lock.__dict__.get(name) for name in ("acquire", "release")}
    tracedsync.configure(lock_order=True)
    assert tracedsync.Lock.__dict__.get("acquire") is not before["acquire"]
    tracedsync.configure(lock_order=False)
    assert {name: tracedsync.Lock.__dict__.get(name) for name in before} == before


# -- snapshot -------------------------------------------------------------------------


def test_snapshot_shows_holders_and_waiters() -> None:
    """snapshot() lists who holds and who waits right now, with stacks on demand."""
    lock = tracedsync.Lock(name="pool")
    ev = tracedsync.Event(name="ready")
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    def waiter() -> None:
        with lock:
            pass

    def idler() -> None:
        ev.wait(10)

    threads = [
        threading.Thread(target=holder, name="holder"),
        threading.Thread(target=waiter, name="waiter"),
        threading.Thread(target=idler, name="idler"),
    ]
    threads[0].start()
    held.wait(10)
    threads[1].start()
    threads[2].start()
    try:
        wait_until(blocked_on(lock))
        wait_until(blocked_on(ev, idle=True))
        states = {s.name: s for s in tracedsync.snapshot(stacks=True)}
        assert [t.name for t in states["pool"].holders] == ["holder"]
        assert [t.name for t in states["pool"].waiters] == ["waiter"]
        assert [t.name for t in states["ready"].waiters] == ["idler"]
        assert any("holder" in frame for frame in states["pool"].holders[0].stack)
        text = detection.format_snapshot(states.values())
        assert "lock pool" in text and "held by holder" in text
    finally:
        done.set()
        ev.set()
        for t in threads:
            t.join(10)
    assert tracedsync.snapshot() == []


def test_nothing_is_reported_without_a_pipeline() -> None:
    """Without exporters, detection never raises and reports nothing."""
    tracedsync.configure(lock_order=True)
    assert get_both_parts() == 0
    assert detection.watchdog() is None


@pytest.fixture(autouse=True)
def _reset_lock_order() -> Any:
    yield
    tracedsync.configure(lock_order=False)
    tracedsync.shutdown()
