"""The classic ABBA deadlock between two threads, detected while it happens.

    python examples/deadlock.py
    tracedsync run -- python examples/deadlock.py

``transfer_a_to_b`` takes ``lock_a`` then ``lock_b``; ``transfer_b_to_a``
takes them the other way round. Once each thread holds its first lock, both
wait forever for the other's. tracedsync's watchdog finds the cycle in the
wait-for graph and reports it (``deadlock_detected``: each thread, what it
waits for, what it holds, its stack) while the threads are stuck. Here the
second acquire has a timeout, so the example ends.
"""

from __future__ import annotations

import sys
import threading

import tracedsync

TIMEOUT = 3.0


def main() -> int:
    if not tracedsync.installed():
        tracedsync.install(exporters=["console"])
    lock_a = threading.Lock()
    lock_b = threading.Lock()
    both_hold_one = threading.Barrier(2)
    outcome: dict[str, bool] = {}

    def transfer(first: threading.Lock, second: threading.Lock, name: str) -> None:
        with first:
            both_hold_one.wait()  # make sure each thread holds its first lock
            got = second.acquire(timeout=TIMEOUT)
            if got:
                second.release()
            outcome[name] = got

    threads = [
        threading.Thread(target=transfer, args=(lock_a, lock_b, "a_to_b"), name="transfer_a_to_b"),
        threading.Thread(target=transfer, args=(lock_b, lock_a, "b_to_a"), name="transfer_b_to_a"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    print("second lock acquired:", outcome, "(the first timeout broke the deadlock)")
    tracedsync.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
