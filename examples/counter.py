"""Many threads increment one global counter: without a lock, then with one.

Run it as ``python examples/counter.py`` (the console exporter prints the
lock waits as they happen) or under ``tracedsync run -- python
examples/counter.py``.

``counter += 1`` looks atomic but is a read, an add and a write. A thread can
be switched out between the read and the write; the other thread's update is
then overwritten and lost. A bare ``counter += 1`` came out exact on CPython
3.10-3.13 in our runs: the interpreter only switches threads at certain
instructions (calls, backward jumps), and there is none inside ``+= 1``. That
is luck, not safety: any call between the read and the write (a log line, a
property, a function) opens the window, which ``increment_unsafely`` shows
with an explicit call.
"""

from __future__ import annotations

import sys

import tracedsync

THREADS = 4
INCREMENTS = 50_000

counter = 0
counter_lock = tracedsync.Lock()


def work(value: int) -> int:
    """Stands for any call made between reading and writing the counter."""
    return value + 1


def increment_unsafely() -> None:
    global counter
    for _ in range(INCREMENTS):
        value = counter
        counter = work(value)  # another thread may have written in between


def increment_safely() -> None:
    global counter
    for _ in range(INCREMENTS):
        with counter_lock:
            counter = work(counter)


def run(target: object) -> int:
    global counter
    counter = 0
    threads = [tracedsync_thread(target, f"worker-{i}") for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return counter


def tracedsync_thread(target: object, name: str) -> object:
    import threading

    return threading.Thread(target=target, name=name)


def main() -> int:
    if tracedsync.config.active() is None:
        # Not started by `tracedsync run`: print the waits on the console.
        tracedsync.configure(exporters=["console"], wait_threshold_ms=1)
    expected = THREADS * INCREMENTS
    unsafe = run(increment_unsafely)
    print(f"without a lock: {unsafe} of {expected} increments ({expected - unsafe} lost)")
    safe = run(increment_safely)
    print(f"with a lock:    {safe} of {expected} increments")
    tracedsync.flush()
    stats = counter_lock.statistics()
    print(
        f"counter_lock: {stats.acquisitions} acquisitions, {stats.contentions} contended "
        f"({stats.contention_rate:.1%}), {stats.wait_total * 1e3:.1f} ms waited in all, "
        f"longest wait {stats.wait_max * 1e3:.1f} ms"
    )
    return 0 if safe == expected else 1


if __name__ == "__main__":
    sys.exit(main())
