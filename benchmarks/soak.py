"""Soak: mixed load for a while under tracedsync; memory must stay flat.

    python benchmarks/soak.py --seconds 600        # the 10-minute soak (not in CI)
    python benchmarks/soak.py --seconds 30 --check # what CI runs

Threads keep creating and dropping primitives (a per-request Event and
Condition, a per-item Lock), contend on shared locks, semaphores and a
queue, and wait on conditions, with every exporter path busy (jsonfile into
a temporary directory, thresholds low so many spans are made). Every second
it samples the process's resident memory; after a warm-up third of the
run, the growth from the first sample after warm-up to the last must stay
under ``--max-growth-mb`` (``--check`` makes that the exit status).
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import tempfile
import threading
import time

import tracedsync


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--check", action="store_true", help="exit 1 if memory grew too much")
    parser.add_argument("--keep", action="store_true", help="keep the output directory")
    args = parser.parse_args()

    out = tempfile.mkdtemp(prefix="tracedsync-soak-")
    tracedsync.install(
        exporters=["jsonfile"],
        output_dir=out,
        wait_threshold_ms=0.1,
        hold_threshold_ms=0.5,
        file_max_bytes=8 * 1024 * 1024,
        metric_export_interval_ms=1000,
    )
    shared = [threading.Lock() for _ in range(4)]
    rshared = threading.RLock()
    pool = threading.BoundedSemaphore(3)
    work: queue.Queue[int] = queue.Queue(maxsize=16)
    stop = threading.Event()
    operations = [0] * args.threads

    def worker(n: int) -> None:
        rng = random.Random(n)
        while not stop.is_set():
            choice = rng.random()
            if choice < 0.4:
                with shared[rng.randrange(4)]:
                    if rng.random() < 0.01:
                        time.sleep(0.001)
            elif choice < 0.5:
                with rshared, rshared:
                    pass
            elif choice < 0.6:
                with pool:
                    time.sleep(0.0002)
            elif choice < 0.75:
                try:
                    work.put(n, timeout=0.01)
                except queue.Full:
                    pass
            elif choice < 0.9:
                try:
                    work.get(timeout=0.01)
                except queue.Empty:
                    pass
            else:  # per-request primitives, dropped at once
                done = threading.Event()
                cond = threading.Condition()
                with cond:
                    cond.wait(0.0001)
                done.set()
                item_lock = threading.Lock()
                with item_lock:
                    pass
            operations[n] += 1

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"soak-{i}") for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    samples = []
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < args.seconds:
        time.sleep(1.0)
        samples.append((round(elapsed, 1), round(rss_mb(), 1)))
    stop.set()
    for t in threads:
        t.join(30)
    tracedsync.flush()
    warm = samples[len(samples) // 3 :] or samples
    growth = warm[-1][1] - warm[0][1]
    result = {
        "seconds": round(time.monotonic() - started, 1),
        "operations": sum(operations),
        "rss_mb_first": samples[0][1] if samples else None,
        "rss_mb_after_warmup": warm[0][1],
        "rss_mb_last": warm[-1][1],
        "growth_mb": round(growth, 1),
        "max_growth_mb": args.max_growth_mb,
        "output_dir": out,
        "produced": tracedsync.records.accounting.produced,
        "dropped": tracedsync.records.accounting.dropped,
    }
    print(json.dumps(result))
    tracedsync.uninstall()
    tracedsync.shutdown()
    if not args.keep:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
    if args.check and growth > args.max_growth_mb:
        print(f"memory grew {growth:.1f} MB (> {args.max_growth_mb} MB)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
