"""A metrics flusher that blocks on its queue while holding the state lock.

The flusher takes ``state_lock`` and then waits in ``batches.get()`` for the
next batch; the collector that would put the batch first needs
``state_lock`` to snapshot the counters. Neither moves: a hang through a
queue, which no lock-only deadlock detector sees. Both threads are daemons;
the main thread gives up after a deadline.
"""

import queue
import sys
import threading

state_lock = threading.Lock()
batches: "queue.Queue[dict[str, int]]" = queue.Queue()
counters = {"requests": 0}
flusher_waiting = threading.Event()


def flush_forever() -> None:
    with state_lock:
        flusher_waiting.set()
        batch = batches.get()  # the bug: waits for the collector under state_lock
        counters["requests"] += batch["requests"]


def collect() -> None:
    flusher_waiting.wait()
    with state_lock:
        batches.put({"requests": counters["requests"] + 1})


def main() -> int:
    flusher = threading.Thread(target=flush_forever, name="flusher", daemon=True)
    collector = threading.Thread(target=collect, name="collector", daemon=True)
    flusher.start()
    collector.start()
    collector.join(timeout=2.0)
    if collector.is_alive():
        print("collector stuck; metrics not flushed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
