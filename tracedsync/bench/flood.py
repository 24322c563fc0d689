"""A flood: every threshold at 0, many threads on a few locks.

1,000 threads each do 200 ``with lock:`` on one of 8 locks, started
together (a barrier), with ``install()``, thresholds 0 and the ``jsonfile``
exporter: every acquisition is a span candidate. The same run with
``install()`` and no exporter is the baseline. The figure is the app's
wall time (barrier released to the last thread joined; the flush
afterwards is printed apart) over the baseline's in the same repetition,
per implementation; target 3x. The figure is the *worst* repetition, not
the median: a flood must stay within 3x every time. Every ratio is
printed, and each run's wall and CPU time: on a shared machine a run of
either mode can take several times its usual time, which a ratio of two
runs shows as a bad (or good) flood. The span budget
(``max_spans_per_second``) is left at its default: cutting the flood
before it costs the app is its job.

Each run is a fresh process (``python -m tracedsync.bench.flood``, the pure
one with ``TRACEDSYNC_PURE_PYTHON=1``), as a program's would be: the first
flood a process sees is the one whose budget windows all start empty, so
runs in one long-lived process would measure only the later kind. Each run
also reports what the budget did: the holds that reached the recorder
(every hold minus those the hot path compared and kept out), the records
produced and suppressed, the process's CPU time and context switches
during the app's run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import tracedsync
from tracedsync import _stdlib, patching, primitives
from tracedsync.bench import targets
from tracedsync.bench.telemetry import accounting_now, accounting_since
from tracedsync.bench.timing import Progress, Settings, quartiles, rotated, traced_implementations

THREADS = 1000
OPS = 200
LOCKS = 8
MODES = ("jsonfile", "no exporter")


def case_names() -> list[str]:
    return ["flood"]


def flood_once(
    exporter: bool, threads: int = THREADS, ops: int = OPS, locks: int = LOCKS
) -> dict[str, Any]:
    """One flood in this process with its implementation's ``Lock``: the
    app's wall time, the flush's, and the record counts."""
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-flood-")
    try:
        patching.install(
            exporters=["jsonfile"] if exporter else [],
            output_dir=directory,
            wait_threshold_ms=0,
            hold_threshold_ms=0,
        )
        pool = [primitives.Lock(name=f"flood_{i}") for i in range(locks)]
        if not all(type(lock) is primitives.Lock for lock in pool):
            raise RuntimeError("the flood's locks are not traced")
        start = _stdlib.Barrier(threads + 1)

        def work(lock: Any) -> None:
            start.wait()
            for _ in range(ops):
                with lock:
                    pass

        workers = [
            threading.Thread(target=work, args=(pool[i % locks],), daemon=True)
            for i in range(threads)
        ]
        for w in workers:
            w.start()
        before = accounting_now()
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join(600)
        t1 = time.perf_counter()
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        if any(w.is_alive() for w in workers):
            raise RuntimeError("the flood's threads did not all finish")
        flushed = tracedsync.flush(120)
        t2 = time.perf_counter()
        counts = accounting_since(before)
        stats = [lock.statistics() for lock in pool]
        holds = sum(st.acquisitions for st in stats)
        counts["suppressed"] = sum(st.spans_suppressed for st in stats)
        # With no exporter nothing is recorded: no hold reaches the recorder.
        counts["to_recorder"] = holds - sum(lock._hsup for lock in pool) if exporter else 0
        counts["contentions"] = sum(st.contentions for st in stats)
    finally:
        patching.uninstall()
        tracedsync.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "implementation": primitives.IMPLEMENTATION,
        "app_seconds": round(t1 - t0, 4),
        "flush_seconds": round(t2 - t1, 4),
        "flushed": flushed,
        "app_cpu_seconds": round(
            usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime, 4
        ),
        "context_switches": usage1.ru_nvcsw + usage1.ru_nivcsw - usage0.ru_nvcsw - usage0.ru_nivcsw,
        "accounting": counts,
    }


def run_child(
    implementation: str, exporter: bool, threads: int = THREADS, ops: int = OPS, locks: int = LOCKS
) -> dict[str, Any]:
    """:func:`flood_once` in a fresh process of ``implementation``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    if implementation == "pure":
        env["TRACEDSYNC_PURE_PYTHON"] = "1"
    argv = [sys.executable, "-m", "tracedsync.bench.flood", "--threads", str(threads)]
    argv += ["--ops", str(ops), "--locks", str(locks)] + (["--jsonfile"] if exporter else [])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the flood process failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if result["implementation"] != implementation:
        raise RuntimeError(f"the {implementation} flood ran {result['implementation']}")
    return result


def measure(
    names: list[str],
    settings: Settings,
    progress: Progress,
    threads: int = THREADS,
    ops: int = OPS,
    locks: int = LOCKS,
) -> dict[str, Any]:
    """Both implementations, both modes, each run a fresh process, interleaved."""
    repeat = settings.reps(5, 9)
    runs = [(impl, mode) for impl, _, _ in traced_implementations() for mode in MODES]
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        impl: {m: [] for m in MODES} for impl, _ in runs
    }
    for rep in range(repeat):
        for impl, mode in rotated(runs, rep):
            progress(f"flood: {impl}, {mode}, {rep + 1} of {repeat} ...")
            one = run_child(impl, mode == "jsonfile", threads, ops, locks)
            samples[impl][mode].append(one)
    out: dict[str, Any] = {}
    for impl, by_mode in samples.items():
        loaded = [r["app_seconds"] for r in by_mode["jsonfile"]]
        base = [r["app_seconds"] for r in by_mode["no exporter"]]
        ratios = [a / b for a, b in zip(loaded, base, strict=True)]
        out[impl] = {
            "jsonfile_seconds": statistics.median(loaded),
            "no_exporter_seconds": statistics.median(base),
            "worst_ratio": round(max(ratios), 3),
            "median_ratio": round(statistics.median(ratios), 3),
            "ratio_quartiles": [round(q, 3) for q in quartiles(ratios)],
            "ratios": [round(r, 3) for r in ratios],
            "flush_seconds": statistics.median(r["flush_seconds"] for r in by_mode["jsonfile"]),
            "accounting": max(
                (r["accounting"] for r in by_mode["jsonfile"]), key=lambda a: a["produced"]
            ),
            "samples": by_mode,
        }
    return {
        "threads": threads,
        "ops": ops,
        "locks": locks,
        "repeat": repeat,
        "cases": {"flood": out},
    }


def figures(data: dict[str, Any]) -> list[targets.Figure]:
    flood = data["cases"].get("flood", {})
    return [
        targets.Figure(
            "flood", targets.target_id("flood", impl), c["worst_ratio"], targets.CASES["flood"]
        )
        for impl, c in flood.items()
    ]


def format_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"Flood: {data['threads']:,} threads x {data['ops']} `with lock` on {data['locks']} locks, "
        f"install(), thresholds 0; app wall time in {data['repeat']} interleaved repetitions, "
        "each run a fresh process; x: jsonfile / no exporter in one repetition (the figure is "
        "the worst):"
    ]
    for impl, c in data["cases"].get("flood", {}).items():
        acc = c["accounting"]
        lo, hi = c["ratio_quartiles"]
        lines.append(
            f"  {impl:<9} jsonfile {c['jsonfile_seconds']:.2f} s, no exporter "
            f"{c['no_exporter_seconds']:.2f} s (medians): worst {c['worst_ratio']:.2f}x, "
            f"median {c['median_ratio']:.2f}x (quartiles {lo:.2f}-{hi:.2f}x); "
            f"flush {c['flush_seconds']:.2f} s; at most {acc['produced']:,} records, "
            f"{acc['exported']:,} exported, {acc['dropped']:,} dropped"
        )
        lines.append(f"    every x, sorted: {' '.join(f'{r:.2f}' for r in sorted(c['ratios']))}")
        for mode, runs in c["samples"].items():
            lines.append(f"    {mode}, each run: " + "; ".join(_run_line(r) for r in runs))
    return lines


def _run_line(run: dict[str, Any]) -> str:
    """One run: app seconds, CPU seconds, and what the budget did."""
    acc = run["accounting"]
    return (
        f"{run['app_seconds']:.2f} s (cpu {run['app_cpu_seconds']:.2f}), "
        f"{acc['to_recorder']:,} to the recorder, {acc['produced']:,} produced, "
        f"{acc['suppressed']:,} suppressed"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="one flood, printed as a JSON line")
    parser.add_argument("--jsonfile", action="store_true", help="export to jsonfile")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--ops", type=int, default=OPS)
    parser.add_argument("--locks", type=int, default=LOCKS)
    args = parser.parse_args()
    print(json.dumps(flood_once(args.jsonfile, args.threads, args.ops, args.locks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
