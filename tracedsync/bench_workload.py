"""A realistic threaded workload, plain and traced: wall time and peak memory.

A producer feeds a bounded ``queue.Queue``; a pool of worker threads takes
items, does a little CPU work, consults a shared cache under a lock (a
bounded LRU, so some misses), updates shared counters under an ``RLock`` and
hands results to a collector thread through a second queue. Every primitive
here is an ordinary ``threading`` one (``queue.Queue`` makes its own).

Run once (prints one JSON line: items, wall and CPU seconds, peak RSS)::

    python benchmarks/realistic_workload.py --items 200000

Compare, interleaving runs in fresh processes (median of --repeat)::

    python benchmarks/realistic_workload.py --compare --items 200000 --repeat 5

Modes compared:

- ``plain``: as written;
- ``traced``: the same program with the workload's primitives replaced by
  tracedsync's by hand (the queues' mutex and conditions too), jsonfile
  exporter, default thresholds — what ``tracedsync.install()`` will do;
- ``run``: the program started by ``tracedsync run`` (threading patched at
  startup), when this tracedsync has the ``run`` command.

Memory must stay bounded for a fixed number of primitives: ``--compare``
also runs the traced mode with twice the items and reports the peak RSS of
both.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import json
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
from typing import Any

STOP = object()


def _traced_queue(maxsize: int, name: str) -> queue.Queue[Any]:
    import tracedsync

    q: queue.Queue[Any] = queue.Queue(maxsize)
    q.mutex = tracedsync.Lock(name=f"{name}.mutex")  # type: ignore[assignment]
    q.not_empty = tracedsync.Condition(q.mutex, name=f"{name}.not_empty")  # type: ignore[assignment]
    q.not_full = tracedsync.Condition(q.mutex, name=f"{name}.not_full")  # type: ignore[assignment]
    q.all_tasks_done = tracedsync.Condition(q.mutex, name=f"{name}.all_tasks_done")  # type: ignore[assignment]
    return q


def workload(items: int, workers: int, traced: bool) -> dict[str, Any]:
    if traced:
        import tracedsync as prims

        make_queue = _traced_queue
    else:
        prims = threading  # type: ignore[assignment]

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
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "checksum": results["checksum"],
    }


def _run_child(mode: str, items: int, workers: int, out_dir: str) -> dict[str, Any]:
    script = os.path.abspath(__file__)
    base = [script, "--items", str(items), "--workers", str(workers), "--mode"]
    if mode == "run":
        cmd = [sys.executable, "-m", "tracedsync", "run", "--", sys.executable, *base, "plain"]
    else:
        cmd = [sys.executable, *base, mode]
    env = dict(os.environ, TRACEDSYNC_OUTPUT_DIR=out_dir)
    if mode != "plain":
        env.setdefault("TRACEDSYNC_EXPORTERS", "jsonfile")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


def compare(items: int, workers: int, repeat: int) -> dict[str, Any]:
    modes = ["plain", "traced"]
    if importlib.util.find_spec("tracedsync.runner") is not None:
        modes.append("run")
    out_dir = tempfile.mkdtemp(prefix="tracedsync-workload-")
    walls: dict[str, list[float]] = {m: [] for m in modes}
    cpus: dict[str, list[float]] = {m: [] for m in modes}
    rss: dict[str, list[int]] = {m: [] for m in modes}
    try:
        for rep in range(repeat):
            order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
            for mode in order:
                r = _run_child(mode, items, workers, out_dir)
                walls[mode].append(r["wall_seconds"])
                cpus[mode].append(r["cpu_seconds"])
                rss[mode].append(r["peak_rss_kib"])
        double = _run_child("traced", items * 2, workers, out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    plain = statistics.median(walls["plain"])
    plain_cpu = statistics.median(cpus["plain"])
    return {
        "items": items,
        "workers": workers,
        "repeat": repeat,
        "wall_seconds": {m: statistics.median(v) for m, v in walls.items()},
        "wall_samples": walls,
        "overhead": {m: round(statistics.median(v) / plain - 1, 4) for m, v in walls.items()},
        "cpu_seconds": {m: statistics.median(v) for m, v in cpus.items()},
        "cpu_overhead": {
            m: round(statistics.median(v) / plain_cpu - 1, 4) for m, v in cpus.items()
        },
        "peak_rss_kib": {m: max(v) for m, v in rss.items()},
        "traced_peak_rss_kib_twice_the_items": double["peak_rss_kib"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--mode", choices=["plain", "traced"], default="plain")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.compare:
        print(json.dumps(compare(args.items, args.workers, args.repeat), indent=2))
        return 0
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
