"""Many threads increment one global counter: without a lock, then with one.

    python examples/counter.py                       # console lines as it runs
    tracedsync run -- python examples/counter.py     # JSON files + a summary

``counter += 1`` looks atomic but is a read, an add and a write. A thread can
be switched out between the read and the write; the other threads' updates
are then overwritten and lost. A bare ``counter += 1`` came out exact on
CPython 3.10-3.13 in our runs: the interpreter only switches threads at
certain instructions (calls, jumps back, function entries), and there is
none inside ``+= 1``. That is luck, not safety: any call between the read
and the write (a log line, a property, a helper function) opens the window,
which ``increment_unsafely`` shows with an explicit call. The lock fixes
it; the ``lock.wait`` spans show what the lock costs in contention.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import tracedsync

THREADS = 4
INCREMENTS = 50_000
counter = 0


def work(value: int) -> int:
    """Stands for any call made between reading and writing the counter."""
    return value + 1


def increment_unsafely() -> None:
    global counter
    for _ in range(INCREMENTS):
        value = counter
        counter = work(value)  # other threads may have written in between


def increment_safely(counter_lock: threading.Lock) -> None:
    global counter
    for _ in range(INCREMENTS):
        with counter_lock:
            counter = work(counter)


def run(target: Callable[..., None], *args: object) -> int:
    global counter
    counter = 0
    start = threading.Barrier(THREADS)  # all loops start together, as in a busy service

    def worker() -> None:
        start.wait()
        target(*args)

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return counter


def main() -> int:
    if not tracedsync.installed():  # under `tracedsync run` it already is
        tracedsync.install(exporters=["console"])
    counter_lock = threading.Lock()
    expected = THREADS * INCREMENTS
    # Each thread would finish its loop within one 5 ms time slice; switching
    # threads every 0.1 ms makes the race, and the lock's contention, show up
    # in a short run. A real program just needs a longer loop, or bad luck.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        unsafe = run(increment_unsafely)
        print(f"without a lock: {unsafe} of {expected} increments ({expected - unsafe} lost)")
        safe = run(increment_safely, counter_lock)
        print(f"with a lock:    {safe} of {expected} increments")
    finally:
        sys.setswitchinterval(interval)
    s = counter_lock.statistics()  # type: ignore[attr-defined]
    print(
        f"counter_lock: {s.acquisitions} acquisitions, {s.contentions} contended "
        f"({s.contention_rate:.1%}), {s.wait_total * 1e3:.1f} ms waited in all, "
        f"longest wait {s.wait_max * 1e3:.1f} ms"
    )
    return 0 if safe == expected else 1


if __name__ == "__main__":
    sys.exit(main())
