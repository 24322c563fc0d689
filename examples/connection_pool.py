"""A BoundedSemaphore guarding a pool of 10 connections used by 40 workers.

    python examples/connection_pool.py
    tracedsync run -- python examples/connection_pool.py

Only ``max_connections`` workers hold a connection at a time; the others
queue on the semaphore, and their ``bounded_semaphore.wait`` spans show the
queueing (who waited, how long, who held a connection meanwhile). Releasing
the semaphore more often than it was acquired raises ``ValueError``, exactly
like the stdlib's.
"""

from __future__ import annotations

import sys
import threading
import time

import tracedsync

max_connections = 10
WORKERS = 40


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number

    def query(self) -> int:
        time.sleep(0.05)  # the database takes a while
        return self.number


def main() -> int:
    if not tracedsync.installed():
        # Show the queueing: waits from 5 ms; the 50 ms holds are expected here.
        tracedsync.install(exporters=["console"], wait_threshold_ms=5, hold_threshold_ms=100)
    semaphore = threading.BoundedSemaphore(max_connections)
    pool = [FakeConnection(i) for i in range(max_connections)]
    pool_lock = threading.Lock()
    results: list[int] = []
    start = threading.Barrier(WORKERS)  # the requests arrive together

    def worker() -> None:
        start.wait()
        with semaphore:
            with pool_lock:
                connection = pool.pop()
            try:
                results.append(connection.query())
            finally:
                with pool_lock:
                    pool.append(connection)

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(WORKERS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    print(
        f"{len(results)} queries on {max_connections} connections "
        f"in {time.monotonic() - started:.2f} s"
    )
    s = semaphore.statistics()  # type: ignore[attr-defined]
    print(
        f"semaphore: {s.acquisitions} acquisitions, {s.contentions} had to queue, "
        f"longest wait {s.wait_max * 1e3:.0f} ms"
    )
    try:
        semaphore.release()
    except ValueError as exc:
        print(f"releasing once too often: ValueError: {exc}")
    tracedsync.flush()
    return 0 if len(results) == WORKERS else 1


if __name__ == "__main__":
    sys.exit(main())
