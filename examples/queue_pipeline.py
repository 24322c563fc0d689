"""A producer, a bounded queue, a pool of workers and a result queue.

    python examples/queue_pipeline.py
    tracedsync run -- python examples/queue_pipeline.py

The producer is faster than the workers, so it blocks on the full queue
(``condition.wait`` on ``not_full``); when the workers run dry they block
on the empty one (``not_empty``). Both queues are ``queue.Queue``: their
conditions and mutex are traced and named after their attributes in
``queue.py``. A shared lock-protected cache adds lock contention.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sys
import threading
import time

import tracedsync

ITEMS = 200
WORKERS = 4


def main() -> int:
    if not tracedsync.installed():
        tracedsync.install(exporters=["console"], wait_threshold_ms=5)
    work: queue.Queue[int | None] = queue.Queue(maxsize=8)
    results: queue.Queue[int] = queue.Queue()
    cache: dict[int, int] = {}
    cache_lock = threading.Lock()

    def producer() -> None:
        for item in range(ITEMS):
            work.put(item)
        for _ in range(WORKERS):
            work.put(None)

    def worker() -> int:
        done = 0
        while (item := work.get()) is not None:
            time.sleep(0.002)  # the actual work
            with cache_lock:
                cache[item % 10] = cache.get(item % 10, 0) + 1
            results.put(item * item)
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(WORKERS + 1, thread_name_prefix="pipe") as pool:
        pool.submit(producer)
        counts = list(pool.map(lambda _: worker(), range(WORKERS)))
    total = sum(results.get() for _ in range(results.qsize()))
    print(f"{sum(counts)} items processed by {WORKERS} workers {counts}, sum of squares {total}")
    tracedsync.flush()
    return 0 if sum(counts) == ITEMS else 1


if __name__ == "__main__":
    sys.exit(main())
