"""A realistic threaded workload, plain and traced: wall time, CPU and peak memory.

A producer feeds a bounded ``queue.Queue``; a pool of worker threads takes
items, does a little CPU work, consults a shared cache under a lock (a
bounded LRU, so some misses), updates shared counters under an ``RLock`` and
hands results to a collector thread through a second queue. Every primitive
here is an ordinary ``threading`` one (``queue.Queue`` makes its own).

``tracedsync bench --workload`` compares, each run a fresh process:

- ``plain``: the program as written;
- ``run``: the same program started by ``tracedsync run`` (threading patched
  at startup, jsonfile exporter, default thresholds);
- ``traced``: the workload's primitives replaced by tracedsync's by hand (the
  queues' mutex and conditions too), as a library user would.

Side by side: on a machine with two or more CPUs each traced run goes at the
same time as a plain one, each process pinned to a CPU of its own (swapped
every repetition). Both then see the same machine: on a shared VM whose
speed drifts by 2x over seconds, runs one after the other compare the
machine's moments, not the programs. (Unpinned, this workload's threads also
spend most of their time handing the GIL across CPUs: its wall time spreads
from 0.4 to 4.7 s for one mode.) A repetition is two such pairs, the CPUs
swapped, and its ratio the geometric mean of the two; the figure is the
median over repetitions.

Memory must stay bounded for a fixed number of primitives: the traced mode
also runs with twice the items, and both peaks are reported.

One run (one JSON line: items, wall and CPU seconds, peak RSS, checksum)::

    python -m tracedsync.bench.workload --items 100000 --mode plain
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from typing import Any

from tracedsync import primitives
from tracedsync.bench import targets
from tracedsync.bench.timing import Progress, Settings

STOP = object()


def _traced_queue(maxsize: int, name: str) -> queue.Queue[Any]:
    import tracedsync

    q: queue.Queue[Any] = queue.Queue(maxsize)
    q.mutex = tracedsync.Lock(name=f"{name}.mutex")
    q.not_empty = tracedsync.Condition(q.mutex, name=f"{name}.not_empty")
    q.not_full = tracedsync.Condition(q.mutex, name=f"{name}.not_full")
    q.all_tasks_done = tracedsync.Condition(q.mutex, name=f"{name}.all_tasks_done")
    return q


def peak_rss_kib() -> int:
    """This process's peak resident memory, KiB.

    ``VmHWM`` where Linux has it: ``getrusage``'s ``ru_maxrss`` keeps, across
    ``exec``, the peak of the process that forked it (the bench itself, over
    100 MB once it has made its real-workload cases' primitives).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def workload(items: int, workers: int, traced: bool) -> dict[str, Any]:
    prims: types.ModuleType
    if traced:
        import tracedsync as prims

        make_queue = _traced_queue
    else:
        prims = threading

        def make_queue(maxsize: int, name: str) -> queue.Queue[Any]:
            return queue.Queue(maxsize)

    work_q = make_queue(1000, "work")
    done_q = make_queue(1000, "done")
    cache: collections.OrderedDict[int, bytes] = collections.OrderedDict()
    cache_lock = prims.Lock()
    stats_lock = prims.RLock()
    stats = {"hits": 0, "misses": 0, "done": 0}
    results = {"count": 0, "checksum": 0}

    def producer() -> None:
        for i in range(items):
            work_q.put(i)
        for _ in range(workers):
            work_q.put(STOP)

    def worker() -> None:
        while True:
            item = work_q.get()
            if item is STOP:
                done_q.put(STOP)
                return
            key = item % 700
            with cache_lock:
                digest = cache.get(key)
                if digest is not None:
                    cache.move_to_end(key)
            if digest is None:
                digest = hashlib.sha256(str(key).encode() * 20).digest()
                with cache_lock:
                    cache[key] = digest
                    if len(cache) > 512:
                        cache.popitem(last=False)
                with stats_lock:
                    stats["misses"] += 1
            else:
                with stats_lock:
                    stats["hits"] += 1
            value = sum(digest[:8]) + item
            with stats_lock:
                stats["done"] += 1
            done_q.put(value)

    def collector() -> None:
        stopped = 0
        while stopped < workers:
            value = done_q.get()
            if value is STOP:
                stopped += 1
                continue
            results["count"] += 1
            results["checksum"] = (results["checksum"] + value) % (1 << 61)

    threads = [threading.Thread(target=producer), threading.Thread(target=collector)]
    threads += [threading.Thread(target=worker) for _ in range(workers)]
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    # CPU of the whole process (the pipeline thread included): steadier than
    # wall time on a shared machine, where the threads' scheduling dominates.
    cpu = time.process_time() - cpu0
    assert results["count"] == items == stats["done"], (results, stats)
    return {
        "items": items,
        "workers": workers,
        "wall_seconds": round(wall, 4),
        "cpu_seconds": round(cpu, 4),
        "peak_rss_kib": peak_rss_kib(),
        "checksum": results["checksum"],
    }


#: Modes compared against plain, in the order they run, and their cases.
MODES = {"run": "workload under tracedsync run", "traced": "workload with tracedsync's primitives"}


def case_names() -> list[str]:
    return list(MODES.values())


def _command(mode: str, items: int, workers: int) -> list[str]:
    one = [sys.executable, "-m", "tracedsync.bench.workload", "--items", str(items)]
    one += ["--workers", str(workers), "--mode"]
    if mode == "run":
        return [sys.executable, "-m", "tracedsync", "run", "--", *one, "plain"]
    return [*one, mode]


def _start(mode: str, items: int, workers: int, out_dir: str, cpu: int | None) -> Any:
    env = dict(os.environ, TRACEDSYNC_OUTPUT_DIR=out_dir)
    if mode != "plain":
        env.setdefault("TRACEDSYNC_EXPORTERS", "jsonfile")
    pin = None
    if cpu is not None:

        def pin() -> None:
            os.sched_setaffinity(0, {cpu})

    return subprocess.Popen(
        _command(mode, items, workers),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=pin,
    )


def _result(mode: str, proc: Any) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=1800)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"the {mode} workload run took over 30 minutes") from None
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the {mode} workload run failed ({proc.returncode}): {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _cpu_pair() -> tuple[int, int] | None:
    """Two CPUs this process may use, or None (no affinity API, or one CPU)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def _pair(
    mode: str, items: int, workers: int, out_dir: str, cpus: tuple[int, int] | None, turn: int
) -> dict[str, Any]:
    """One plain run and one ``mode`` run: at the same time on ``cpus`` (plain
    on the first), or one after the other, the first one alternating."""
    if cpus is not None:
        plain_proc = _start("plain", items, workers, out_dir, cpus[0])
        mode_proc = _start(mode, items, workers, out_dir, cpus[1])
        plain, traced = _result("plain", plain_proc), _result(mode, mode_proc)
    else:
        first, second = ("plain", mode) if turn % 2 == 0 else (mode, "plain")
        a = _result(first, _start(first, items, workers, out_dir, None))
        b = _result(second, _start(second, items, workers, out_dir, None))
        plain, traced = (a, b) if first == "plain" else (b, a)
    if traced["checksum"] != plain["checksum"]:
        raise RuntimeError(f"the {mode} run computed another result than plain")
    return {"plain": plain, mode: traced}


def compare(
    items: int,
    workers: int,
    repeat: int,
    progress: Progress = lambda _: None,
    modes: tuple[str, ...] = tuple(MODES),
) -> dict[str, Any]:
    """Each mode against plain, ``repeat`` times, side by side where possible.

    One repetition is two pairs, the CPUs swapped between them, and its
    ratio the geometric mean of theirs: a CPU slower than the other for a
    while (another tenant on its core) weighs on both sides equally.
    """
    cpus = _cpu_pair()
    out_dir = tempfile.mkdtemp(prefix="tracedsync-workload-")
    samples: dict[str, list[list[dict[str, Any]]]] = {m: [] for m in modes}
    double: dict[str, Any] | None = None
    try:
        for rep in range(repeat):
            for mode in modes:
                progress(f"workload: plain and {mode}, {rep + 1} of {repeat} ...")
                swapped = (cpus[1], cpus[0]) if cpus is not None else None
                samples[mode].append(
                    [
                        _pair(mode, items, workers, out_dir, cpus, 0),
                        _pair(mode, items, workers, out_dir, swapped, 1),
                    ]
                )
        if "traced" in modes:
            progress("workload: traced with twice the items ...")
            double = _result("traced", _start("traced", items * 2, workers, out_dir, None))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    def ratios(mode: str, key: str) -> list[float]:
        return [
            round(math.prod(p[mode][key] / p["plain"][key] for p in pairs) ** 0.5, 4)
            for pairs in samples[mode]
        ]

    cases: dict[str, Any] = {}
    for mode in modes:
        runs = [p for pairs in samples[mode] for p in pairs]
        cases[MODES[mode]] = {
            "mode": mode,
            "wall_ratio": statistics.median(ratios(mode, "wall_seconds")),
            "cpu_ratio": statistics.median(ratios(mode, "cpu_seconds")),
            "wall_ratios": ratios(mode, "wall_seconds"),
            "wall_seconds": statistics.median(r[mode]["wall_seconds"] for r in runs),
            "plain_wall_seconds": statistics.median(r["plain"]["wall_seconds"] for r in runs),
            "peak_rss_kib": max(r[mode]["peak_rss_kib"] for r in runs),
            "plain_peak_rss_kib": max(r["plain"]["peak_rss_kib"] for r in runs),
        }
    return {
        "implementation": primitives.IMPLEMENTATION,
        "items": items,
        "workers": workers,
        "repeat": repeat,
        "side_by_side": cpus is not None,
        "cases": cases,
        "plain_peak_rss_kib": max(m["plain_peak_rss_kib"] for m in cases.values()),
        "traced_peak_rss_kib_twice_the_items": double["peak_rss_kib"] if double else None,
    }


def measure(names: list[str], settings: Settings, progress: Progress) -> dict[str, Any]:
    modes = tuple(m for m, case in MODES.items() if case in names)
    return compare(settings.items, settings.workers, settings.reps(5, 5), progress, modes)


def figures(data: dict[str, Any]) -> list[targets.Figure]:
    return [
        targets.Figure(
            name,
            targets.target_id(name, data["implementation"]),
            c["wall_ratio"],
            targets.CASES[name],
        )
        for name, c in data["cases"].items()
    ]


def format_lines(data: dict[str, Any]) -> list[str]:
    how = (
        "side by side, each process pinned to a CPU of its own"
        if data["side_by_side"]
        else "one after the other (no two CPUs to pin to)"
    )
    lines = [
        f"Workload: {data['items']:,} items through a queue, {data['workers']} worker threads, "
        "a lock-protected cache and an RLock-protected tally;",
        f"each mode against plain {data['repeat']} times (two runs each, CPUs swapped), {how};",
        "wall and CPU: the median of the ratios mode / plain.",
        "",
        f"{'mode':<10}{'plain s':>9}{'mode s':>9}{'wall':>9}{'CPU':>9}{'peak RSS':>11}",
    ]
    for m in data["cases"].values():
        lines.append(
            f"{m['mode']:<10}{m['plain_wall_seconds']:>9.3f}{m['wall_seconds']:>9.3f}"
            f"{m['wall_ratio']:>8.3f}x{m['cpu_ratio']:>8.3f}x{m['peak_rss_kib'] / 1024:>8.1f} MB"
        )
    lines.append("")
    peak = f"Peak RSS: plain {data['plain_peak_rss_kib'] / 1024:.1f} MB"
    traced = data["cases"].get(MODES["traced"])
    if traced is not None and data["traced_peak_rss_kib_twice_the_items"] is not None:
        peak += (
            f"; traced {traced['peak_rss_kib'] / 1024:.1f} MB, with twice the items "
            f"{data['traced_peak_rss_kib_twice_the_items'] / 1024:.1f} MB "
            "(memory must not grow with the items)"
        )
    lines.append(peak + ".")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--mode", choices=["plain", "traced"], default="plain")
    args = parser.parse_args()
    traced = args.mode == "traced"
    if traced:
        import tracedsync

        tracedsync.configure()  # exporters and output directory from the environment
    result = workload(args.items, args.workers, traced)
    if traced:
        tracedsync.shutdown()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
