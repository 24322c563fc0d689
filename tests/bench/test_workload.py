"""``tracedsync bench --workload``: the realistic program in real processes, and §0's cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tracedsync.bench import realworld, workload


def test_workload_compares_plain_with_run_and_traced_in_real_processes() -> None:
    """``bench --workload`` runs the workload program plain, under ``tracedsync
    run`` and with tracedsync's primitives (fresh processes, results checked
    equal), reports ratios and peak memory, and the real-workload cases."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "tracedsync", "bench", "--workload", "--json"),
            *("--items", "3000", "--workers", "3", "--repeat", "1", "--ops", "30"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out["sections"]) == ["realworld", "workload"]
    assert list(out["sections"]["realworld"]["cases"]) == realworld.case_names()
    w = out["sections"]["workload"]
    assert w["items"] == 3000 and w["workers"] == 3 and w["repeat"] == 1
    assert w["side_by_side"] == (len(os.sched_getaffinity(0)) >= 2)
    assert list(w["cases"]) == workload.case_names()
    for m in w["cases"].values():
        assert len(m["wall_ratios"]) == 1 and m["wall_ratio"] > 0 and m["cpu_ratio"] > 0
        assert m["wall_seconds"] > 0 and m["plain_wall_seconds"] > 0
        assert m["peak_rss_kib"] > w["plain_peak_rss_kib"] // 2
    assert w["traced_peak_rss_kib_twice_the_items"] > 0
    ids = {t["id"].rsplit(" [", 1)[0] for t in out["targets"]}
    assert set(workload.case_names()) <= ids


def test_workload_table() -> None:
    """The workload comparison prints as a table with the memory line."""
    mode = {
        "wall_ratio": 0.95,
        "cpu_ratio": 0.97,
        "wall_ratios": [0.95],
        "wall_seconds": 0.95,
        "plain_wall_seconds": 1.0,
        "peak_rss_kib": 34_000,
        "plain_peak_rss_kib": 23_000,
    }
    lines = workload.format_lines(
        {
            "implementation": "compiled",
            "items": 10,
            "workers": 2,
            "repeat": 1,
            "side_by_side": True,
            "cases": {case: {**mode, "mode": m} for m, case in workload.MODES.items()},
            "plain_peak_rss_kib": 23_000,
            "traced_peak_rss_kib_twice_the_items": 34_500,
        }
    )
    table = "\n".join(lines)
    assert "run           1.000    0.950   0.950x   0.970x    33.2 MB" in table
    assert "with twice the items 33.7 MB" in table
