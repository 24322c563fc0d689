"""``tracedsync bench``: runs every case and reports honestly (nothing here is timed)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from tracedsync import bench, primitives, recorder
from tracedsync.cli import build_parser


def _args(*argv: str) -> argparse.Namespace:
    full = ["bench", *argv]
    return build_parser(full).parse_args(full)


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert bench.command(_args("--json", "--no-ddtrace", *argv)) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_every_case_runs_and_reports_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    """All cases run (tiny counts); plain, the compiled column where built and pure are there."""
    out = _run_json(capsys, "--ops", "40", "--repeat", "2", "--no-telemetry")
    built = primitives.CompiledLock is not None
    traced = ["compiled", "pure"] if built else ["pure"]
    assert out["columns"] == ["plain", *traced, "floor"]
    names = [r["case"] for r in out["results"]]
    assert names == [c.name for c in bench.all_cases()]
    for wanted in (
        "Lock with",
        "RLock acquire/release",
        "BoundedSemaphore with",
        "Condition with+notify",
        "Lock contended 4 threads",
        "Event ping-pong",
        "Condition ping-pong",
    ):
        assert wanted in names
    for r in out["results"]:
        assert r["ns_per_op"]["plain"] > 0
        for column in out["columns"][1:]:
            value = r["ns_per_op"][column]
            if value is None:
                assert r["notes"][column]  # says why (same code, not measured)
            else:
                assert r["ratio"][column] == pytest.approx(value / r["ns_per_op"]["plain"], 0.01)
                assert len(r["samples_ns"][column]) == 2
    assert out["machine"]["tracedsync_implementation"] == primitives.IMPLEMENTATION
    floor = {r["case"]: r["ns_per_op"]["floor"] for r in out["results"]}
    assert floor["Lock with"] and floor["Lock acquire/release"]
    assert floor["RLock with"] and floor["RLock acquire/release"]
    assert floor["Event set/wait"] is None and floor["Lock contended 2 threads"]


def test_floor_lock_is_a_lock_that_measures_nothing() -> None:
    """PythonFloorLock (the floor column) locks like a Lock and records nothing."""
    produced = recorder.accounting.produced
    lock = bench.PythonFloorLock()
    with lock:
        assert not lock.acquire(False)
        assert not lock.acquire(True, 0.01)
    assert lock.acquire()
    lock.release()
    assert lock.acquire(False)
    lock.release()
    assert recorder.accounting.produced == produced


def test_floor_rlock_is_an_rlock_that_measures_nothing() -> None:
    """PythonFloorRLock re-enters, is released by its owner only, blocks others
    (with a timeout) and records nothing."""
    produced = recorder.accounting.produced
    rlock = bench.PythonFloorRLock()
    with rlock:
        assert rlock.acquire(False)  # re-entry
        rlock.release()
        other: list[bool] = []

        def elsewhere() -> None:
            other.append(rlock.acquire(True, 0.01))
            try:
                rlock.release()
            except RuntimeError:
                other.append(False)

        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(10)
        assert not t.is_alive() and other == [False, False]
    with pytest.raises(RuntimeError):
        rlock.release()
    assert rlock.acquire()
    rlock.release()
    assert rlock._tok == [True] and rlock._count == 0
    assert recorder.accounting.produced == produced


def test_pure_column_uses_the_pure_classes() -> None:
    """The pure column is built from the pure-Python classes, whatever is loaded."""
    columns = {c.name: c for c in bench.traced_columns()}
    assert type(columns["pure"].Lock()) is primitives.PureLock
    assert type(columns["pure"].RLock()) is primitives.PureRLock
    if primitives.CompiledLock is not None:
        assert type(columns["compiled"].Lock()) is primitives.CompiledLock


def _result(case: str, primitive: str, style: str, plain: float, **ns: float) -> bench.Result:
    values: dict[str, float | None] = {"plain": plain, **ns}
    return bench.Result(case, primitive, style, values, {k: [v] for k, v in ns.items()})


def test_check_fails_only_beyond_the_margin() -> None:
    """--check flags a Lock/RLock ratio only when more than CHECK_MARGIN x its target."""
    limit_with = bench.TARGETS[("compiled", "with")] * bench.CHECK_MARGIN
    ok = [
        _result("Lock with", "Lock", "with", 100, compiled=100 * limit_with * 0.99, pure=280),
        _result("Semaphore with", "Semaphore", "with", 100, compiled=10_000),
        _result("Lock contended 2 threads", "Lock", "contended", 100, compiled=10_000),
    ]
    assert bench.check_failures(ok) == []
    bad = [_result("RLock acquire/release", "RLock", "explicit", 100, pure=1300)]
    (failure,) = bench.check_failures(bad)
    assert "RLock acquire/release (pure): 13.00x plain, target 6.0x" in failure


def test_check_flag_sets_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --check a ratio over the limit exits 1; without it, 0; the table says why."""

    def slow(case: bench.Case, columns: Any, ops: int, repeat: int) -> bench.Result:
        return _result(case.name, case.primitive, case.style, 100, pure=5000)

    monkeypatch.setattr(bench, "measure_case", slow)
    args = ["--only", "Lock with", "--no-telemetry", "--no-ddtrace"]
    assert bench.command(_args("--check", *args)) == 1
    out = capsys.readouterr().out
    assert "Over the --check limit" in out and "Measured twice" in out
    assert bench.command(_args(*args)) == 0


def test_check_measures_again_before_failing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A case over the limit once (noise) but not when measured again passes --check."""
    calls: list[int] = []

    def noisy_once(case: bench.Case, columns: Any, ops: int, repeat: int) -> bench.Result:
        calls.append(repeat)
        pure = 5000 if len(calls) == 1 else 250
        return _result(case.name, case.primitive, case.style, 100, pure=pure)

    monkeypatch.setattr(bench, "measure_case", noisy_once)
    argv = ["--check", "--only", "Lock with", "--no-telemetry", "--no-ddtrace", "--repeat", "3"]
    assert bench.command(_args(*argv)) == 0
    assert calls == [3, 3, 6]  # Lock with, RLock with, Lock with again
    assert "Measured twice" in capsys.readouterr().out


def test_pipeline_measurements_account_for_every_record() -> None:
    """Throughput: every record written as a span; outrun: produced = exported + dropped."""
    through = bench.pipeline_throughput(300, lambda: primitives.Lock(name="t"))
    assert through["flushed"] and through["spans_written"] == 300
    assert through["accounting"]["produced"] == through["accounting"]["exported"] == 300
    assert through["accounting"]["dropped"] == 0
    outrun = bench.drops_when_outrun(400, 16, lambda: primitives.Lock(name="d"))
    acc = outrun["accounting"]
    assert outrun["balanced"] and acc["produced"] == 400
    assert acc["dropped"] > 0
    assert not recorder.recording  # shut down afterwards


def test_crossing_cost_runs_for_both_implementations() -> None:
    """The threshold-crossing measurement runs and leaves tracedsync shut down."""
    for column in bench.traced_columns():
        cost = bench.crossing_cost(column.Lock, 200, 1)
        assert cost["crossing_ns_per_op"] > 0 and "cost_ns" in cost
    assert not recorder.recording


def test_lock_order_cost_measures_both_modes_and_turns_it_off() -> None:
    """The lock-order measurement runs with checking off and on, then leaves it off."""
    before = {name: primitives.Lock.__dict__.get(name) for name in ("acquire", "__exit__")}
    cost = bench.lock_order_cost(200, 1)
    assert cost["off_ns_per_op"] > 0 and cost["on_ns_per_op"] > 0
    assert {name: primitives.Lock.__dict__.get(name) for name in before} == before
    assert not recorder.recording


def test_queue_case_is_made_under_install() -> None:
    """The Queue case's traced queue has traced primitives; threading is left unpatched."""
    import threading

    from tracedsync import _stdlib

    q = bench.queue_under_install()
    assert isinstance(q.mutex, (primitives.Lock,)) and isinstance(q.not_empty, primitives.Condition)
    assert threading.Lock is _stdlib.Lock
    pure_q = bench.queue_with(primitives.PureLock)
    assert isinstance(pure_q.mutex, primitives.PureLock)
    pure_q.put(1)
    assert pure_q.get() == 1


def test_table_and_module_entry_point() -> None:
    """python -m tracedsync bench prints the table with the machine line (small run)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracedsync",
            "bench",
            "--ops",
            "40",
            "--repeat",
            "1",
            "--only",
            "Lock with",
            "--no-telemetry",
            "--no-ddtrace",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["case", "plain"]
    assert "Lock with" in proc.stdout and "Machine:" in proc.stdout


def test_pipeline_median_reports_the_middle_run_and_every_sample() -> None:
    out = bench.pipeline_median(200, lambda: primitives.Lock(name="m"), 3)
    assert out["runs"] == 3 and len(out["samples"]) == 3
    rates = sorted(s["spans_per_second"] for s in out["samples"])
    assert out["spans_per_second"] == rates[1]
    assert out["spans_written"] == 200 and out["flushed"]
    assert not recorder.recording


def test_workload_compares_plain_with_run_and_traced_in_real_processes() -> None:
    """``bench --workload`` runs the workload program plain, under ``tracedsync
    run`` and with tracedsync's primitives (fresh processes, results checked
    equal), and reports ratios and peak memory."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "tracedsync", "bench", "--workload", "--json"),
            *("--items", "3000", "--workers", "3", "--repeat", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["items"] == 3000 and out["workers"] == 3 and out["repeat"] == 1
    assert out["side_by_side"] == (len(os.sched_getaffinity(0)) >= 2)
    assert set(out["modes"]) == {"run", "traced"}
    for m in out["modes"].values():
        assert len(m["wall_ratios"]) == 1 and m["wall_ratio"] > 0 and m["cpu_ratio"] > 0
        assert m["wall_seconds"] > 0 and m["plain_wall_seconds"] > 0
        assert m["peak_rss_kib"] > out["plain_peak_rss_kib"] // 2
    assert out["traced_peak_rss_kib_twice_the_items"] > 0


def test_workload_table_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """The workload comparison prints as a table; a count below 1 is a one-line error."""
    from tracedsync import bench_workload
    from tracedsync.cli import CliError

    mode = {
        "wall_ratio": 0.95,
        "cpu_ratio": 0.97,
        "wall_ratios": [0.95],
        "wall_seconds": 0.95,
        "plain_wall_seconds": 1.0,
        "peak_rss_kib": 34_000,
        "plain_peak_rss_kib": 23_000,
    }
    table = bench_workload.format_comparison(
        {
            "items": 10,
            "workers": 2,
            "repeat": 1,
            "side_by_side": True,
            "modes": {"run": mode, "traced": mode},
            "plain_peak_rss_kib": 23_000,
            "traced_peak_rss_kib": 34_000,
            "traced_peak_rss_kib_twice_the_items": 34_500,
        }
    )
    assert "run           1.000    0.950   0.950x   0.970x    33.2 MB" in table
    assert "with twice the items 33.7 MB" in table
    with pytest.raises(CliError, match="--items"):
        bench.command(_args("--workload", "--items", "0"))
