"""Start-up: what tracedsync adds to a Python process.

Each command is a fresh process, timed from spawn to exit; every
repetition runs every command once, in a rotating order, so each case's
two commands are compared at the same moment of a machine whose speed
drifts. A case's figure is the median over repetitions of (its command -
its baseline), with the quartiles of those differences as the spread.

- ``startup: tracedsync run``: ``python -m tracedsync run -- python -c
  'print(1)'`` (the default ``jsonfile`` exporter, into a temporary
  directory, and its summary at the end) against ``python -c 'print(1)'``;
- ``startup: traced child``: ``python -c 'print(1)'`` given the environment
  a program started by ``tracedsync run`` gives its children, against the
  same command plain. The environment is read from a real run's child
  (``tracedsync run -- python -c`` printing ``os.environ``), so it is
  exactly what the runner sets and nothing is copied from it; the runner
  process itself is not part of this figure: it is what every further
  Python process of a traced program (subprocess, multiprocessing spawn)
  costs;
- ``startup: traced child that records``: the same for a child holding a
  lock past the default hold threshold (15 ms, so one span and one
  ``long_hold`` event are exported), against that program plain;
- ``startup: import tracedsync``: ``python -c 'import tracedsync'`` against
  ``python -c 'import threading'``;
- ``startup: structlog's imports``: ``python -c 'import structlog,
  importlib.metadata'`` against ``python -c 'print(1)'``: the part of a
  traced child's figure that its log events' private structlog pipeline
  costs (``tracedsync.events``: both are imported when the pipeline is
  built, before the program's first line).

Children run with the bytecode cache allowed (``PYTHONDONTWRITEBYTECODE``
removed) after one unmeasured round that writes it: a user's installed
packages have their ``.pyc`` files, so compiling sources is not counted.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from tracedsync import primitives
from tracedsync.bench import targets
from tracedsync.bench.telemetry import count_spans
from tracedsync.bench.timing import Progress, Settings, quartiles, rotated

TRIVIAL = "print(1)"
RECORDING = (
    "import threading, time\nlock = threading.Lock()\nwith lock:\n    time.sleep(0.015)\nprint(1)"
)
#: A child of ``tracedsync run`` that prints its environment and whether it is traced.
PROBE = (
    "import json, os, tracedsync\n"
    "print(json.dumps({'installed': tracedsync.installed(), 'env': dict(os.environ)}))"
)

#: command name -> (python -c program, environment: "plain", "child" or "run")
COMMANDS: dict[str, tuple[str, str]] = {
    "python -c 'print(1)'": (TRIVIAL, "plain"),
    "tracedsync run -- python -c 'print(1)'": (TRIVIAL, "run"),
    "traced child: python -c 'print(1)'": (TRIVIAL, "child"),
    "python -c <hold a lock 15 ms>": (RECORDING, "plain"),
    "traced child: python -c <hold a lock 15 ms>": (RECORDING, "child"),
    "python -c 'import threading'": ("import threading", "plain"),
    "python -c 'import tracedsync'": ("import tracedsync", "plain"),
    "python -c 'import structlog, importlib.metadata'": (
        "import structlog, importlib.metadata",
        "plain",
    ),
}

#: case -> (command, baseline command)
CASES: dict[str, tuple[str, str]] = {
    "startup: tracedsync run": (
        "tracedsync run -- python -c 'print(1)'",
        "python -c 'print(1)'",
    ),
    "startup: traced child": ("traced child: python -c 'print(1)'", "python -c 'print(1)'"),
    "startup: traced child that records": (
        "traced child: python -c <hold a lock 15 ms>",
        "python -c <hold a lock 15 ms>",
    ),
    "startup: import tracedsync": ("python -c 'import tracedsync'", "python -c 'import threading'"),
    "startup: structlog's imports": (
        "python -c 'import structlog, importlib.metadata'",
        "python -c 'print(1)'",
    ),
}


def case_names() -> list[str]:
    return list(CASES)


def plain_environment() -> dict[str, str]:
    """This process's environment without tracedsync's variables, the
    bootstrap directory or ``PYTHONDONTWRITEBYTECODE``."""
    from tracedsync.runner import BOOTSTRAP_DIR

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRACEDSYNC_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    else:
        env.pop("PYTHONPATH", None)
    return env


def _run_argv(directory: str, program: str) -> list[str]:
    return [
        *(sys.executable, "-m", "tracedsync", "run", "--output-dir", directory, "--"),
        *(sys.executable, "-c", program),
    ]


def child_environment(plain: dict[str, str], directory: str) -> dict[str, str]:
    """The environment ``tracedsync run`` gives a program, read from a real run."""
    proc = subprocess.run(
        _run_argv(directory, PROBE),
        env=plain,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"tracedsync run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    probe = json.loads(lines[-1])
    if not probe["installed"]:
        raise RuntimeError("a child of tracedsync run was not traced")
    env: dict[str, str] = probe["env"]
    return env


def _time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from spawn to exit; the command must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
        check=False,
    )
    t1 = time.perf_counter()
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {tail}")
    return t1 - t0


def measure(names: list[str], settings: Settings, progress: Progress) -> dict[str, Any]:
    """The cases named, their commands interleaved; milliseconds."""
    repeat = settings.reps(7, 15)
    wanted = [c for c in COMMANDS if any(c in CASES[n] for n in names)]
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-startup-")
    try:
        plain = plain_environment()
        envs = {"plain": plain, "run": plain}
        if any(COMMANDS[c][1] == "child" for c in wanted):
            envs["child"] = child_environment(plain, directory)
        argvs = {
            c: (_run_argv(directory, program) if kind == "run" else [sys.executable, "-c", program])
            for c, (program, kind) in COMMANDS.items()
        }
        progress("start-up: one round to warm the caches ...")
        for c in wanted:
            _time(argvs[c], envs[COMMANDS[c][1]], directory)
        before = count_spans(directory)
        samples: dict[str, list[float]] = {c: [] for c in wanted}
        for rep in range(repeat):
            progress(f"start-up: round {rep + 1} of {repeat} ...")
            for c in rotated(wanted, rep):
                samples[c].append(_time(argvs[c], envs[COMMANDS[c][1]], directory) * 1000)
        recorded = count_spans(directory) - before
        if "traced child: python -c <hold a lock 15 ms>" in wanted and recorded < repeat:
            raise RuntimeError(f"the recording child wrote {recorded} spans in {repeat} runs")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    cases: dict[str, Any] = {}
    for name in names:
        command, baseline = CASES[name]
        diffs = [a - b for a, b in zip(samples[command], samples[baseline], strict=True)]
        lo, hi = quartiles(diffs)
        cases[name] = {
            "command": command,
            "baseline": baseline,
            "command_ms": round(statistics.median(samples[command]), 1),
            "baseline_ms": round(statistics.median(samples[baseline]), 1),
            "adds_ms": round(statistics.median(diffs), 1),
            "adds_quartiles_ms": [round(lo, 1), round(hi, 1)],
            "repeat": repeat,
            "samples_ms": {
                "command": [round(x, 1) for x in samples[command]],
                "baseline": [round(x, 1) for x in samples[baseline]],
            },
        }
    return {"implementation": primitives.IMPLEMENTATION, "cases": cases}


def figures(data: dict[str, Any]) -> list[targets.Figure]:
    return [
        targets.Figure(
            name, targets.target_id(name, data["implementation"]), c["adds_ms"], targets.CASES[name]
        )
        for name, c in data["cases"].items()
        if name in targets.CASES
    ]


def format_lines(data: dict[str, Any]) -> list[str]:
    head = f"{'start-up':<36}{'command':>10}{'baseline':>10}{'adds':>10}  {'spread':<18}target"
    lines = [head, "-" * len(head)]
    for name, c in data["cases"].items():
        lo, hi = c["adds_quartiles_ms"]
        target = targets.CASES.get(name)
        lines.append(
            f"{name:<36}{c['command_ms']:>7.0f} ms{c['baseline_ms']:>7.0f} ms"
            f"{c['adds_ms']:>+7.0f} ms  {f'{lo:+.0f} to {hi:+.0f} ms':<18}"
            f"{target.text() if target else '-'}"
        )
    repeats = sorted({c["repeat"] for c in data["cases"].values()})
    lines.append("")
    for name, c in data["cases"].items():
        lines.append(f"  {name}: {c['command']}  against  {c['baseline']}")
    lines.append(
        f"ms, wall time from spawn to exit, median of {'/'.join(map(str, repeats))} interleaved "
        "rounds; adds: the median of the per-round differences, spread: their quartiles; "
        f"traced children: the environment tracedsync run gives a program "
        f"({data['implementation']} implementation)."
    )
    return lines
