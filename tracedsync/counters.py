"""What a primitive counts: declared once, in :class:`PrimitiveStats`.

The hot paths keep raw integers (nanoseconds, raw ``bit_length`` histograms)
on the primitive; the slow paths keep theirs in a :class:`Counters` made on
first use. :class:`Counters` is also what sums of several primitives are
made of. Both derive their fields from :class:`PrimitiveStats`, the public
frozen form, through :data:`RAW_FIELDS`: adding a counter means adding it
there and to the named tuple, nowhere else. The metrics, the exit summary and
``tracedsync.stats()`` are all built from these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress
from typing import Any, NamedTuple

#: Primitives count durations in raw buckets indexed by ``ns.bit_length()``
#: (no comparison on the hot path). Exported histograms fold them into these
#: upper-inclusive bounds: 1.02 µs, 2.05 µs, ... 1100 s, then +Inf.
RAW_BUCKETS = 65
_BUCKETS = range(RAW_BUCKETS)
HISTOGRAM_BOUNDS_NS: tuple[int, ...] = tuple((1 << (k + 10)) - 1 for k in range(31))
HISTOGRAM_BOUNDS: tuple[float, ...] = tuple(b / 1e9 for b in HISTOGRAM_BOUNDS_NS)


def fold_histogram(raw: Sequence[int]) -> tuple[int, ...]:
    """Fold a raw ``bit_length`` histogram into ``HISTOGRAM_BOUNDS`` buckets."""
    out = [sum(raw[0:11])]
    out.extend(raw[11:41])
    out.append(sum(raw[41:]))
    return tuple(out)


def raw_bucket(ns: int) -> int:
    """The raw bucket of a duration (what the hot paths index)."""
    return ns.bit_length()


class PrimitiveStats(NamedTuple):
    """What one primitive (or all collected ones of a name and kind) measured.

    Durations are in seconds. ``wait_histogram`` and ``hold_histogram`` count
    samples in the buckets bounded by ``tracedsync.HISTOGRAM_BOUNDS`` (upper
    bounds, inclusive; the last bucket is unbounded). For lock-like kinds the
    wait histogram has one sample per acquisition (0 when uncontended) and
    one per timed-out acquire; for ``event``, ``condition`` and ``barrier``
    one per ``wait()`` call. Waits still blocked are not in these figures.
    """

    name: str
    kind: str
    #: Process-unique id; None for the folded entry of collected primitives.
    id: int | None
    #: How many primitives this entry covers (1 for a live primitive).
    instances: int
    #: Successful acquires (RLock re-entries and Condition re-acquires excluded).
    acquisitions: int
    reentries: int
    #: Acquires or waits that blocked, timed out ones included.
    contentions: int
    timeouts: int
    #: Failed non-blocking tries.
    would_block: int
    #: ``wait()`` calls (Event, Condition, Barrier).
    waits: int
    wait_total: float
    wait_max: float
    hold_total: float
    hold_max: float
    wait_histogram: tuple[int, ...]
    hold_histogram: tuple[int, ...]
    #: Spans the per-second budget kept out (the slowest are kept).
    spans_suppressed: int

    @property
    def contention_rate(self) -> float:
        """Share of acquisitions that had to block (0.0 when none)."""
        return self.contentions / self.acquisitions if self.acquisitions else 0.0


def _seconds(ns: int) -> float:
    return ns / 1e9


#: PrimitiveStats field -> (raw counter, how it combines, how it is shown).
#: Combining is ``sum``, ``max`` or ``hist`` (bucket-wise sum).
RAW_FIELDS: dict[str, tuple[str, str, Callable[[Any], Any] | None]] = {
    "instances": ("instances", "sum", None),
    "acquisitions": ("acquisitions", "sum", None),
    "reentries": ("reentries", "sum", None),
    "contentions": ("contentions", "sum", None),
    "timeouts": ("timeouts", "sum", None),
    "would_block": ("would_block", "sum", None),
    "waits": ("waits", "sum", None),
    "wait_total": ("wait_sum", "sum", _seconds),
    "wait_max": ("wait_max", "max", _seconds),
    "hold_total": ("hold_sum", "sum", _seconds),
    "hold_max": ("hold_max", "max", _seconds),
    "wait_histogram": ("wait_hist", "hist", fold_histogram),
    "hold_histogram": ("hold_hist", "hist", fold_histogram),
    "spans_suppressed": ("suppressed", "sum", None),
}
_IDENTITY_FIELDS = ("name", "kind", "id")
if list(PrimitiveStats._fields) != [*_IDENTITY_FIELDS, *RAW_FIELDS]:
    raise AssertionError("counters.RAW_FIELDS must list PrimitiveStats' counter fields")

#: The raw counters by how they combine (``Counters.__init__`` and ``add``
#: spell them out for speed; tests/test_counters.py checks they agree).
SUMS = tuple(raw for raw, how, _ in RAW_FIELDS.values() if how == "sum")
MAXIMA = tuple(raw for raw, how, _ in RAW_FIELDS.values() if how == "max")
HISTOGRAMS = tuple(raw for raw, how, _ in RAW_FIELDS.values() if how == "hist")


def add_histogram(into: list[int], counts: Sequence[int]) -> None:
    """Add raw histogram ``counts`` into ``into``, in place, touching only the
    buckets that counted (most are 0: ``compress`` finds the others in C)."""
    for i in compress(_BUCKETS, counts):
        into[i] += counts[i]


class Counters:
    """Raw integer counters (ns, raw histograms) of one primitive or a sum."""

    __slots__ = tuple(raw for raw, _, _ in RAW_FIELDS.values())

    instances: int
    acquisitions: int
    reentries: int
    contentions: int
    timeouts: int
    would_block: int
    waits: int
    wait_sum: int
    wait_max: int
    hold_sum: int
    hold_max: int
    wait_hist: list[int]
    hold_hist: list[int]
    suppressed: int

    def __init__(self) -> None:
        # Spelled out (no loop over the fields): a primitive's first slow path
        # and every fold make one; tests/test_counters.py checks every field.
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

    def add(self, other: Counters) -> None:
        """Add ``other`` into these counters (whose histograms are their own
        lists: every Counters is made fresh or copied by ``read_counters``)."""
        self.instances += other.instances
        self.acquisitions += other.acquisitions
        self.reentries += other.reentries
        self.contentions += other.contentions
        self.timeouts += other.timeouts
        self.would_block += other.would_block
        self.waits += other.waits
        self.wait_sum += other.wait_sum
        self.hold_sum += other.hold_sum
        self.suppressed += other.suppressed
        if other.wait_max > self.wait_max:
            self.wait_max = other.wait_max
        if other.hold_max > self.hold_max:
            self.hold_max = other.hold_max
        # Folding the primitives a program makes and drops (a Future's
        # Condition per task) adds two histograms each.
        add_histogram(self.wait_hist, other.wait_hist)
        add_histogram(self.hold_hist, other.hold_hist)

    def used(self) -> bool:
        """True when anything was counted."""
        return any(getattr(self, name) for name in SUMS if name != "instances")

    def to_stats(self, name: str, kind: str, ident: int | None) -> PrimitiveStats:
        values = {
            field: getattr(self, raw) if show is None else show(getattr(self, raw))
            for field, (raw, _, show) in RAW_FIELDS.items()
        }
        return PrimitiveStats(name=name, kind=kind, id=ident, **values)


class SlowStats(Counters):
    """A primitive's counters that only its slow paths touch (made on first
    use; read and written under ``registry.stats_lock``)."""

    __slots__ = ("acq_seen", "budgets")

    def __init__(self) -> None:
        super().__init__()
        #: The highest acquisition count reported for a Lock or RLock (see
        #: ``registry.read_counters``): a live figure never goes back.
        self.acq_seen = 0
        #: The span budgets (wait, hold), made when first needed (guarded
        #: by their own locks: ``tracedsync.budget``).
        self.budgets: Any = None
