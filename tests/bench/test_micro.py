"""``tracedsync bench``'s per-primitive cases: every case and column runs (nothing timed)."""

from __future__ import annotations

import threading

import pytest

from tracedsync import _stdlib, lifecycle, primitives
from tracedsync.bench import micro, targets
from tracedsync.bench.timing import Settings


def _quiet(message: str) -> None:
    pass


def test_every_case_runs_and_reports_every_column() -> None:
    """All cases run (tiny counts); plain, the compiled column where built and pure are
    there; the Queue case's install() leaves tracedsync unconfigured as it found it."""
    data = micro.measure(micro.case_names(), Settings(ops=40, repeat=2, ddtrace=False), _quiet)
    assert lifecycle.active() is None
    built = primitives.CompiledLock is not None
    assert data["columns"] == ["plain", *(["compiled", "pure"] if built else ["pure"])]
    assert list(data["cases"]) == micro.case_names()
    for wanted in (
        "Lock with",
        "RLock acquire/release",
        "BoundedSemaphore with",
        "Condition with+notify",
        "Lock contended 4 threads",
        "Lock ping-pong",
        "Semaphore ping-pong",
        "BoundedSemaphore ping-pong",
        "Event ping-pong",
        "Condition ping-pong",
    ):
        assert wanted in data["cases"]
    for r in data["cases"].values():
        assert r["ns_per_op"]["plain"] > 0
        for column in data["columns"][1:]:
            value = r["ns_per_op"][column]
            if value is None:
                assert r["notes"][column]  # says why (same code, not measured)
            else:
                expected = value / r["ns_per_op"]["plain"]
                assert r["ratio"][column] == pytest.approx(expected, rel=0.01, abs=0.001)
                assert len(r["samples_ns"][column]) == 2


def test_every_primitive_has_its_targets_in_the_figures() -> None:
    """Uncontended, explicit and contended cases carry the compiled target of their
    style; the pure column has targets for Lock and RLock only."""
    data = micro.measure(
        ["Lock with", "Semaphore acquire/release", "Event ping-pong", "Queue put/get (install)"],
        Settings(ops=40, repeat=1, ddtrace=False),
        _quiet,
    )
    ids = {f.id: f for f in micro.figures(data)}
    if primitives.CompiledLock is not None:
        assert ids["Lock with [compiled]"].target.limit == 1.2
        assert ids["Semaphore acquire/release [compiled]"].target.limit == 1.5
        assert ids["Event ping-pong [compiled]"].target.limit == 1.1
        assert "Event ping-pong [pure]" not in ids  # same code as compiled
    assert "Semaphore acquire/release [pure]" not in ids  # measured, printed, no target
    assert ids["Lock with [pure]"].target.limit == 3.5
    assert not any(i.startswith("Queue put/get") for i in ids)  # printed, no target
    lines = "\n".join(micro.format_lines(data))
    assert "p 3.5x" in lines


def test_pure_column_uses_the_pure_classes() -> None:
    """The pure column is built from the pure-Python classes, whatever is loaded."""
    columns = {c.name: c for c in micro.traced_columns()}
    assert type(columns["pure"].factories["Lock"]()) is primitives.PureLock
    assert type(columns["pure"].factories["RLock"]()) is primitives.PureRLock
    assert type(columns["pure"].factories["Semaphore"]()) is primitives.PureSemaphore
    bounded = columns["pure"].factories["BoundedSemaphore"]()
    assert type(bounded) is primitives.PureBoundedSemaphore
    if primitives.CompiledLock is not None:
        assert type(columns["compiled"].factories["Lock"]()) is primitives.CompiledLock
        assert type(columns["compiled"].factories["RLock"]()) is primitives.CompiledRLock
        sem = columns["compiled"].factories["Semaphore"]()
        assert type(sem) is primitives.CompiledSemaphore
        bounded = columns["compiled"].factories["BoundedSemaphore"]()
        assert type(bounded) is primitives.CompiledBoundedSemaphore


@pytest.mark.parametrize("primitive", ["Lock", "Semaphore", "BoundedSemaphore"])
def test_handoff_ping_pong_hands_over_and_leaves_both_taken(primitive: str) -> None:
    """A hand-off ping-pong round trip blocks on each side; both objects end taken again."""
    for column in (micro.plain_column(), *micro.traced_columns()):
        if not column.measures(primitive):
            continue
        pair = micro._taken_pair(column.factories[primitive])
        count, seconds = micro._handoff_ping_pong(pair, 50)
        assert count == 50 and seconds > 0
        assert not pair[0].acquire(False) and not pair[1].acquire(False)


def test_queue_case_is_made_under_install() -> None:
    """The Queue case's traced queue has traced primitives; threading is left unpatched."""
    q = micro.queue_under_install()
    assert type(q.mutex) is primitives.Lock and isinstance(q.not_empty, primitives.Condition)
    assert threading.Lock is _stdlib.Lock
    pure_q = micro.queue_with(primitives.PureLock)
    assert type(pure_q.mutex) is primitives.PureLock
    pure_q.put(1)
    assert pure_q.get() == 1


def test_a_case_measured_again_keeps_the_columns_the_second_pass_left_out() -> None:
    """merge_case keeps ddtrace's first-pass figures when --check measures a case again."""
    first = {
        "ns_per_op": {"plain": 100.0, "compiled": 900.0, "ddtrace": 700.0},
        "ratio": {"compiled": 9.0, "ddtrace": 7.0},
        "samples_ns": {"plain": [100.0], "compiled": [900.0], "ddtrace": [700.0]},
        "notes": {},
    }
    again = {
        "ns_per_op": {"plain": 100.0, "compiled": 110.0},
        "ratio": {"compiled": 1.1},
        "samples_ns": {"plain": [100.0, 100.0], "compiled": [110.0, 110.0]},
        "notes": {"ddtrace": "not measured"},
    }
    merged = micro.merge_case(first, again)
    assert merged["ns_per_op"] == {"plain": 100.0, "compiled": 110.0, "ddtrace": 700.0}
    assert merged["ratio"] == {"compiled": 1.1, "ddtrace": 7.0}
    assert merged["notes"] == {}


def test_ddtrace_factor_is_a_target_when_its_column_ran() -> None:
    """With a ddtrace figure for `with Lock`, its cost over the compiled one is a figure."""
    data = {
        "cases": {
            "Lock with": {
                "case": "Lock with",
                "primitive": "Lock",
                "style": "uncontended",
                "ns_per_op": {"plain": 250.0, "compiled": 240.0, "ddtrace": 2400.0},
                "ratio": {"compiled": 0.96, "ddtrace": 9.6},
            }
        }
    }
    (f,) = [f for f in micro.figures(data) if f.case == "Lock with vs ddtrace"]
    assert f.value == pytest.approx(10.0) and f.met
    assert f.target == targets.CASES["Lock with vs ddtrace"]
