"""counters: one declaration (PrimitiveStats), and the raw forms derived from it."""

from __future__ import annotations

import random

from tracedsync.counters import (
    HISTOGRAMS,
    MAXIMA,
    RAW_BUCKETS,
    RAW_FIELDS,
    SUMS,
    Counters,
    PrimitiveStats,
    fold_histogram,
)


def _random_counters(rng: random.Random) -> Counters:
    c = Counters()
    for name in SUMS + MAXIMA:
        setattr(c, name, rng.randrange(1000))
    for name in HISTOGRAMS:
        setattr(c, name, [rng.randrange(50) for _ in range(RAW_BUCKETS)])
    return c


def test_every_raw_counter_starts_at_zero() -> None:
    """Counters() sets every field RAW_FIELDS declares (its __init__ spells them out)."""
    c = Counters()
    assert set(Counters.__slots__) == set(SUMS + MAXIMA + HISTOGRAMS)
    for name in SUMS + MAXIMA:
        assert getattr(c, name) == 0, name
    for name in HISTOGRAMS:
        assert getattr(c, name) == [0] * RAW_BUCKETS, name


def test_add_combines_each_field_as_declared() -> None:
    """add() sums the sums and the histograms bucket by bucket and keeps the
    larger maximum -- for every field, as RAW_FIELDS says."""
    rng = random.Random(7)
    for _ in range(50):
        a, b = _random_counters(rng), _random_counters(rng)
        expected = {
            **{n: getattr(a, n) + getattr(b, n) for n in SUMS},
            **{n: max(getattr(a, n), getattr(b, n)) for n in MAXIMA},
            **{
                n: [x + y for x, y in zip(getattr(a, n), getattr(b, n), strict=True)]
                for n in HISTOGRAMS
            },
        }
        a.add(b)
        assert {n: getattr(a, n) for n in expected} == expected


def test_stats_are_derived_from_the_raw_counters() -> None:
    """to_stats gives every PrimitiveStats field, seconds for durations."""
    c = _random_counters(random.Random(3))
    s = c.to_stats("x", "lock", 1)
    assert list(PrimitiveStats._fields)[3:] == list(RAW_FIELDS)
    assert s.wait_total == c.wait_sum / 1e9 and s.hold_max == c.hold_max / 1e9
    assert s.wait_histogram == fold_histogram(c.wait_hist)
    assert sum(s.hold_histogram) == sum(c.hold_hist)
