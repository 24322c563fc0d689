"""A worker pool idle on a queue, and a config lock a reloader holds too long.

    python examples/config_reload.py
    tracedsync run -- python examples/config_reload.py

Eight workers take requests from a ``queue.Queue``; most of the time they
wait for work (``condition.wait`` on ``not_empty``): healthy, an idle wait.
Each request reads the configuration under ``config_lock``; a reloader
thread takes that lock every 100 ms and holds it 30 ms while it "parses"
the new configuration: the workers that need it meanwhile block, which is
contention. ``tracedsync report`` puts the lock under PRIMITIVES and the
queue's waits under IDLE WAITS, so the idle time of the pool does not hide
the lock.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

import tracedsync

WORKERS = 8
REQUESTS = 400
RELOADS = 10


def main() -> int:
    if not tracedsync.installed():
        tracedsync.install(exporters=["console"], wait_threshold_ms=5)
    config_lock = threading.Lock()
    config = {"version": 0}
    requests: queue.Queue[int | None] = queue.Queue()
    done = threading.Event()
    served = [0] * WORKERS

    def worker(index: int) -> None:
        while True:
            item = requests.get()
            if item is None:
                return
            with config_lock:
                version = config["version"]
            served[index] += 1 if version >= 0 else 0

    def reloader() -> None:
        for _ in range(RELOADS):
            if done.wait(0.1):
                return
            with config_lock:
                time.sleep(0.03)  # parsing the new configuration
                config["version"] += 1

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"worker-{i + 1}") for i in range(WORKERS)
    ]
    threads.append(threading.Thread(target=reloader, name="reloader"))
    for t in threads:
        t.start()
    for i in range(REQUESTS):
        requests.put(i)
        time.sleep(0.0025)  # requests arrive over about a second
    for _ in range(WORKERS):
        requests.put(None)
    done.set()
    for t in threads:
        t.join(30)
    alive = [t.name for t in threads if t.is_alive()]
    print(f"served {sum(served)} requests, {config['version']} reloads")
    return 1 if alive or sum(served) != REQUESTS else 0


if __name__ == "__main__":
    sys.exit(main())
