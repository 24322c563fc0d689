"""The span budget under a flood: what it keeps, what it cuts, and where.

The budget's windows are one second of the records' own end times, so the
first tests drive ``budget.offer`` with chosen times (no clock); the others
run real locks of both implementations within one window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tracedsync import budget, primitives, records, registry

LOCKS = [primitives.PureLock] + (
    [primitives.CompiledLock] if primitives.CompiledLock is not None else []
)
locks = pytest.mark.parametrize("cls", LOCKS, ids=[c.__name__ for c in LOCKS])

SECOND = budget.WINDOW_NS


@pytest.fixture
def fresh() -> Iterator[list[budget.Budget]]:
    """Budgets made here; whatever they kept is dropped afterwards."""
    made: list[budget.Budget] = []
    budget.close_all()  # no other budget shares the limit
    yield made
    budget.close_all()
    records.drop_buffer()


def _offer(b: budget.Budget, durations: list[int], end: int, limit: int) -> int:
    """Offer one record per duration, all ending at ``end``; the suppressed count."""
    return sum(budget.offer(b, d, end, object(), limit) for d in durations)  # type: ignore[arg-type]


def _kept(b: budget.Budget) -> list[int]:
    return sorted(entry[0] for entry in b.heap)


def test_a_window_after_a_full_one_starts_from_its_threshold(
    fresh: list[budget.Budget],
) -> None:
    """A flood that outlasts a second does not pay for filling the heap
    again: the next window admits only what beats the last one's slowest
    kept; after a pause a window starts from nothing."""
    b = budget.Budget(budget.HOLDS)
    fresh.append(b)
    t = 10 * SECOND
    assert _offer(b, list(range(1, 21)), t, 4) == 16
    assert _kept(b) == [17, 18, 19, 20] and b.admit == 17
    # The next second: the flood goes on, the same lengths again.
    assert _offer(b, list(range(1, 21)), t + SECOND + 1, 4) == 17
    assert _kept(b) == [18, 19, 20]  # the old window's went to the buffer
    assert b.admit == 17  # not full: 3 beat the threshold
    # A window that was not full halves the threshold it passes on (to 8).
    assert _offer(b, [7, 10], t + 2 * SECOND + 2, 4) == 1
    assert _kept(b) == [10]
    # After a pause, a window starts from nothing.
    assert _offer(b, [1], t + 10 * SECOND, 4) == 0
    assert _kept(b) == [1]


def test_budgets_of_one_kind_share_the_limit(fresh: list[budget.Budget]) -> None:
    """Two primitives making holds in the same second keep the limit between
    them (each its slowest); a primitive's waits do not count against holds."""
    first, second = budget.Budget(budget.HOLDS), budget.Budget(budget.HOLDS)
    waits = budget.Budget(budget.WAITS)
    fresh += [first, second, waits]
    t = 20 * SECOND
    assert _offer(first, [5, 6, 7, 8], t, 4) == 0
    assert _offer(waits, [1, 2, 3, 4], t, 4) == 0  # its own kind's limit
    assert _offer(second, [1], t, 4) == 0
    assert budget.share(budget.HOLDS, 4) == 2
    # The first one's next offer trims it to its share, keeping the slowest.
    assert _offer(first, [9], t + 1, 4) == 3
    assert _kept(first) == [8, 9] and _kept(second) == [1] and _kept(waits) == [1, 2, 3, 4]


@locks
def test_a_flood_on_eight_locks_keeps_the_limit_between_them(
    cls: Any, spans: InMemorySpanExporter
) -> None:
    """Eight locks, ten holds each, round robin, max_spans_per_second=16:
    sixteen hold spans in all, each lock's two slowest; every other hold is
    counted suppressed."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0, max_spans_per_second=16)
    pool = [cls(name=f"flooded_{i}") for i in range(8)]
    for round_ in range(10):
        for i, lock in enumerate(pool):
            lock.acquire()
            lock._t -= (round_ * 8 + i + 1) * 1_000_000  # held that many ms
            lock.release()
    assert tracedsync.flush(10)
    for i, lock in enumerate(pool):
        got = sorted(
            round((s.end_time - s.start_time) / 1e6)
            for s in spans.get_finished_spans()
            if s.attributes["sync.name"] == f"flooded_{i}"
        )
        assert got == [8 * 8 + i + 1, 9 * 8 + i + 1]
        assert lock.statistics().spans_suppressed == 8


@locks
def test_a_wait_within_the_admission_threshold_is_suppressed_unrecorded(
    cls: Any, spans: InMemorySpanExporter
) -> None:
    """Once the wait budget's window keeps waits longer than a contended
    acquire's, that acquire is counted (a contention, its time, suppressed)
    and nothing more: no holder named, no record."""
    tracedsync.configure(exporters=[spans], wait_threshold_ms=0, max_spans_per_second=4)
    lock = cls(name="waited_on")
    st = registry.slow_stats(lock)
    with budget.locks[budget.WAITS]:
        waits = budget.budgets(st)[budget.WAITS]
        waits.window = time.monotonic_ns()
        waits.admit = 60 * SECOND  # slower waits than any here fill this window
    got: list[bool] = []
    lock.acquire()
    try:
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
        t.start()
        t.join(30)
        assert not t.is_alive()
    finally:
        lock.release()
    assert got == [False]
    assert tracedsync.flush(10)
    assert [s for s in spans.get_finished_spans() if s.name == "lock.wait"] == []
    stats = lock.statistics()
    assert (stats.contentions, stats.timeouts, stats.spans_suppressed) == (1, 1, 1)
    assert stats.wait_total > 0
