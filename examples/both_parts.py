"""Two locked helpers called from inside the same lock: a self-deadlock.

    python examples/both_parts.py
    tracedsync run -- python examples/both_parts.py

``get_first_part()`` and ``get_second_part()`` each take the shared lock;
``get_both_parts()`` takes it around both calls, so that no other thread can
change the resource in between. With a plain ``Lock`` the thread then blocks
on a lock it already holds. tracedsync reports it the moment it starts to
block (``self_deadlock_suspected``, with the thread, the lock and both
acquisition sites); here the acquire has a timeout, so the example still
ends. With an ``RLock`` the same code works: the owner may re-enter; the
stats count the re-entries and the ``rlock.hold`` span shows the recursion
depth the hold reached (``sync.rlock.depth``).
"""

from __future__ import annotations

import sys
import threading
import time

import tracedsync


class Resource:
    def __init__(self, lock_type: type) -> None:
        self.lock = lock_type()  # named "lock (both_parts.py:28)"
        self.first, self.second = "first", "second"

    def get_first_part(self) -> str | None:
        if not self.lock.acquire(timeout=0.5):  # would hang forever without a timeout
            return None
        try:
            return self.first
        finally:
            self.lock.release()

    def get_second_part(self) -> str | None:
        if not self.lock.acquire(timeout=0.5):
            return None
        try:
            return self.second
        finally:
            self.lock.release()

    def get_both_parts(self) -> tuple[str | None, str | None]:
        with self.lock:  # nobody may change the resource between the two calls
            first = self.get_first_part()
            time.sleep(0.02)  # putting the parts together takes a moment
            second = self.get_second_part()
            return first, second


def main() -> int:
    if not tracedsync.installed():
        tracedsync.install(exporters=["console"])
    with_lock = Resource(threading.Lock)
    print("with a Lock: ", with_lock.get_both_parts(), "(both helpers timed out)")
    with_rlock = Resource(threading.RLock)
    print("with an RLock:", with_rlock.get_both_parts())
    s = with_rlock.lock.statistics()  # type: ignore[union-attr]
    print(f"RLock: {s.acquisitions} acquisitions, {s.reentries} re-entries")
    tracedsync.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
