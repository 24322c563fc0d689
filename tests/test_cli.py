"""The command line imports a subcommand's module only when that subcommand runs."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tracedsync import cli

#: Modules a process that runs a program under ``tracedsync run`` must not load.
HEAVY = ("tracedsync.bench", "tracedsync.analysis", "tracedsync.report", "opentelemetry.sdk")
HEAVY += ("structlog",)

#: Runs the command line in a fresh interpreter, then prints its exit code
#: and every module it loaded (the runner's child is another process).
SCRIPT = """
import json, sys
from tracedsync.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _cli_modules(*argv: str, cwd: str | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    result["stdout"] = proc.stdout
    result["stderr"] = proc.stderr
    return result


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)] + [
        m for m in modules if m.startswith("tracedsync.report_")
    ]


def test_help_lists_every_subcommand_without_importing_any() -> None:
    """``tracedsync --help`` names run, report and bench from the table alone."""
    out = _cli_modules("--help")
    assert out["code"] == 0
    for name, (_, help_text) in cli.SUBCOMMANDS.items():
        assert name in out["stdout"] and help_text in out["stdout"]
    loaded = [m for name, (m, _) in cli.SUBCOMMANDS.items() if m in out["modules"]]
    assert loaded == [] and _heavy(out["modules"]) == []


def test_run_help_is_complete_and_imports_neither_report_nor_bench() -> None:
    """``tracedsync run --help`` shows the runner's options; bench and report stay unloaded."""
    out = _cli_modules("run", "--help")
    assert out["code"] == 0
    assert "--exporters" in out["stdout"] and "--dump-on-signal" in out["stdout"]
    assert "tracedsync.runner" in out["modules"]
    assert _heavy(out["modules"]) == []


def test_bench_help_imports_only_the_bench_package() -> None:
    """``tracedsync bench --help`` loads the bench's arguments, not its measuring modules."""
    out = _cli_modules("bench", "--help")
    assert out["code"] == 0 and "--startup" in out["stdout"] and "--flood" in out["stdout"]
    assert "tracedsync.bench" in out["modules"]
    assert "tracedsync.bench.suite" not in out["modules"]
    assert "tracedsync.bench.micro" not in out["modules"]


def test_run_loads_no_report_bench_sdk_or_structlog(tmp_path: Any) -> None:
    """``tracedsync run --exporters console -- python -c pass``: the runner process
    imports none of the report, the bench, the OpenTelemetry SDK or structlog."""
    out = _cli_modules(
        "run", "--exporters", "console", "--", sys.executable, "-c", "pass", cwd=str(tmp_path)
    )
    assert out["code"] == 0, out["stderr"]
    assert "tracedsync.runner" in out["modules"]
    assert _heavy(out["modules"]) == []


def test_run_with_the_default_exporter_loads_no_report_bench_sdk_or_structlog(
    tmp_path: Any,
) -> None:
    """``tracedsync run -- python -c pass`` (jsonfile, the default): the runner process
    imports none of the report, the bench, the OpenTelemetry SDK or structlog, nor
    OpenTelemetry or an exporter at all (the child exports)."""
    out = _cli_modules("run", "--", sys.executable, "-c", "pass", cwd=str(tmp_path))
    assert out["code"] == 0, out["stderr"]
    assert _heavy(out["modules"]) == []
    assert [m for m in out["modules"] if m.startswith(("opentelemetry", "tracedsync.exp"))] == []


def test_chosen_subcommand_is_the_first_argument_that_is_not_an_option() -> None:
    """Top-level options take no value, so the first bare argument is the subcommand."""
    assert cli.chosen_subcommand(["run", "--", "python", "bench"]) == "run"
    assert cli.chosen_subcommand(["--version"]) is None
    assert cli.chosen_subcommand(["-h", "bench", "--quick"]) == "bench"
    assert cli.chosen_subcommand(["nonsense", "run"]) is None


def test_only_the_chosen_subcommand_gets_its_arguments() -> None:
    """build_parser(argv) parses the chosen subcommand's options; no subcommand is an error."""
    args = cli.build_parser(["bench", "--quick"]).parse_args(["bench", "--quick"])
    assert args.quick and args.subcommand == "bench" and callable(args._command)


def test_no_subcommand_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """``tracedsync`` alone prints its usage and says a command is required."""
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "a command is required (run, report, bench, dashboard)" in err
