"""The recorder: per-primitive statistics, thresholds and the record buffer.

The primitives' hot paths (``tracedsync.primitives``) update counters stored
on the primitive itself and call into this module only when something is
slow: a blocking wait, a hold above the threshold, a failed try. This module
turns those into small tuples appended to one bounded buffer, which the
pipeline thread (``tracedsync.pipeline``) drains. It never imports
OpenTelemetry; the pipeline plugs in how to read the current context.

Counting rule: every record handed to :func:`emit` is *produced*; it is then
either *dropped* here (buffer full) or, later, *exported* or *failed* by the
pipeline. ``produced == exported + dropped + failed`` at every flush.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import weakref
from _thread import RLock as _RawRLock
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from collections.abc import Callable
from dataclasses import dataclass
from sys import _getframe
from typing import Any

from tracedsync import _sites

_now = time.monotonic_ns

# --------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------

#: Primitives count durations in raw buckets indexed by ``ns.bit_length()``
#: (one comparison-free instruction on the hot path). Exported histograms fold
#: them into these upper-inclusive bounds: 1.02 µs, 2.05 µs, ... 1100 s.
RAW_BUCKETS = 65
HISTOGRAM_BOUNDS_NS: tuple[int, ...] = tuple((1 << (k + 10)) - 1 for k in range(31))
HISTOGRAM_BOUNDS: tuple[float, ...] = tuple(b / 1e9 for b in HISTOGRAM_BOUNDS_NS)


def fold_histogram(raw: list[int]) -> tuple[int, ...]:
    """Fold a raw ``bit_length`` histogram into ``HISTOGRAM_BOUNDS`` buckets."""
    out = [sum(raw[0:11])]
    out.extend(raw[11:41])
    out.append(sum(raw[41:]))
    return tuple(out)


# --------------------------------------------------------------------------
# Configuration the hot and slow paths read (set by tracedsync.config)
# --------------------------------------------------------------------------

NEVER = 1 << 62

wait_threshold_ns = 1_000_000
hold_threshold_ns = 10_000_000
max_spans_per_second = 1000
buffer_capacity = 65536
enabled = True
# Derived from the above by apply(), for hold_end's hot checks: whether spans
# are rate-limited, and the buffer lengths below which an append needs neither
# the full check (emit) nor a wake-up (at half capacity).
_spans_limited = True
_room = buffer_capacity - 1
_wake_at = (buffer_capacity >> 1) - 1
#: True while a pipeline consumes the buffer; otherwise only stats are kept.
recording = False

_current_context: Callable[[], Any] = lambda: None  # noqa: E731
_wakeup: Callable[[], None] = lambda: None  # noqa: E731
#: Called with the primitive module's globals-setter when thresholds change.
_threshold_listeners: list[Callable[[int], None]] = []


def set_hold_threshold_listener(fn: Callable[[int], None]) -> None:
    _threshold_listeners.append(fn)
    fn(hold_threshold_ns if recording else NEVER)


def apply(
    *,
    wait_ns: int,
    hold_ns: int,
    spans_per_second: int,
    capacity: int,
    is_enabled: bool,
) -> None:
    """Install thresholds and limits (called by ``tracedsync.config``)."""
    global wait_threshold_ns, hold_threshold_ns, max_spans_per_second, buffer_capacity, enabled
    global _spans_limited, _room, _wake_at
    wait_threshold_ns = wait_ns
    hold_threshold_ns = hold_ns
    max_spans_per_second = spans_per_second
    buffer_capacity = capacity
    enabled = is_enabled
    _spans_limited = spans_per_second < NEVER
    _room = capacity - 1
    _wake_at = (capacity >> 1) - 1
    _publish_hold_threshold()


def set_recording(
    on: bool,
    context_getter: Callable[[], Any] | None = None,
    wakeup: Callable[[], None] | None = None,
) -> None:
    """Start or stop producing records (called by the pipeline)."""
    global recording, _current_context, _wakeup
    if context_getter is not None:
        _current_context = context_getter
    if wakeup is not None:
        _wakeup = wakeup
    recording = on
    _publish_hold_threshold()


def _publish_hold_threshold() -> None:
    value = hold_threshold_ns if recording else NEVER
    for fn in _threshold_listeners:
        fn(value)


# --------------------------------------------------------------------------
# Internal threads
# --------------------------------------------------------------------------

_internal: set[int] = set()


def mark_internal(ident: int | None = None) -> None:
    """Mark a thread as tracedsync's own: nothing it does is recorded."""
    _internal.add(_get_ident() if ident is None else ident)


def unmark_internal(ident: int | None = None) -> None:
    _internal.discard(_get_ident() if ident is None else ident)


def is_internal_thread() -> bool:
    return _get_ident() in _internal


# --------------------------------------------------------------------------
# Which creations are traced
# --------------------------------------------------------------------------

DEFAULT_EXCLUDE = (
    "threading",
    "opentelemetry",
    "grpc",
    "google.protobuf",
    "urllib3",
    "requests",
    "structlog",
    "logging",
    "tracedsync",
)
_exclude: tuple[str, ...] = DEFAULT_EXCLUDE
_include: tuple[str, ...] = ()
_excluded_cache: dict[str, bool] = {}


def set_exclusions(exclude: tuple[str, ...], include: tuple[str, ...] = ()) -> None:
    global _exclude, _include
    _exclude = tuple(dict.fromkeys(DEFAULT_EXCLUDE + tuple(exclude)))
    _include = tuple(include)
    _excluded_cache.clear()


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_excluded(module: str) -> bool:
    try:
        return _excluded_cache[module]
    except KeyError:
        pass
    result = _matches(module, _exclude) and not _matches(module, _include)
    _excluded_cache[module] = result
    return result


def untraced_creation(depth: int) -> bool:
    """True when a primitive created ``depth`` frames up must be the stdlib's.

    The module of the creating frame decides (``threading`` creating a
    ``Thread``'s internal ``Event``, OpenTelemetry's SDK creating its locks),
    as does being on an internal thread or tracedsync being disabled.
    """
    if not enabled or _get_ident() in _internal:
        return True
    frame = _sites.creation_frame(depth + 1)
    if frame is None:
        return False
    module = frame.f_globals.get("__name__") or ""
    if module == "threading" and _threading_traced_creator(frame):
        return False
    return module_excluded(module)


def _threading_traced_creator(frame: Any) -> bool:
    """``threading.Timer`` waits on an Event users care about: trace it."""
    owner = frame.f_locals.get("self")
    return isinstance(owner, threading.Timer)


# --------------------------------------------------------------------------
# Registry and statistics
# --------------------------------------------------------------------------

LOCK_KINDS = frozenset({"lock", "rlock", "semaphore", "bounded_semaphore"})
KINDS = ("lock", "rlock", "condition", "semaphore", "bounded_semaphore", "event", "barrier")


class SlowStats:
    """Counters only the slow paths touch (under ``_stats_lock``)."""

    __slots__ = (
        "acq_seen",
        "contentions",
        "rl_count",
        "rl_start",
        "suppressed",
        "timeouts",
        "wait_hist",
        "wait_max",
        "wait_sum",
        "waits",
        "would_block",
    )

    def __init__(self) -> None:
        self.contentions = 0
        self.timeouts = 0
        self.would_block = 0
        self.waits = 0
        self.wait_sum = 0
        self.wait_max = 0
        self.wait_hist = [0] * RAW_BUCKETS
        self.rl_start = 0
        self.rl_count = 0
        self.suppressed = 0
        #: The highest acquisition count ``read_counters`` has reported for a
        #: Lock or RLock (see ``_lock_acquisitions``).
        self.acq_seen = 0


@dataclass(frozen=True)
class PrimitiveStats:
    """What one primitive (or all collected ones of a name and kind) measured.

    Durations are in seconds. ``wait_histogram`` and ``hold_histogram`` count
    samples in the buckets bounded by ``tracedsync.HISTOGRAM_BOUNDS`` (upper
    bounds, inclusive; the last bucket is unbounded). For lock-like kinds the
    wait histogram has one sample per acquisition (0 when uncontended) and
    one per timed-out wait; for ``event``, ``condition`` and ``barrier`` one
    per ``wait()`` call.
    """

    name: str
    kind: str
    #: Process-unique id; None for the folded entry of collected primitives.
    id: int | None
    #: How many primitives this entry covers (1 for a live primitive).
    instances: int
    acquisitions: int
    reentries: int
    contentions: int
    timeouts: int
    would_block: int
    waits: int
    wait_total: float
    wait_max: float
    hold_total: float
    hold_max: float
    wait_histogram: tuple[int, ...]
    hold_histogram: tuple[int, ...]
    spans_suppressed: int

    @property
    def contention_rate(self) -> float:
        """Share of acquisitions that had to block (0.0 when none)."""
        return self.contentions / self.acquisitions if self.acquisitions else 0.0


class _Counters:
    """Raw integer counters of one primitive, or the sum of several."""

    __slots__ = (
        "acquisitions",
        "contentions",
        "hold_hist",
        "hold_max",
        "hold_sum",
        "instances",
        "reentries",
        "suppressed",
        "timeouts",
        "wait_hist",
        "wait_max",
        "wait_sum",
        "waits",
        "would_block",
    )

    def __init__(self) -> None:
        self.instances = 0
        self.acquisitions = 0
        self.reentries = 0
        self.contentions = 0
        self.timeouts = 0
        self.would_block = 0
        self.waits = 0
        self.wait_sum = 0
        self.wait_max = 0
        self.hold_sum = 0
        self.hold_max = 0
        self.suppressed = 0
        self.wait_hist = [0] * RAW_BUCKETS
        self.hold_hist = [0] * RAW_BUCKETS

    def add(self, other: _Counters) -> None:
        self.instances += other.instances
        self.acquisitions += other.acquisitions
        self.reentries += other.reentries
        self.contentions += other.contentions
        self.timeouts += other.timeouts
        self.would_block += other.would_block
        self.waits += other.waits
        self.wait_sum += other.wait_sum
        self.wait_max = max(self.wait_max, other.wait_max)
        self.hold_sum += other.hold_sum
        self.hold_max = max(self.hold_max, other.hold_max)
        self.suppressed += other.suppressed
        for i, v in enumerate(other.wait_hist):
            self.wait_hist[i] += v
        for i, v in enumerate(other.hold_hist):
            self.hold_hist[i] += v

    def to_stats(self, name: str, kind: str, ident: int | None) -> PrimitiveStats:
        return PrimitiveStats(
            name=name,
            kind=kind,
            id=ident,
            instances=self.instances,
            acquisitions=self.acquisitions,
            reentries=self.reentries,
            contentions=self.contentions,
            timeouts=self.timeouts,
            would_block=self.would_block,
            waits=self.waits,
            wait_total=self.wait_sum / 1e9,
            wait_max=self.wait_max / 1e9,
            hold_total=self.hold_sum / 1e9,
            hold_max=self.hold_max / 1e9,
            wait_histogram=fold_histogram(self.wait_hist),
            hold_histogram=fold_histogram(self.hold_hist),
            spans_suppressed=self.suppressed,
        )


def read_counters(prim: Any, live: bool = True) -> _Counters:
    """Copy a primitive's counters (hot fields on it, slow ones in ``_st``).

    ``live`` is False from ``collected``: nobody can touch the primitive any
    more, so its figures are final and need no lock.
    """
    c = _Counters()
    st: SlowStats = prim._st
    kind = prim._meta[2]
    c.instances = 1
    hold_hist = getattr(prim, "_hhist", None)
    if hold_hist is not None:
        c.hold_hist = list(hold_hist)
    if kind in _HOLD_COUNTED_KINDS:
        c.acquisitions = _lock_acquisitions(prim, st, c.hold_hist, live)
    else:
        c.acquisitions = getattr(prim, "_acq", 0)
    c.reentries = getattr(prim, "_reent", 0)
    c.contentions = st.contentions
    c.timeouts = st.timeouts
    c.would_block = st.would_block
    c.waits = st.waits
    c.wait_sum = st.wait_sum
    c.wait_max = st.wait_max
    c.suppressed = st.suppressed
    c.wait_hist = list(st.wait_hist)
    if kind in LOCK_KINDS:
        # Uncontended acquisitions never reach the slow path: they waited 0 ns.
        c.wait_hist[0] += max(0, c.acquisitions - c.contentions)
    c.hold_sum = getattr(prim, "_hsum", 0)
    c.hold_max = getattr(prim, "_hmax", 0)
    return c


#: Kinds whose acquisitions are counted by their hold histogram.
_HOLD_COUNTED_KINDS = frozenset({"lock", "rlock"})


def _lock_acquisitions(prim: Any, st: SlowStats, hold_hist: list[int], live: bool) -> int:
    """A Lock's or RLock's acquisitions: its finished holds (the hold
    histogram counts each once) plus the one under way (``_owner`` set).

    The hot path keeps no acquisition counter of its own: that was one more
    integer allocated per acquire (about 30 ns of the pure ``with``). A
    release clears ``_owner`` before it counts the hold in the histogram, so
    reading the histogram copy first and ``_owner`` second can only come out
    short, by the hold that ended in between or one suspended in
    ``Condition.wait`` (``_release_save`` clears ``_owner``), never over;
    ``st.acq_seen`` keeps the figure reported for a live primitive from going
    back when that happens.
    """
    n = sum(hold_hist) + (1 if prim._owner else 0)
    if not live:
        return n
    with _stats_lock:
        if n > st.acq_seen:
            st.acq_seen = n
        else:
            n = st.acq_seen
    return n


_next_id = 0
_id_lock = _allocate_lock()
#: id -> weak reference to every live traced primitive.
_live: dict[int, Any] = {}
#: (id, name, kind, counters) of collected primitives, appended from __del__.
_graveyard: collections.deque[tuple[int, str, str, _Counters]] = collections.deque()
#: (name, kind) -> folded counters of collected primitives.
_folded: dict[tuple[str, str], _Counters] = {}
_fold_lock = _RawRLock()
_stats_lock = _RawRLock()


def new_id() -> int:
    global _next_id
    with _id_lock:
        _next_id += 1
        return _next_id


def register(prim: Any, kind: str, name: str | None, depth: int) -> tuple[int, str, str]:
    """Give a new primitive its (id, name, kind) and make its stats visible."""
    if name is None:
        name = _sites.primitive_name(_sites.creation_frame(depth + 1))
    elif not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    ident = new_id()
    _live[ident] = weakref.ref(prim)
    if len(_graveyard) > 1024:
        # Programs that make many short-lived primitives and never ask for
        # stats must not grow the registry: fold the collected ones now.
        _drain_graveyard()
    return (ident, name, kind)


def collected(prim: Any) -> None:
    """Called from a primitive's ``__del__``: keep its counters, lock-free."""
    try:
        meta = prim._meta
        _graveyard.append((meta[0], meta[1], meta[2], read_counters(prim, live=False)))
    except Exception:
        pass


def _drain_graveyard() -> None:
    with _fold_lock:
        while _graveyard:
            ident, name, kind, counters = _graveyard.popleft()
            _live.pop(ident, None)
            folded = _folded.get((name, kind))
            if folded is None:
                folded = _folded[(name, kind)] = _Counters()
            folded.add(counters)


def live_primitives() -> list[Any]:
    """Every traced primitive still alive."""
    _drain_graveyard()
    out = []
    for ref in list(_live.values()):
        prim = ref()
        if prim is not None:
            out.append(prim)
    return out


def stats() -> list[PrimitiveStats]:
    """Stats of every traced primitive: live ones one by one, collected ones
    folded by (name, kind). Sorted by kind, name and id."""
    out = [read_counters(p).to_stats(p._meta[1], p._meta[2], p._meta[0]) for p in live_primitives()]
    with _fold_lock:
        out.extend(c.to_stats(name, kind, None) for (name, kind), c in _folded.items())
    out.sort(key=lambda s: (s.kind, s.name, s.id if s.id is not None else 1 << 62))
    return out


def aggregated_counters() -> dict[tuple[str, str], _Counters]:
    """(kind, name) -> counters summed over live and collected primitives.

    This is what metrics report: cumulative and continuous when a primitive
    is collected (its counters move from the live set to the folded set).
    """
    agg: dict[tuple[str, str], _Counters] = {}
    for prim in live_primitives():
        key = (prim._meta[2], prim._meta[1])
        c = agg.get(key)
        if c is None:
            c = agg[key] = _Counters()
        c.add(read_counters(prim))
    with _fold_lock:
        for (name, kind), folded in _folded.items():
            c = agg.get((kind, name))
            if c is None:
                c = agg[(kind, name)] = _Counters()
            c.add(folded)
    return agg


def reset_stats() -> None:
    """Forget collected primitives' stats (for tests); live ones keep theirs."""
    _drain_graveyard()
    with _fold_lock:
        _folded.clear()


# --------------------------------------------------------------------------
# The record buffer
# --------------------------------------------------------------------------

# Record layout: a tuple whose first item is the record type.
#   WAIT:    (WAIT, meta, ident, thread_name, t_start, t_end, outcome, context,
#             site, holder_ident, holder_name, holder_site, blame_span_id)
#   HOLD:    (HOLD, meta, ident, thread_name, t_start, t_end, None, context,
#             site, rlock_depth_or_0, None, None, span_id_or_None)
#   FINDING: (FINDING, event_name, fields_dict, context, span_request, t_now)
WAIT = 1
HOLD = 2
FINDING = 3

buffer: collections.deque[tuple[Any, ...]] = collections.deque()
_buffer_lock = _RawRLock()


class Accounting:
    """Record counts; ``produced == exported + dropped + failed`` once flushed.

    Nothing is counted when a record is appended (that is the app thread's
    cost): a record produced is in the buffer, or was taken by the pipeline
    (which counts what it takes), or was dropped.
    """

    def __init__(self) -> None:
        self.taken = 0
        self.dropped = 0
        self.exported = 0
        self.failed = 0
        self.suppressed = 0

    @property
    def produced(self) -> int:
        return self.taken + len(buffer) + self.dropped


accounting = Accounting()


def emit(record: tuple[Any, ...], urgent: bool = False) -> None:
    """Append one record, or count it dropped when the buffer is full.

    No lock on the way in: ``deque.append`` is atomic, and threads racing
    past the size check can overfill the buffer by at most one record each.
    """
    if len(buffer) < buffer_capacity:
        buffer.append(record)
        if urgent or len(buffer) == buffer_capacity >> 1:
            try:
                _wakeup()
            except Exception:
                pass
        return
    with _buffer_lock:
        accounting.dropped += 1
    if urgent:
        try:
            _wakeup()
        except Exception:
            pass


def take_all() -> list[tuple[Any, ...]]:
    """Everything buffered now, oldest first (the pipeline's side)."""
    out = []
    pop = buffer.popleft
    try:
        while True:
            out.append(pop())
            accounting.taken += 1  # only the pipeline thread takes
    except IndexError:
        pass
    return out


def drop_buffer() -> None:
    """Discard buffered records (fork child); they count as dropped."""
    with _buffer_lock:
        accounting.dropped += len(buffer)
        buffer.clear()


#: threading's registry of running threads (a dict it never rebinds).
_active_threads: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]


def thread_name(ident: int) -> str:
    thread = _active_threads.get(ident)
    if thread is None:
        return f"thread-{ident}"
    try:
        return str(thread.name)
    except Exception:
        return f"thread-{ident}"


def _allow_span(st: SlowStats, now: int) -> bool:
    """Per-primitive rate limit: at most ``max_spans_per_second`` records."""
    if now - st.rl_start >= 1_000_000_000:
        st.rl_start = now
        st.rl_count = 0
    if st.rl_count >= max_spans_per_second:
        st.suppressed += 1
        accounting.suppressed += 1
        return False
    st.rl_count += 1
    return True


def _record_wait_sample(st: SlowStats, wait: int) -> None:
    st.wait_sum += wait
    if wait > st.wait_max:
        st.wait_max = wait
    st.wait_hist[wait.bit_length()] += 1


def current_context() -> Any:
    try:
        return _current_context()
    except Exception:
        return None


def new_span_id() -> int:
    return random.getrandbits(64) or 1


# --------------------------------------------------------------------------
# Slow paths shared by Lock and RLock (pure Python and compiled)
# --------------------------------------------------------------------------


def validate_acquire_args(blocking: Any, timeout: Any) -> None:
    """Raise exactly what ``_thread.lock.acquire(blocking, timeout)`` raises.

    A fresh lock is free, so acquiring it checks the arguments and returns at
    once: the messages are the running interpreter's own.
    """
    _allocate_lock().acquire(blocking, timeout)


def lock_acquire_slow(prim: Any, blocking: Any, timeout: Any) -> bool:
    """Everything ``Lock.acquire`` does beyond an uncontended default call."""
    default = blocking is True and timeout == -1
    if not default:
        validate_acquire_args(blocking, timeout)
    if prim._try(False):
        prim._t = _now()
        prim._owner = _get_ident()
        return True
    if not blocking or timeout == 0:
        with _stats_lock:
            prim._st.would_block += 1
        return False
    return _block(prim, -1 if default else timeout, reentrant=False)


def rlock_acquire_slow(prim: Any, blocking: Any, timeout: Any) -> bool:
    """Everything ``RLock.acquire`` does beyond an uncontended default call."""
    default = blocking is True and timeout == -1
    if not default:
        validate_acquire_args(blocking, timeout)
    me = _get_ident()
    if prim._owner == me:
        count = prim._count + 1
        prim._count = count
        prim._reent += 1
        if count > prim._depth:
            prim._depth = count
        return True
    if prim._try(False):
        prim._owner = me
        prim._count = prim._depth = 1
        prim._t = _now()
        return True
    if not blocking or timeout == 0:
        with _stats_lock:
            prim._st.would_block += 1
        return False
    return _block(prim, -1 if default else timeout, reentrant=True)


def _block(prim: Any, timeout: float, reentrant: bool) -> bool:
    """Block on ``prim``'s underlying lock, measuring the wait.

    Phase 1 waits up to the wait threshold with no bookkeeping: most
    contended waits end there and cost nothing more. A wait that outlives
    the threshold will become a span, so phase 2 first notes who holds the
    lock and where that thread is, reserves the span id of the holder's
    hold (the wait span links to it), and registers the waiter for the
    deadlock and stuck-wait detectors.
    """
    t0 = _now()
    me = _get_ident()
    try_acquire = prim._try
    st: SlowStats = prim._st
    threshold_s = wait_threshold_ns / 1e9
    got = False
    holder = 0
    holder_name = None
    holder_site = None
    blame = None
    registered = False
    try:
        if threshold_s <= 0:
            remaining = float(timeout)
        elif timeout < 0 or timeout > threshold_s:
            got = try_acquire(True, threshold_s)
            remaining = -1.0 if timeout < 0 else timeout - (_now() - t0) / 1e9
        else:
            got = try_acquire(True, timeout)
            remaining = 0.0
        if not got and (timeout < 0 or remaining > 0):
            holder = prim._owner
            if recording and me not in _internal:
                if holder == me and not reentrant and _hooks.self_deadlock is not None:
                    _hooks.self_deadlock(prim, t0)
                if holder and holder != me:
                    holder_name = thread_name(holder)
                    holder_site = _sites.thread_site(holder)
                if prim._blame is None:
                    prim._blame = new_span_id()
                blame = prim._blame
            _waiting[me] = (prim, t0, current_context() if recording else None)
            registered = True
            got = try_acquire(True, remaining)
    finally:
        if registered:
            _waiting.pop(me, None)
    t1 = _now()
    if got:
        prim._t = t1
        prim._owner = me
        if reentrant:
            prim._count = prim._depth = 1
    wait = t1 - t0
    with _stats_lock:
        if got:
            st.contentions += 1
        else:
            st.timeouts += 1
        _record_wait_sample(st, wait)
        allowed = (
            wait >= wait_threshold_ns and recording and me not in _internal and _allow_span(st, t1)
        )
    if allowed:
        emit(
            (
                WAIT,
                prim._meta,
                me,
                thread_name(me),
                t0,
                t1,
                "acquired" if got else "timeout",
                current_context(),
                _sites.call_site(1),
                holder,
                holder_name,
                holder_site,
                blame,
            )
        )
    return got


def hold_end(prim: Any, t0: int, held: int, frames: int = 1) -> None:
    """A hold crossed the threshold or was waited on: record it.

    ``frames`` is how many frames out the caller's caller is: 1 from C (the
    compiled release), 2 from a tracedsync method written in Python. The
    call site is the first user frame from there outwards.

    Called by the releasing thread *before* the underlying lock is released,
    so the hold record precedes the record of the wait it ended. This runs on
    the application thread for every hold above the threshold: keep it lean
    (the rate limit's lock is skipped when there is no limit).

    The compiled Lock/RLock (3.11+) make this record themselves in the common
    case (``record_hold_fast`` in ``_speedups.c``, reading this module's
    globals): a change to the record or to the conditions here goes there too.
    """
    blame = prim._blame
    if blame is not None:
        prim._blame = None
    if not recording:
        return
    me = _get_ident()
    if me in _internal:
        return
    if blame is None and _spans_limited:
        with _stats_lock:
            if not _allow_span(prim._st, t0 + held):
                return
    try:  # current_context(), inlined: this runs on the app thread
        context = _current_context()
    except Exception:
        context = None
    try:
        frame = _getframe(frames)
    except ValueError:  # called from C with no Python frame below
        frame = None
    record = (
        HOLD,
        prim._meta,
        me,
        # The Thread itself: the pipeline reads its name (a lookup saved here).
        _active_threads.get(me) or thread_name(me),
        t0,
        t0 + held,
        None,
        context,
        _sites.frame_site(frame),
        getattr(prim, "_depth", 0),  # an RLock's deepest recursion in this hold
        None,
        None,
        blame,
    )
    # emit(), inlined for its common case (room in the buffer, no wake-up due).
    n = len(buffer)
    if n < _room and n != _wake_at:
        buffer.append(record)
    else:
        emit(record)


def idle_wait_end(
    prim: Any, t0: int, t1: int, outcome: str, blocked: bool, timed_out: bool
) -> None:
    """Account one ``wait()`` of an Event, Condition or Barrier."""
    st: SlowStats = prim._st
    wait = t1 - t0
    me = _get_ident()
    with _stats_lock:
        st.waits += 1
        if blocked:
            st.contentions += 1
        if timed_out:
            st.timeouts += 1
        _record_wait_sample(st, wait)
        allowed = (
            blocked
            and wait >= wait_threshold_ns
            and recording
            and me not in _internal
            and _allow_span(st, t1)
        )
    if allowed:
        emit(
            (
                WAIT,
                prim._meta,
                me,
                thread_name(me),
                t0,
                t1,
                outcome,
                current_context(),
                _sites.call_site(1),
                0,
                None,
                None,
                None,
            )
        )


def count_would_block(prim: Any) -> None:
    """A failed non-blocking try: counted, never a span."""
    with _stats_lock:
        prim._st.would_block += 1


def semaphore_wait_end(prim: Any, t0: int, acquired: bool) -> None:
    """Account a semaphore acquire that had to block."""
    t1 = _now()
    st: SlowStats = prim._st
    wait = t1 - t0
    me = _get_ident()
    with _stats_lock:
        if acquired:
            st.contentions += 1
        else:
            st.timeouts += 1
        _record_wait_sample(st, wait)
        allowed = (
            wait >= wait_threshold_ns and recording and me not in _internal and _allow_span(st, t1)
        )
    if not allowed:
        return
    # The holder that blocked us: the oldest outstanding acquisition.
    holder = 0
    for ident, _ in prim.holders():
        if ident != me:
            holder = ident
            break
    emit(
        (
            WAIT,
            prim._meta,
            me,
            thread_name(me),
            t0,
            t1,
            "acquired" if acquired else "timeout",
            current_context(),
            _sites.call_site(1),
            holder,
            thread_name(holder) if holder else None,
            _sites.thread_site(holder) if holder else None,
            None,
        )
    )


def finding(
    event: str,
    fields: dict[str, Any],
    span: tuple[str, dict[str, Any], list[Any], int] | None = None,
) -> None:
    """Report a detection finding (deadlock, stuck wait, ...): flushed at once.

    ``span`` optionally asks for a span too: (name, attributes, OTel contexts
    to link, start in monotonic ns); it ends now.
    """
    if not recording:
        return
    emit((FINDING, event, fields, current_context(), span, _now()), urgent=True)


#: thread ident -> (primitive, wait start, OTel context) of threads blocked in
#: a lock-like acquire past phase 1: the wait-for graph's edges start here.
_waiting: dict[int, tuple[Any, int, Any]] = {}
#: thread ident -> (primitive, wait start, OTel context) of threads in an idle
#: wait (Event, Condition, Barrier): shown by snapshot(), never "stuck".
_idle_waiting: dict[int, tuple[Any, int, Any]] = {}


class _Hooks:
    """Detection plugs in here (``tracedsync.detection``)."""

    self_deadlock: Callable[[Any, int], None] | None = None


_hooks = _Hooks()


def waiting_threads() -> dict[int, tuple[Any, int, Any]]:
    """Threads blocked in a lock-like acquire now: ident -> (primitive, since, context)."""
    return dict(_waiting)


def idle_waiting_threads() -> dict[int, tuple[Any, int, Any]]:
    """Threads in Event/Condition/Barrier waits now: ident -> (primitive, since, context)."""
    return dict(_idle_waiting)


def begin_idle_wait(prim: Any, t0: int) -> None:
    _idle_waiting[_get_ident()] = (prim, t0, current_context() if recording else None)


def end_idle_wait() -> None:
    _idle_waiting.pop(_get_ident(), None)


def begin_lock_wait(prim: Any, t0: int) -> None:
    """A semaphore acquire starts blocking (Lock and RLock register in _block)."""
    _waiting[_get_ident()] = (prim, t0, current_context() if recording else None)


def end_lock_wait() -> None:
    _waiting.pop(_get_ident(), None)


def at_fork_child() -> None:
    """In a fork child: inherited waiters and records belong to the parent."""
    global _buffer_lock, _stats_lock, _fold_lock, _id_lock
    _buffer_lock = _RawRLock()
    _stats_lock = _RawRLock()
    _fold_lock = _RawRLock()
    _id_lock = _allocate_lock()
    _waiting.clear()
    _idle_waiting.clear()
    _internal.clear()
    buffer.clear()
