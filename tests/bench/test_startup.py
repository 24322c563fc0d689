"""``tracedsync bench --startup``: real processes, traced children really traced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tracedsync.bench import startup
from tracedsync.runner import BOOTSTRAP_DIR


def test_plain_environment_has_nothing_of_tracedsync(monkeypatch: Any) -> None:
    """The baseline's environment drops TRACEDSYNC_* and the bootstrap directory."""
    monkeypatch.setenv("TRACEDSYNC_RUN", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([BOOTSTRAP_DIR, "/somewhere"]))
    env = startup.plain_environment()
    assert not [k for k in env if k.startswith("TRACEDSYNC_")]
    assert env["PYTHONPATH"] == "/somewhere" and "PYTHONDONTWRITEBYTECODE" not in env


def test_child_environment_is_what_tracedsync_run_gives(tmp_path: Any) -> None:
    """The traced children's environment comes from a real run's child."""
    env = startup.child_environment(startup.plain_environment(), str(tmp_path))
    assert env["TRACEDSYNC_RUN"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == BOOTSTRAP_DIR
    assert env["TRACEDSYNC_OUTPUT_DIR"] == str(tmp_path)


def test_startup_prints_the_three_figures_against_plain_python() -> None:
    """`bench --startup --json`: every case with its command, baseline and difference."""
    proc = subprocess.run(
        [sys.executable, "-m", "tracedsync", "bench", "--startup", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cases = out["sections"]["startup"]["cases"]
    assert list(cases) == startup.case_names()
    for c in cases.values():
        assert c["command_ms"] > 0 and c["baseline_ms"] > 0
        assert abs(c["adds_ms"] - (c["command_ms"] - c["baseline_ms"])) < 0.2  # one round
    ids = {t["id"].rsplit(" [", 1)[0] for t in out["targets"]}
    assert ids == {"startup: tracedsync run", "startup: traced child", "startup: import tracedsync"}
