"""Threads waiting for an Event: one blocks, one polls with a timeout.

    python examples/event_signal.py
    tracedsync run -- python examples/event_signal.py

``blocker`` calls ``wait()`` and blocks until the event is set. ``poller``
waits with a 2 s timeout in a loop, doing other work in between. The main
thread sets the event after 3 s. The ``event.wait`` spans show each wait
with its outcome: ``timeout`` for the poller's first wait, ``set`` for the
others, with the thread names.
"""

from __future__ import annotations

import sys
import threading
import time

import tracedsync


def main() -> int:
    if not tracedsync.installed():
        tracedsync.install(exporters=["console"])
    ready = threading.Event()
    log: list[str] = []

    def blocker() -> None:
        ready.wait()
        log.append("blocker: event set")

    def poller() -> None:
        rounds = 0
        while not ready.wait(timeout=2.0):
            rounds += 1
            log.append(f"poller: timed out, doing other work (round {rounds})")
        log.append("poller: event set")

    threads = [
        threading.Thread(target=blocker, name="blocker"),
        threading.Thread(target=poller, name="poller"),
    ]
    for t in threads:
        t.start()
    time.sleep(3.0)
    ready.set()
    for t in threads:
        t.join(10)
    print("\n".join(log))
    tracedsync.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
