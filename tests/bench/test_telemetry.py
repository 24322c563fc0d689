"""``tracedsync bench``'s telemetry cases: every record accounted for, nothing left running."""

from __future__ import annotations

from tracedsync import _settings, primitives
from tracedsync.bench import telemetry
from tracedsync.bench.timing import Settings, traced_implementations


def test_pipeline_measurements_account_for_every_record() -> None:
    """Throughput: every record written as a span; outrun: produced = exported + dropped."""
    through = telemetry.pipeline_throughput(300, lambda: primitives.Lock(name="t"))
    assert through["flushed"] and through["spans_written"] == 300
    assert through["accounting"]["produced"] == through["accounting"]["exported"] == 300
    assert through["accounting"]["dropped"] == 0
    outrun = telemetry.drops_when_outrun(400, 16, lambda: primitives.Lock(name="d"))
    acc = outrun["accounting"]
    assert outrun["balanced"] and acc["produced"] == 400
    assert acc["dropped"] > 0
    assert not _settings.current.recording  # shut down afterwards


def test_crossing_cost_runs_for_both_implementations() -> None:
    """The threshold-crossing measurement runs and leaves tracedsync shut down."""
    for _, lock_cls, _ in traced_implementations():
        cost = telemetry.crossing_cost(lock_cls, 200, 1)
        assert cost["crossing_ns_per_op"] > 0 and "cost_ns" in cost
    assert not _settings.current.recording


def test_lock_order_cost_measures_both_modes_and_turns_it_off() -> None:
    """The lock-order measurement runs with checking off and on, then leaves it off."""
    before = {name: primitives.Lock.__dict__.get(name) for name in ("acquire", "__exit__")}
    cost = telemetry.lock_order_cost(200, 1)
    assert cost["off_ns_per_op"] > 0 and cost["on_ns_per_op"] > 0
    assert {name: primitives.Lock.__dict__.get(name) for name in before} == before
    assert not _settings.current.recording


def test_pipeline_median_reports_the_middle_run_and_every_sample() -> None:
    """The pipeline figure is the run of median rate; every run's rates are kept."""
    out = telemetry.pipeline_median(200, lambda: primitives.Lock(name="m"), 3)
    assert out["runs"] == 3 and len(out["samples"]) == 3
    rates = sorted(s["spans_per_second"] for s in out["samples"])
    assert out["spans_per_second"] == rates[1]
    assert out["spans_written"] == 200 and out["flushed"]
    assert not _settings.current.recording


def test_measure_gives_the_pipeline_and_crossing_figures() -> None:
    """The section's figures: pipeline throughput, and the crossing per implementation."""
    data = telemetry.measure(telemetry.case_names(), Settings(ops=200, repeat=1), lambda _: None)
    ids = {f.id for f in telemetry.figures(data)}
    assert f"pipeline throughput [{primitives.IMPLEMENTATION}]" in ids
    for impl, _, _ in traced_implementations():
        assert f"threshold crossing [{impl}]" in ids
    assert len(telemetry.format_lines(data)) == 3 + len(traced_implementations())
