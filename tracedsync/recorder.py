"""The recorder: what happens when an acquisition is not simple.

The primitives' hot paths (``tracedsync.primitives``, and their compiled
form in ``_speedups.c``) update counters stored on the primitive and call in
here only when something is slow: a blocking wait, a hold that crossed the
threshold (or that a waiter links to), a failed try. This module measures
the wait, names the holder that caused it, and turns what crossed a
threshold into a record (``tracedsync.records``) kept by the span budget
(``tracedsync.budget``). It never imports OpenTelemetry and never raises
into the program for telemetry's sake.

What a Lock and an RLock offer the recorder, in both implementations:
``_try(blocking, timeout)`` (the underlying lock's acquire), ``_taken(t)``
(the state after the slow path acquired), ``_holders()``, and the attributes
``_t`` (when the hold began, 0 when none), ``_owner``, ``_rt`` (the last
release), ``_blame`` (a span id a waiter reserved), ``_track`` /
``_acq_at`` (acquisition sites, noted from the first contention on),
``_admit`` / ``_window`` (the hold budget), ``_st`` and ``_meta``.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from time import monotonic_ns as _now
from typing import Any

from tracedsync import (
    _settings,
    _sites,
    _threads,
    acquisition,
    budget,
    records,
    registry,
    stacks,
    waits,
)
from tracedsync.counters import SlowStats
from tracedsync.records import Finding, Hold, Holder, Wait, WaitingOn


def new_span_id() -> int:
    """A span id reserved for a hold a waiter will link to (rare: no PRNG kept)."""
    return int.from_bytes(os.urandom(8), "big") or 1


# --------------------------------------------------------------------------
# Holders: who blocks a waiter, where it took the primitive, what it does now
# --------------------------------------------------------------------------


#: How many times a waiter looks again at a primitive whose holder released
#: while the waiter was reading where it took it and what it does now.
_LOOKS = 3


def describe_holder(prim: Any, me: int) -> tuple[Holder | None, bool]:
    """The holder a waiter on ``prim`` blames, and whether a holder existed
    but released before the waiter could look (``released_before_wait``).

    For a semaphore the holder is the oldest outstanding acquisition of
    another thread, with how many permits that thread holds. Holders are
    told apart by their Thread (when known) as well as their ident: a thread
    started after one ended may run under its ident. When the waiter is the
    only holder (a self-deadlock on a Lock, a thread waiting for more
    permits than are left besides its own), it is named itself.

    A live holder's site, stack and wait are read from its thread while it
    runs: if its hold is gone once they are read, they describe what it did
    after it released, so the waiter looks again (a new holder), and says
    the holder released before it could look when it never catches one.
    """
    if getattr(prim, "_initial_value", None) == 0:
        # A semaphore made empty is a signal: a waiter waits for a release,
        # not for a holder (whoever took earlier permits consumed them).
        return None, False
    for _ in range(_LOOKS):
        try:
            entries = prim._holders()
        except Exception:
            return None, False
        if not entries:
            return None, True
        holder, entry = _describe(prim, me, entries)
        if holder.ended or _holds(prim, entry):
            return holder, False
    return None, True


def _holds(prim: Any, entry: tuple[int, int, Any, Any]) -> bool:
    """The hold ``entry`` (thread ident, since, ...) is still one of ``prim``'s."""
    try:
        return any(e[0] == entry[0] and e[1] == entry[1] for e in prim._holders())
    except Exception:
        return False


def _describe(
    prim: Any, me: int, entries: list[tuple[int, int, Any, Any]]
) -> tuple[Holder, tuple[int, int, Any, Any]]:
    """The holder ``describe_holder`` blames among ``entries``, and its entry."""
    mine = _threads.active.get(me)
    others = [e for e in entries if e[0] != me or e[3] is not mine]
    itself = not others
    entry = (others or entries)[0]
    ident, _since, site, thread = entry
    if itself:
        others = entries
    permits = sum(1 for e in others if e[0] == ident and e[3] is thread)
    ended = _threads.ended(thread, ident)
    name = _threads.name_of(thread, ident) if thread is not None else _threads.thread_name(ident)
    acquired_at = acquisition.recorded(site)
    now_site = None
    waiting_on = None
    if not ended:
        now_site = _sites.thread_site(ident)
        if acquired_at is None:
            # Its own innermost acquisition of ``prim`` is the one blocking now.
            frames = acquisition.thread_frames(ident)
            acquired_at = acquisition.inferred(prim, frames, skip_current=itself)
        blocked = None if itself else waits.of(ident)
        if blocked is not None:
            waiting_on = WaitingOn(blocked.prim._meta, blocked.since, now_site)
    return Holder(ident, name, ended, acquired_at, now_site, permits, waiting_on), entry


def caller_site(depth: int) -> tuple[Any, int] | None:
    """(code, offset) of the first frame outside tracedsync, ``depth`` frames up."""
    try:
        frame: Any = sys._getframe(depth + 1)
    except ValueError:
        return None
    while frame is not None and _sites.is_tracedsync_file(frame.f_code.co_filename):
        frame = frame.f_back
    return None if frame is None else (frame.f_code, frame.f_lasti)


# --------------------------------------------------------------------------
# Lock and RLock (both implementations)
# --------------------------------------------------------------------------


def validate_acquire_args(blocking: Any, timeout: Any) -> None:
    """Raise exactly what ``_thread.lock.acquire(blocking, timeout)`` raises.

    A fresh lock is free, so acquiring it checks the arguments and returns at
    once: the messages are the running interpreter's own.
    """
    _allocate_lock().acquire(blocking, timeout)


def acquire_slow(prim: Any, blocking: Any, timeout: Any, began: int | None = None) -> bool:
    """A Lock or RLock acquire whose non-blocking try failed (arguments
    already checked): a failed non-blocking try is counted, anything else
    blocks. ``began``: the compiled path already waited, from then, the wait
    threshold through (its first phase, see ``_block``)."""
    if not blocking or timeout == 0:
        count_would_block(prim)
        return False
    return _block(prim, timeout, began)


#: The self-deadlock detector (``tracedsync.detection`` plugs it in).
self_deadlock_hook: Any = None


def _block(prim: Any, timeout: float, began: int | None = None) -> bool:
    """Block on ``prim``'s underlying lock, measuring the wait.

    Phase 1 waits up to the wait threshold with no bookkeeping: most
    contended waits end there and cost nothing more. A wait that outlives it
    will become a span, so phase 2 first names the holder (where it took the
    lock, where it is, what it waits for), reserves the span id of the
    holder's hold (the wait span links to it), notes the wait for the
    watchdog, and from then on the primitive records its acquisition sites.
    The compiled Lock and RLock run phase 1 in C (counting the waits that
    end there themselves) and come here at ``began`` past it.

    Phase 1 lasts the wait threshold, or the wait budget's admission
    threshold while that is higher (``_phase_one_ns``): a wait no longer
    than that would be suppressed anyway, so it is counted suppressed with
    no holder named, no stack taken and no record made -- under a flood of
    contended acquires the budget cuts the work, not only the records.
    """
    t0 = _now() if began is None else began
    me = _get_ident()
    try_acquire = prim._try
    settings = _settings.current
    st = registry.slow_stats(prim)
    phase_one = _phase_one_ns(st, settings, t0)
    threshold_s = phase_one / 1e9
    prim._track = True
    got = False
    holder = None
    released_before = False
    blame = None
    stack = None
    entry = None
    try:
        if threshold_s <= 0 or began is not None:
            remaining = float(timeout)
        elif timeout < 0 or timeout > threshold_s:
            got = try_acquire(True, threshold_s)
            remaining = -1.0 if timeout < 0 else timeout - (_now() - t0) / 1e9
        else:
            got = try_acquire(True, timeout)
            remaining = 0.0
        if not got and (timeout < 0 or remaining > 0):
            internal = _threads.is_internal(me)
            if settings.recording and not internal:
                owner = prim._owner
                if owner == me and prim._meta.kind == "lock" and self_deadlock_hook is not None:
                    self_deadlock_hook(prim, t0)
                holder, released_before = describe_holder(prim, me)
                stack = stacks.capture(sys._getframe(1), settings.stack_depth)
            entry = waits.begin(prim, t0, idle=False)
            if released_before:
                got, holder, released_before, remaining = _await_owner(prim, me, remaining)
            if holder is not None:
                if prim._blame is None:
                    prim._blame = new_span_id()
                blame = prim._blame
            if not got:
                got = try_acquire(True, remaining)
    finally:
        if entry is not None:
            waits.end()
    t1 = _now()
    handoff = None
    if got:
        prim._acq_at = caller_site(1)  # before the owner: a waiter reads both as one
        prim._taken(t1)
        released = prim._rt
        if released:
            # Released before the wait began (after the failed try): all of
            # the wait was hand-off.
            handoff = t1 - max(released, t0)
        if blame is not None and prim._blame == blame:
            # The holder released before it saw the reservation: no hold
            # span will carry this id.
            prim._blame = None
            blame = None
    wait = t1 - t0
    candidate = _recorded(wait, me, settings)
    with registry.stats_lock:
        st.contentions += 1
        if not got:
            st.timeouts += 1
        _count_wait(st, wait)
        if candidate and entry is None and began is None and settings.wait_ns < phase_one:
            if wait <= phase_one:
                # Ended within the budget's admission threshold (phase 1).
                st.suppressed += 1
                candidate = False
            elif got:
                # Acquired in phase 1 but measured longer (it waited for the
                # GIL after the lock): recorded; its holder had released
                # before the waiter would have looked.
                released_before = True
    if candidate:
        _wait_over(
            prim,
            st,
            me,
            t0,
            t1,
            "acquired" if got else "timeout",
            stack,
            holder,
            released_before,
            blame,
            handoff,
            entry is not None and entry.reported,
        )
    return got


def _phase_one_ns(st: SlowStats, settings: _settings.Settings, t0: int) -> int:
    """How long ``_block`` waits before naming a holder: the wait threshold,
    or the admission threshold of the primitive's wait budget while its
    window is current and that is higher (read without the lock: a stale
    value only moves the line between a cheap wait and a recorded one)."""
    threshold = settings.wait_ns
    pair = st.budgets
    if pair is not None and settings.budgeted and settings.recording:
        waits_budget = pair[budget.WAITS]
        if waits_budget.admit > threshold and t0 - waits_budget.window < budget.WINDOW_NS:
            return int(waits_budget.admit)
    return threshold


#: How long a waiter looks for a lock's owner in a hand-over (seconds, in
#: all): see ``_await_owner``.
_HANDOVER_S = 1.0
#: The first and the longest of its doubling slices (seconds).
_HANDOVER_SLICE_S = (0.0005, 0.05)


def _await_owner(prim: Any, me: int, remaining: float) -> tuple[bool, Holder | None, bool, float]:
    """A lock whose try failed has no owner recorded: either its holder
    released it between the try and the look (then it is free in a moment),
    or it is being handed over -- the thread that took it has not yet run the
    line that records it (it needs the GIL, which this waiter held; with
    several waiters this is the common case). Block in short doubling
    slices until the lock is taken (nobody to name: released before the
    wait), ``remaining`` (-1: no timeout) is spent, ``_HANDOVER_S`` has
    passed, or an owner is recorded -- then name it (one look: under heavy
    contention each look costs GIL switches, and the owner may change
    again). Returns (got, holder, released_before_wait, remaining)."""
    first, longest = _HANDOVER_SLICE_S
    slice_s = first
    spent = 0.0
    while spent < _HANDOVER_S and remaining != 0:
        step = slice_s if remaining < 0 else min(slice_s, remaining)
        t = _now()
        got = prim._try(True, step)
        took = (_now() - t) / 1e9
        spent += took
        if remaining > 0:
            remaining = max(0.0, remaining - took)
        if got:
            return True, None, True, remaining
        if prim._owner:
            holder, released_before = describe_holder(prim, me)
            return False, holder, released_before, remaining
        slice_s = min(slice_s * 2, longest)
    # Still taken, by a thread that did not record itself in all that time:
    # unknown, not released.
    return False, None, False, remaining


def reacquire(prim: Any) -> None:
    """``Condition.wait`` takes its lock back and must block: the thread, which
    the wait for a notification made an idle waiter, now waits for a lock,
    and the watchdog and other waiters see it so (a notified thread blocked
    by the notifier is a deadlock). Not an acquisition: nothing is counted."""
    me = _get_ident()
    waiting = waits.of(me)
    waits.begin(prim, _now(), idle=False)
    try:
        prim._try()
    finally:
        waits.restore(waiting)


def hold_end(prim: Any, t0: int, end: int, blame: int | None, depth: int) -> None:
    """A hold crossed the threshold (and the budget's admission threshold)
    or a waiter reserved its span id (``blame``): record it. Called by the
    releasing thread right after the release (``depth``: an RLock's deepest
    recursion during the hold); never raises."""
    try:
        settings = _settings.current
        if not settings.recording:
            return
        me = _get_ident()
        if _threads.is_internal(me):
            return
        record = Hold(
            prim._meta,
            me,
            _threads.thread_name(me),
            t0,
            end,
            records.current_context(),
            stacks.capture(sys._getframe(1), settings.stack_depth),
            depth,
            blame,
        )
        if blame is not None or not settings.budgeted:
            records.emit(record)
            return
        st = registry.slow_stats(prim)
        with budget.locks[budget.HOLDS]:
            held = budget.budgets(st)[budget.HOLDS]
            suppressed = budget.offer(held, end - t0, end, record, settings.spans_per_second)
            prim._admit = held.admit
            prim._window = held.window
        if suppressed:
            with registry.stats_lock:
                st.suppressed += suppressed
    except Exception:
        pass


def _count_wait(st: SlowStats, wait: int) -> None:
    st.wait_sum += wait
    if wait > st.wait_max:
        st.wait_max = wait
    st.wait_hist[wait.bit_length()] += 1


def _recorded(wait: int, me: int, settings: _settings.Settings) -> bool:
    """A wait of ``wait`` ns by thread ``me`` becomes a record: past the wait
    threshold, while recording, on a thread not tracedsync's own."""
    return wait >= settings.wait_ns and settings.recording and not _threads.is_internal(me)


def _wait_over(
    prim: Any,
    st: SlowStats,
    me: int,
    t0: int,
    t1: int,
    outcome: str,
    stack: Any,
    holder: Holder | None,
    released_before: bool,
    blame: int | None,
    handoff: int | None,
    reported: bool,
) -> None:
    """A counted wait of thread ``me`` that ``_recorded`` keeps becomes a
    record (its stack is the waiting caller's unless one was taken when it
    began to block)."""
    settings = _settings.current
    if stack is None:
        stack = stacks.capture(sys._getframe(2), settings.stack_depth)
    record = Wait(
        prim._meta,
        me,
        _threads.thread_name(me),
        t0,
        t1,
        outcome,
        records.current_context(),
        stack,
        holder,
        released_before,
        blame,
        handoff,
    )
    _keep_wait(prim, st, record, reported)


def _keep_wait(prim: Any, st: SlowStats, record: Wait, always: bool) -> None:
    """Hand a wait record to the budget (or straight to the buffer when a
    finding named the wait, or there is no budget)."""
    settings = _settings.current
    if always or not settings.budgeted:
        records.emit(record)
        return
    with budget.locks[budget.WAITS]:
        kept = budget.budgets(st)[budget.WAITS]
        suppressed = budget.offer(
            kept, record.end - record.start, record.end, record, settings.spans_per_second
        )
    if suppressed:
        with registry.stats_lock:
            st.suppressed += suppressed


# --------------------------------------------------------------------------
# Semaphores (their blocking loop is theirs; the recorder measures it)
# --------------------------------------------------------------------------


def lock_wait_begin(prim: Any, t0: int) -> tuple[waits.Blocked, Holder | None, bool, Any]:
    """A semaphore acquire starts to block: note it, name its holder. A
    semaphore made empty is a signal: waiting on it is waiting for work (an
    idle wait, stuck only past ``idle_stuck_after_ms``)."""
    me = _get_ident()
    prim._track = True
    holder = None
    released_before = False
    stack = None
    if _settings.current.recording and not _threads.is_internal(me):
        holder, released_before = describe_holder(prim, me)
        stack = stacks.capture(sys._getframe(1), _settings.current.stack_depth)
    signal = prim._initial_value == 0
    return waits.begin(prim, t0, idle=signal), holder, released_before, stack


def lock_wait_end(
    prim: Any,
    t0: int,
    t1: int,
    acquired: bool,
    began: tuple[waits.Blocked, Holder | None, bool, Any] | None,
) -> None:
    """A semaphore acquire that blocked is over at ``t1`` (acquired: the
    hold's start, the same clock reading; or timed out). ``began`` is None
    for a wait that ended within its first phase (the wait threshold), which
    ``lock_wait_begin`` never saw."""
    entry, holder, released_before, stack = began or (None, None, False, None)
    st = registry.slow_stats(prim)
    wait = t1 - t0
    me = _get_ident()
    with registry.stats_lock:
        st.contentions += 1
        if not acquired:
            st.timeouts += 1
        _count_wait(st, wait)
    if not _recorded(wait, me, _settings.current):
        return
    _wait_over(
        prim,
        st,
        me,
        t0,
        t1,
        "acquired" if acquired else "timeout",
        stack,
        holder,
        released_before,
        None,
        None,
        entry is not None and entry.reported,
    )


def count_would_block(prim: Any) -> None:
    """A failed non-blocking try: counted, never a span."""
    st = registry.slow_stats(prim)
    with registry.stats_lock:
        st.would_block += 1


# --------------------------------------------------------------------------
# Idle waits: Event, Condition, Barrier
# --------------------------------------------------------------------------


def idle_wait_end(
    prim: Any,
    t0: int,
    t1: int,
    outcome: str,
    blocked: bool,
    timed_out: bool,
    entry: waits.Blocked | None,
) -> None:
    """Account one ``wait()`` of an Event, Condition or Barrier (a
    Condition's notify round trip pays this: the common case, a short wait,
    is the counting alone)."""
    st = prim._st
    if st is None:
        st = registry.slow_stats(prim)
    wait = t1 - t0
    with registry.stats_lock:
        st.waits += 1
        if blocked:
            st.contentions += 1
        if timed_out:
            st.timeouts += 1
        _count_wait(st, wait)
    if not blocked:
        return
    me = _get_ident()
    if _recorded(wait, me, _settings.current):
        _wait_over(
            prim,
            st,
            me,
            t0,
            t1,
            outcome,
            None,
            None,
            False,
            None,
            None,
            entry is not None and entry.reported,
        )


# --------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------


def finding(
    event: str,
    fields: dict[str, Any],
    span: tuple[str, dict[str, Any], list[Any], int] | None = None,
) -> None:
    """Report a detection finding (deadlock, stuck wait, ...): exported at once.

    ``span`` optionally asks for a span too: (name, attributes, OTel contexts
    to link, start in monotonic ns); it ends now.
    """
    if not _settings.current.recording:
        return
    records.emit(Finding(event, fields, records.current_context(), span, _now()), urgent=True)
