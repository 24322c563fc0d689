"""The span budget: per second, the slowest are kept.

``max_spans_per_second`` (K) bounds the spans of one kind (waits, holds)
the process makes per second. Each primitive keeps up to K of its own; when
several make spans in the same second they share K (each keeps at least
one, its slowest): eight hot locks make K spans a second between them, not
8 K, so what the pipeline thread has to build -- with the GIL the app
threads need -- stays bounded however many primitives flood.

Within a primitive's one-second window the records that crossed the
threshold wait in a heap of at most its share; once it is full a new record
gets in only by being slower than the fastest one held, which it evicts.
The fastest duration held is the window's *admission threshold*: the
primitive keeps it (``_admit``, with the window's start in ``_window``) so
that its hot path -- compiled or pure -- compares a hold with it exactly
like the static hold threshold, and a flood of short holds is cut before
any Python runs. A window that follows a full one at once starts from that
one's threshold (half of it after a window that was not full), not from
zero: a flood that lasts pays for filling the heap once, not every second.
When the window ends (a later record, the pipeline's cycle, a flush) the
kept records go to the buffer: spans leave up to a second late, and what is
kept is the slowest of each second, never merely the first.

Records that must not be lost never enter a budget: a hold whose span id a
waiter reserved (the wait links to it), a wait that a finding named.

Each kind has its own lock (``locks``), not ``registry.stats_lock``: a
waiter offers its wait right after it acquired the primitive, and it must
not queue there behind the many threads that end holds during a flood (a
thread preempted inside the hold budget then stalled every waiter holding
a lock, and the waiters behind them: a convoy). The callers take the lock
of the kind they offer; ``close_expired``, ``close_all`` and
``at_fork_child`` take both themselves.
"""

from __future__ import annotations

import heapq
from _thread import RLock as _RawRLock
from typing import Any

from tracedsync import records

WINDOW_NS = 1_000_000_000

#: Budget kinds (an index into a primitive's pair of budgets).
WAITS = 0
HOLDS = 1


class Budget:
    """One primitive's window for one kind of record (waits or holds)."""

    __slots__ = ("admit", "full", "heap", "kind", "seq", "window")

    def __init__(self, kind: int) -> None:
        #: WAITS or HOLDS: budgets of one kind share the limit.
        self.kind = kind
        #: Start of the current window (monotonic ns of its first record).
        self.window = 0
        #: (duration, sequence, record): the kept records, fastest first.
        self.heap: list[tuple[int, int, records.Record]] = []
        #: The duration a record must beat (0: any).
        self.admit = 0
        #: The heap was full at some point of this window.
        self.full = False
        self.seq = 0


#: Per kind: guards its budgets and ``_open``.
locks = (_RawRLock(), _RawRLock())
#: Guards making a primitive's pair of budgets.
_making = _RawRLock()
#: Per kind: id(budget) -> budget, for every budget holding records (the
#: limit's sharers).
_open: tuple[dict[int, Budget], dict[int, Budget]] = ({}, {})


def budgets(st: Any) -> list[Budget]:
    """A primitive's (wait, hold) budgets from its SlowStats, made on first use."""
    pair: list[Budget] | None = st.budgets
    if pair is None:
        with _making:  # a waiter and a holder (two kinds' locks) may both get here
            pair = st.budgets
            if pair is None:
                pair = st.budgets = [Budget(WAITS), Budget(HOLDS)]
    return pair


def share(kind: int, limit: int) -> int:
    """How many records one budget of ``kind`` may keep now."""
    return max(1, limit // max(1, len(_open[kind])))


def offer(budget: Budget, duration: int, end: int, record: records.Record, limit: int) -> int:
    """Keep ``record`` if it is among the slowest of its window (its share
    of ``limit``, see :func:`share`).

    Returns how many records this suppressed: the record itself, or those
    it evicted (one, or more when more budgets came to share the limit). A
    record past the window's end starts a new window first (the old one's
    records go to the buffer).
    """
    records.first_record()
    if end - budget.window >= WINDOW_NS:
        _roll(budget, end)
    if budget.admit and duration <= budget.admit:
        return 1
    heap = budget.heap
    if not heap:
        _open[budget.kind][id(budget)] = budget
    budget.seq += 1
    heapq.heappush(heap, (duration, budget.seq, record))
    keep = share(budget.kind, limit)
    suppressed = 0
    while len(heap) > keep:
        heapq.heappop(heap)
        suppressed += 1
    if len(heap) >= keep:
        budget.full = True
        budget.admit = heap[0][0]
    return suppressed


def _roll(budget: Budget, end: int) -> None:
    """Start ``budget``'s next window at ``end``: the threshold of a full
    window that ended less than a window ago carries over (halved after a
    window that was not full); after a pause the new window starts from 0."""
    follows = end - budget.window < 2 * WINDOW_NS
    _close(budget)
    if not follows:
        budget.admit = 0
    elif not budget.full:
        budget.admit //= 2
    budget.full = False
    budget.window = end


def _close(budget: Budget) -> None:
    """Send the window's kept records to the buffer (its threshold stays
    until the next window starts)."""
    heap = budget.heap
    if heap:
        kept = [entry[2] for entry in sorted(heap, key=lambda e: e[1])]
        heap.clear()
        _open[budget.kind].pop(id(budget), None)
        for record in kept:
            records.emit(record)


def close_expired(now: int) -> None:
    """Send the records of every window that ended before ``now`` (the
    pipeline's cycle; a quiet primitive's last records must not wait)."""
    for kind in (WAITS, HOLDS):
        with locks[kind]:
            for budget in list(_open[kind].values()):
                if now - budget.window >= WINDOW_NS:
                    _close(budget)


def close_all() -> None:
    """Send every kept record now (flush, exit)."""
    for kind in (WAITS, HOLDS):
        with locks[kind]:
            for budget in list(_open[kind].values()):
                _close(budget)


def at_fork_child() -> None:
    """The kept records are the parent's; the locks are new (a parent
    thread may have held them)."""
    global locks, _making
    locks = (_RawRLock(), _RawRLock())
    _making = _RawRLock()
    for kind in (WAITS, HOLDS):
        for budget in _open[kind].values():
            budget.heap.clear()
            budget.admit = 0
            budget.full = False
        _open[kind].clear()
