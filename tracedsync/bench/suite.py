"""Runs the sections ``tracedsync bench`` is asked for, then every target.

A section is a module with ``case_names()``, ``measure(names, settings,
progress)`` (a dict whose ``cases`` holds one entry per case measured),
``figures(data)`` (its figures against their targets) and
``format_lines(data)``; ``micro`` also has ``merge_case``. With ``--check``,
a case whose checked figure is over the limit is measured once more, with
twice the repetitions, before it can fail the check.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from tracedsync import patching, primitives
from tracedsync.bench import flood, micro, realworld, startup, targets, telemetry, workload
from tracedsync.bench.timing import Settings
from tracedsync.cli import CliError

SECTIONS: dict[str, ModuleType] = {
    "micro": micro,
    "realworld": realworld,
    "telemetry": telemetry,
    "startup": startup,
    "flood": flood,
    "workload": workload,
}
#: What ``tracedsync bench`` runs without --startup, --flood or --workload.
DEFAULT = ("micro", "realworld", "telemetry", "startup", "flood")
#: The option that runs each section alone.
OPTION = {"startup": "--startup", "flood": "--flood", "workload": "--workload"}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "tracedsync_implementation": primitives.IMPLEMENTATION,
        "bytecode_cache": not sys.flags.dont_write_bytecode,
    }


def sections(args: argparse.Namespace) -> list[str]:
    """The sections asked for, in the order they run."""
    alone = [s for s in ("startup", "flood") if getattr(args, s)]
    if args.workload:
        alone += ["realworld", "workload"]
    if alone:
        return alone
    return [s for s in DEFAULT if not (s == "telemetry" and args.no_telemetry)]


def selected(case: str, only: list[str] | None) -> bool:
    return not only or any(t.lower() in case.lower() for t in only)


def _settings(args: argparse.Namespace) -> Settings:
    for option in ("ops", "repeat"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise CliError(f"--{option} must be at least 1, not {value}")
    if args.items < 1 or args.workers < 1:
        raise CliError("--items and --workers must be at least 1")
    return Settings(
        quick=bool(args.quick),
        repeat=args.repeat,
        ops=args.ops,
        ddtrace=not args.no_ddtrace,
        items=args.items,
        workers=args.workers,
    )


def _preconditions() -> None:
    traced = tuple(c for c in (primitives.PureLock, primitives.CompiledLock) if c is not None)
    if type(primitives.Lock(name="bench_probe")) not in traced:
        raise CliError(
            "tracedsync is disabled here (TRACEDSYNC_DISABLED, or created from an excluded "
            "module): there is nothing to compare"
        )
    if patching.installed():
        raise CliError(
            "threading is patched in this process (under tracedsync run?): "
            "run tracedsync bench on its own, it compares against plain threading"
        )


def _figures(data: dict[str, dict[str, Any]]) -> list[targets.Figure]:
    return [f for name, d in data.items() for f in SECTIONS[name].figures(d)]


def _unmeasured(data: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """By section, the cases with a target that this run did not measure."""
    out: dict[str, list[str]] = {}
    for name, module in SECTIONS.items():
        measured = data.get(name, {}).get("cases", {})
        if name == "micro":
            with_target = [c.name for c in micro.all_cases() if c.style != "other"]
        else:
            with_target = [c for c in module.case_names() if c in targets.CASES]
        missing = [c for c in with_target if c not in measured]
        if missing:
            out[name] = missing
    return out


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    settings = _settings(args)
    _preconditions()
    chosen = sections(args)
    data: dict[str, dict[str, Any]] = {}
    for name in chosen:
        module = SECTIONS[name]
        cases = [c for c in module.case_names() if selected(c, args.only)]
        if cases:
            data[name] = module.measure(cases, settings, progress)
    if not data:
        only = " ".join(args.only or [])
        raise CliError(f"--only {only}: no case of {', '.join(chosen)} matches")
    figures = _figures(data)
    remeasured: list[str] = []
    if args.check:
        failing = {f.case for f in figures if f.fails_check}
        again_settings = dataclasses.replace(settings, factor=2)
        for name, d in data.items():
            cases = [c for c in d["cases"] if c in failing]
            if not cases:
                continue
            module = SECTIONS[name]
            progress(f"{', '.join(cases)}: over the --check limit, measuring again ...")
            again = module.measure(cases, again_settings, progress)
            merge = getattr(module, "merge_case", None)
            for case in cases:
                new = again["cases"][case]
                d["cases"][case] = merge(d["cases"][case], new) if merge else new
            remeasured += cases
        figures = _figures(data)
    return {
        "machine": machine(),
        "sections": data,
        "targets": [f.to_json() for f in figures],
        "unmeasured": _unmeasured(data),
        "check_margin": targets.CHECK_MARGIN,
        "checked": sorted(targets.CHECKED),
        "check_failures": targets.check_failures(figures),
        "remeasured": remeasured,
    }


def format_targets(rows: list[dict[str, Any]]) -> list[str]:
    head = f"{'target':<54}{'figure':>16}{'target':>18}{'share':>8}  status"
    lines = [head, "-" * (len(head) + 18)]
    for r in rows:
        if r["fails_check"]:
            status = "FAILS --check"
        elif r["met"]:
            status = "met"
        elif r["share"] > targets.CHECK_MARGIN:
            status = f"missed by over {targets.CHECK_MARGIN:g}x"
        else:
            status = "missed"
        if r["checked"]:
            status += ", checked"
        figure = targets.format_value(r["figure"], r["unit"])
        lines.append(f"{r['id']:<54}{figure:>16}{r['target']:>18}{r['share']:>8.2f}  {status}")
    return lines


def format_text(out: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, data in out["sections"].items():
        lines.extend(SECTIONS[name].format_lines(data))
        lines.append("")
    lines.append(
        "Targets: share = figure / target (target / figure for a throughput), above 1 missed; "
        f"--check enforces the checked ones and fails above {out['check_margin']:g}x "
        "(tracedsync.bench.targets.CHECKED)."
    )
    lines.extend(format_targets(out["targets"]))
    if out["unmeasured"]:
        counts = ", ".join(
            f"{name} {len(cases)}" + (f" ({OPTION[name]})" if name in OPTION else "")
            for name, cases in out["unmeasured"].items()
        )
        lines.append(f"Cases with a target not measured in this run, by section: {counts}.")
    m = out["machine"]
    lines.append("")
    lines.append(
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['system']}, "
        f"{m['implementation']} {m['python']}; tracedsync.Lock is {m['tracedsync_implementation']}."
    )
    if not m["bytecode_cache"]:
        lines.append(
            "PYTHONDONTWRITEBYTECODE is set: modules without a cached .pyc are compiled "
            "at every start, so the start-up figures are higher than a user's."
        )
    if out["remeasured"]:
        lines.append(f"Measured twice (over the limit at first): {', '.join(out['remeasured'])}.")
    if out["check_failures"]:
        lines.append("Over the --check limit:")
        lines.extend(f"  {f}" for f in out["check_failures"])
    else:
        lines.append(
            f"Every checked target measured here is within {out['check_margin']:g}x of its target."
        )
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    def progress(message: str) -> None:
        if not args.json:
            sys.stderr.write(f"  {message}\n")
            sys.stderr.flush()

    out = run(args, progress)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(format_text(out) + "\n")
    return 1 if args.check and out["check_failures"] else 0
