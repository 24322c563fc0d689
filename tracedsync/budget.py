"""The span budget: per primitive and per second, the slowest are kept.

``max_spans_per_second`` (K) bounds the spans one primitive makes per
second, separately for its waits and its holds. Within a one-second window
the records that crossed the threshold wait in a heap of at most K; once it
is full a new record gets in only by being slower than the fastest one held,
which it evicts. The fastest duration held is the window's *admission
threshold*: the primitive keeps it (``_admit``, with the window's start in
``_window``) so that its hot path -- compiled or pure -- compares a hold with
it exactly like the static hold threshold, and a flood of short holds is cut
before any Python runs. When the window ends (a later record, the pipeline's
cycle, a flush) the kept records go to the buffer: spans leave up to a
second late, and what is kept is the slowest of each second, never merely
the first.

Records that must not be lost never enter a budget: a hold whose span id a
waiter reserved (the wait links to it), a wait that a finding named.

Everything here runs under ``registry.stats_lock``.
"""

from __future__ import annotations

import heapq
from typing import Any

from tracedsync import records

WINDOW_NS = 1_000_000_000


class Budget:
    """One primitive's window for one kind of record (waits or holds)."""

    __slots__ = ("admit", "heap", "seq", "window")

    def __init__(self) -> None:
        #: Start of the current window (monotonic ns of its first record).
        self.window = 0
        #: (duration, sequence, record): the kept records, fastest first.
        self.heap: list[tuple[int, int, records.Record]] = []
        #: While the heap is full, the duration a record must beat.
        self.admit = 0
        self.seq = 0


#: id(budget) -> budget, for every budget holding records.
_open: dict[int, Budget] = {}


def budgets(st: Any) -> list[Budget]:
    """A primitive's (wait, hold) budgets from its SlowStats, made on first use."""
    pair: list[Budget] | None = st.budgets
    if pair is None:
        pair = st.budgets = [Budget(), Budget()]
    return pair


def offer(budget: Budget, duration: int, end: int, record: records.Record, limit: int) -> int:
    """Keep ``record`` if it is among the ``limit`` slowest of its window.

    Returns how many records this suppressed (0 or 1: the record itself, or
    the one it evicted). A record past the window's end closes the window
    first (its records go to the buffer).
    """
    records.first_record()
    if end - budget.window >= WINDOW_NS:
        _close(budget)
        budget.window = end
    heap = budget.heap
    budget.seq += 1
    if len(heap) < limit:
        heapq.heappush(heap, (duration, budget.seq, record))
        if len(heap) == 1:
            _open[id(budget)] = budget
        if len(heap) == limit:
            budget.admit = heap[0][0]
        return 0
    if duration <= heap[0][0]:
        return 1
    heapq.heapreplace(heap, (duration, budget.seq, record))
    budget.admit = heap[0][0]
    return 1


def admits(budget: Budget, duration: int, end: int) -> bool:
    """Would ``offer`` keep a record of this duration? (No change.)"""
    return end - budget.window >= WINDOW_NS or duration > budget.admit


def _close(budget: Budget) -> None:
    heap = budget.heap
    if heap:
        kept = [entry[2] for entry in sorted(heap, key=lambda e: e[1])]
        heap.clear()
        _open.pop(id(budget), None)
        for record in kept:
            records.emit(record)
    budget.admit = 0


def close_expired(now: int) -> None:
    """Send the records of every window that ended before ``now`` (the
    pipeline's cycle; a quiet primitive's last records must not wait)."""
    for budget in list(_open.values()):
        if now - budget.window >= WINDOW_NS:
            _close(budget)


def close_all() -> None:
    """Send every kept record now (flush, exit)."""
    for budget in list(_open.values()):
        _close(budget)


def at_fork_child() -> None:
    """The kept records are the parent's."""
    for budget in list(_open.values()):
        budget.heap.clear()
        budget.admit = 0
    _open.clear()
