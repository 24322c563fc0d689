"""Run the scenario programs under ``tracedsync run``, all at once, and read
what each left: its exit code and output, ``tracedsync report --format
json`` of its directory, its log events and its spans.

Each program is a separate process, started the way a user starts one::

    python -m tracedsync run --output-dir DIR [options] -- python program.py [args]

A program that hangs for good (a deadlock, an event never set) is ended as
a user ends it: once the finding it hangs for is in its log file, its
``tracedsync run`` gets a SIGTERM (which it forwards), and exits 143. The
programs run a few at a time, each in a worker thread of the test process
that waits for it; a test asks for one outcome and waits only for that one.

The implementation under test is the test process's: ``TRACEDSYNC_PURE_PYTHON``
passes to the programs, every other ``TRACEDSYNC_*`` and ``OTEL_*`` variable
does not.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracedsync.testing import wait_until

PROGRAMS = Path(__file__).resolve().parent / "programs"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: How long any one step (a program, a report) may take before the test fails.
LIMIT_S = 60.0
#: Every program gets these (its scenario may add or override): the watchdog
#: looks every 200 ms, so a deadlock is reported within a fraction of a second.
COMMON_ENV = {"TRACEDSYNC_WATCHDOG_INTERVAL_MS": "200"}
#: ``tracedsync run``'s exit code for a program ended by SIGTERM.
KILLED = 128 + signal.SIGTERM
#: Programs running at once: most of their time is spent blocked, but on a
#: two-core machine many more would starve each other (a thread start once
#: took 7 s with sixteen at once, and a healthy program's waits became stuck).
CONCURRENCY = 4


@dataclass(frozen=True)
class Scenario:
    """One run of one program."""

    program: str
    args: tuple[str, ...] = ()
    #: ``tracedsync run`` options (``--lock-order``, thresholds...).
    options: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    #: A program that hangs for good: SIGTERM once this event is in its logs
    #: (``kill_count`` times).
    kill_after: str | None = None
    kill_count: int = 1

    def path(self) -> Path:
        local = PROGRAMS / self.program
        return local if local.exists() else EXAMPLES / self.program


@dataclass
class Outcome:
    """What one run left."""

    returncode: int
    stdout: str
    stderr: str
    out_dir: Path
    report: dict[str, Any]
    events: list[dict[str, Any]]
    spans: list[dict[str, Any]]

    def named(self, event: str) -> list[dict[str, Any]]:
        """The log events called ``event`` (from logs-*.jsonl), in order."""
        return [e for e in self.events if e.get("event") == event]

    def findings(self, event: str) -> list[dict[str, Any]]:
        """The report's findings called ``event``."""
        return [f for f in self.report["findings"] if f["event"] == event]

    def spans_named(self, name: str) -> list[dict[str, Any]]:
        """Spans called ``name``; their attributes flattened under ``attrs``."""
        return [s for s in self.spans if s["name"] == name]

    def primitive(self, name: str, section: str = "primitives") -> dict[str, Any]:
        """The report's row called ``name`` in ``primitives`` or ``idle_waits``."""
        rows = [p for p in self.report[section] if p["name"] == name]
        assert len(rows) == 1, (name, [p["name"] for p in self.report[section]])
        return rows[0]

    def report_again(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``tracedsync report ARGS DIR`` (e.g. a ``--fail-on`` gate)."""
        return subprocess.run(
            [sys.executable, "-m", "tracedsync", "report", *args, str(self.out_dir)],
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
            env=environment({}),
        )

    def describe(self) -> str:
        """For assertion messages: what the program printed."""
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEDSYNC_", "OTEL_")) or k == "TRACEDSYNC_PURE_PYTHON"
    }
    env.update(extra)
    return env


def _value(v: Mapping[str, Any]) -> Any:
    (kind, raw), *_ = v.items()
    if kind == "intValue":
        return int(raw)
    if kind == "doubleValue":
        return float(raw)
    if kind == "arrayValue":
        return [_value(x) for x in raw.get("values", [])]
    return raw


def read_spans(out_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(out_dir.glob("spans-*.jsonl")):
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        span["attrs"] = {a["key"]: _value(a["value"]) for a in span["attributes"]}
                        spans.append(span)
    return spans


def read_events(out_dir: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(out_dir.glob("logs-*.jsonl")):
        events.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return events


class _LogWatch:
    """A predicate: ``event`` is in the directory's log files ``count`` times
    (they are read again only when they have grown)."""

    def __init__(self, out_dir: Path, event: str, count: int) -> None:
        self.out_dir = out_dir
        self.needle = f'"event":"{event}"'
        self.count = count
        self.sizes: dict[Path, int] = {}
        self.found: dict[Path, int] = {}

    def __call__(self) -> bool:
        for path in self.out_dir.glob("logs-*.jsonl"):
            size = path.stat().st_size
            if self.sizes.get(path) != size:
                self.sizes[path] = size
                self.found[path] = path.read_text().count(self.needle)
        return sum(self.found.values()) >= self.count


def run(name: str, scenario: Scenario, base: Path) -> Outcome:
    """Run ``scenario`` to its end and read what it left (in ``base/name``)."""
    home = base / name
    home.mkdir(parents=True)
    out_dir = home / "out"
    command = [
        sys.executable,
        "-m",
        "tracedsync",
        "run",
        "--output-dir",
        str(out_dir),
        *scenario.options,
        "--",
        sys.executable,
        str(scenario.path()),
        *scenario.args,
    ]
    env = environment({**COMMON_ENV, **scenario.env})
    with open(home / "stdout", "w+") as stdout, open(home / "stderr", "w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=home)
        try:
            if scenario.kill_after is not None:
                try:
                    watch = _LogWatch(out_dir, scenario.kill_after, scenario.kill_count)
                    wait_until(watch, timeout=LIMIT_S)
                finally:
                    process.send_signal(signal.SIGTERM)  # to tracedsync run: it forwards
            returncode = process.wait(LIMIT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(LIMIT_S)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    report = subprocess.run(
        [sys.executable, "-m", "tracedsync", "report", "--format", "json", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        env=environment({}),
    )
    assert report.returncode == 0, report.stderr
    return Outcome(
        returncode,
        out,
        err,
        out_dir,
        json.loads(report.stdout),
        read_events(out_dir),
        read_spans(out_dir),
    )


class Runs:
    """The scenarios asked for, started ``CONCURRENCY`` at a time in the order
    given; :meth:`outcome` waits for one."""

    def __init__(self, scenarios: Mapping[str, Scenario], names: Iterable[str], base: Path):
        wanted = list(dict.fromkeys(names))
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENCY)
        self._futures = {
            name: self._pool.submit(run, name, scenarios[name], base) for name in wanted
        }

    def outcome(self, name: str) -> Outcome:
        return self._futures[name].result(timeout=3 * LIMIT_S)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
