"""``tracedsync bench``: sections, every target with its figure, and ``--check``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import pytest

from tracedsync import patching, primitives
from tracedsync.bench import micro, suite, targets
from tracedsync.cli import CliError, build_parser


def _args(*argv: str) -> argparse.Namespace:
    full = ["bench", *argv]
    return build_parser(full).parse_args(full)


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert suite.command(_args("--json", "--no-ddtrace", *argv)) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def _every_target_id() -> set[str]:
    ids = set()
    for impl in ("compiled", "pure"):
        for case in micro.all_cases():
            if targets.micro_target(case.primitive, case.style, impl) is not None:
                ids.add(targets.target_id(case.name, impl))
        ids.update(targets.target_id(case, impl) for case in targets.CASES)
    return ids


def test_checked_names_real_targets() -> None:
    """Every id in CHECKED is the id of a target a run can produce (no typo goes unenforced)."""
    assert _every_target_id() >= targets.CHECKED


def test_every_section_names_its_cases_with_targets() -> None:
    """Every case of targets.CASES belongs to a section (so it can be measured)."""
    names = {c for module in suite.SECTIONS.values() for c in module.case_names()}
    assert set(targets.CASES) - {"Lock with vs ddtrace"} <= names


def _figure(case_id: str, value: float, limit: float, higher: bool = False) -> targets.Figure:
    case = case_id.rsplit(" [", 1)[0]
    return targets.Figure(case, case_id, value, targets.Target(limit, "x", higher))


def test_check_fails_only_a_checked_target_beyond_the_margin() -> None:
    """A checked figure fails only above CHECK_MARGIN x its target; an unchecked one never."""
    checked = sorted(targets.CHECKED)[0]
    margin = targets.CHECK_MARGIN
    assert targets.check_failures([_figure(checked, 1.2 * margin * 0.99, 1.2)]) == []
    (failure,) = targets.check_failures([_figure(checked, 1.2 * margin * 1.01, 1.2)])
    assert failure.startswith(f"{checked}: ") and "fails above 2x" in failure
    unchecked = _figure("threading.Lock() creation [nowhere]", 100.0, 2.0)
    assert not unchecked.checked and not unchecked.met and not unchecked.fails_check
    assert targets.check_failures([unchecked]) == []


def test_a_floor_target_is_missed_below_it() -> None:
    """A throughput target's share is target / figure."""
    f = _figure("pipeline throughput [x]", 15_000, 30_000, higher=True)
    assert f.share == pytest.approx(2.0) and not f.met


def test_the_run_prints_every_measured_target(capsys: pytest.CaptureFixture[str]) -> None:
    """Text output: each section's table, then every target with figure, share and status."""
    argv = ["--only", "Lock with", "--only", "creation", "--ops", "40", "--repeat", "1"]
    assert suite.command(_args("--no-ddtrace", *argv)) == 0
    out = capsys.readouterr().out
    assert "Lock with [pure]" in out and "<= 3.50x" in out
    assert "threading.Lock() creation [" in out and "<= 2.00 us" in out
    assert "queue.Queue() creation [" in out
    assert "Machine:" in out and "startup 3 (--startup)" in out


def test_json_has_every_figure_against_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives the sections, the assessed targets and the check's verdict."""
    out = _run_json(capsys, "--only", "RLock with", "--ops", "40", "--repeat", "1")
    assert set(out["sections"]) == {"micro"}
    ids = {t["id"] for t in out["targets"]}
    assert "RLock with [pure]" in ids
    for t in out["targets"]:
        assert t["share"] == pytest.approx(t["figure"] / t["limit"], rel=0.02)
        assert t["checked"] == (t["id"] in targets.CHECKED)
    assert out["check_margin"] == targets.CHECK_MARGIN
    assert out["checked"] == sorted(targets.CHECKED)
    assert "workload" in out["unmeasured"] and "startup" in out["unmeasured"]


def _slow(case: micro.Case, columns: Any, ops: int, repeat: int) -> micro.Result:
    values: dict[str, float | None] = {"plain": 100.0, "pure": 5000.0}
    if primitives.CompiledLock is not None:
        values["compiled"] = 100.0
    return micro.Result(case.name, case.primitive, case.style, values, {})


def test_check_flag_sets_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --check a checked ratio over the limit exits 1; without it, 0; the text says why."""
    monkeypatch.setattr(micro, "measure_case", _slow)
    argv = ["--only", "Lock with", "--no-ddtrace"]
    assert suite.command(_args("--check", *argv)) == 1
    out = capsys.readouterr().out
    assert "Over the --check limit" in out and "Measured twice" in out
    assert "Lock with [pure]: 50.00x" in out
    assert suite.command(_args(*argv)) == 0


def test_check_measures_again_before_failing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A case over the limit once (noise) but not when measured again passes --check."""
    calls: list[tuple[str, int]] = []

    def noisy_once(case: micro.Case, columns: Any, ops: int, repeat: int) -> micro.Result:
        calls.append((case.name, repeat))
        result = _slow(case, columns, ops, repeat)
        if len(calls) > 1:
            result.ns["pure"] = 250.0
        return result

    monkeypatch.setattr(micro, "measure_case", noisy_once)
    argv = ["--check", "--only", "Lock with", "--no-ddtrace", "--repeat", "3"]
    assert suite.command(_args(*argv)) == 0
    assert calls == [("Lock with", 3), ("RLock with", 3), ("Lock with", 6)]
    assert "Measured twice (over the limit at first): Lock with." in capsys.readouterr().out


def test_only_matching_nothing_is_a_one_line_error() -> None:
    """--only that selects no case names itself and fails with exit code 2."""
    with pytest.raises(CliError, match="--only nothing-like-this: no case of"):
        suite.run(_args("--only", "nothing-like-this"), lambda _: None)


def test_bad_counts_are_one_line_errors() -> None:
    """--ops, --repeat, --items and --workers below 1 are refused before measuring."""
    for argv in (("--ops", "0"), ("--repeat", "-1"), ("--workload", "--items", "0")):
        with pytest.raises(CliError, match="must be at least 1"):
            suite.run(_args(*argv), lambda _: None)


def test_refuses_to_run_with_threading_patched() -> None:
    """Under install() there is no plain side: one line, no measurement."""
    patching.install()
    try:
        with pytest.raises(CliError, match="threading is patched in this process"):
            suite.run(_args("--only", "Lock with"), lambda _: None)
    finally:
        patching.uninstall()


def test_sections_chosen_by_the_options() -> None:
    """Default: all but the workload; --startup, --flood, --workload run alone."""
    assert suite.sections(_args()) == list(suite.DEFAULT)
    assert "telemetry" not in suite.sections(_args("--no-telemetry"))
    assert suite.sections(_args("--startup")) == ["startup"]
    assert suite.sections(_args("--flood", "--startup")) == ["startup", "flood"]
    assert suite.sections(_args("--workload")) == ["realworld", "workload"]


def test_table_and_module_entry_point() -> None:
    """python -m tracedsync bench prints the tables with the machine line (small run)."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "tracedsync", "bench", "--ops", "40", "--repeat", "1"),
            *("--only", "Lock with", "--no-ddtrace"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["case", "plain"]
    assert "Lock with" in proc.stdout and "Machine:" in proc.stdout
