"""``tracedsync bench``'s real-workload cases: traced under install(), plain really plain."""

from __future__ import annotations

import threading

import pytest

from tracedsync import _settings, _stdlib, patching
from tracedsync.bench import realworld
from tracedsync.bench.timing import Settings


def test_every_case_runs_both_sides_and_leaves_threading_unpatched() -> None:
    """Lock(), Queue() and the executor run plain and under install(); afterwards
    threading is the stdlib's and tracedsync is shut down."""
    data = realworld.measure(realworld.case_names(), Settings(ops=30, repeat=2), lambda _: None)
    assert list(data["cases"]) == realworld.case_names()
    for c in data["cases"].values():
        assert c["plain_ns"] > 0 and c["traced_ns"] > 0
        assert len(c["samples_ns"]["plain"]) == len(c["samples_ns"]["traced"]) == 2
        lo, hi = c["ratio_quartiles"]
        assert lo <= c["ratio"] <= hi
    assert threading.Lock is _stdlib.Lock and not patching.installed()
    assert not _settings.current.recording
    ids = {f.id: f for f in realworld.figures(data)}
    impl = data["implementation"]
    assert ids[f"threading.Lock() creation [{impl}]"].target.unit == "us"
    assert ids[f"queue.Queue() creation [{impl}]"].target.limit == 1.5
    assert ids[f"ThreadPoolExecutor(4) submit+result [{impl}]"].target.limit == 1.15


@pytest.mark.parametrize("name", list(realworld.CASES))
def test_a_side_that_is_not_what_it_claims_fails(name: str) -> None:
    """A 'traced' sample made without install(), or a 'plain' one under it, raises:
    the bench cannot report a comparison it did not make."""
    case = realworld.CASES[name]
    with pytest.raises(RuntimeError):
        case.sample(True, 10)
    patching.install()
    try:
        with pytest.raises(RuntimeError):
            case.sample(False, 10)
    finally:
        patching.uninstall()
