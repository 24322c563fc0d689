"""A worker pool idle on a queue most of the time, and a reload that blocks it.

Eight workers take requests from a ``queue.Queue``: waiting there for work
is healthy, and it is most of their time. Each request reads the settings
under ``settings_lock``. The reloader takes ``settings_lock`` and holds it
0.3 s while it parses a new file; a burst of requests arrives meanwhile,
so every worker blocks on the lock: that is the contention to find, less
time in all than the pool's idle waits.
"""

import queue
import sys
import threading
import time

WORKERS = 8

settings_lock = threading.Lock()
settings = {"version": 1}
requests: "queue.Queue[int | None]" = queue.Queue()
reloading = threading.Event()
served = [0] * WORKERS


def work(index: int) -> None:
    while True:
        request = requests.get()
        if request is None:
            return
        with settings_lock:
            version = settings["version"]
        served[index] += 1 if version else 0


def reload() -> None:
    with settings_lock:
        reloading.set()
        time.sleep(0.3)  # parsing the new settings, under settings_lock
        settings["version"] += 1


def main() -> int:
    workers = [
        threading.Thread(target=work, args=(i,), name=f"worker-{i + 1}") for i in range(WORKERS)
    ]
    for t in workers:
        t.start()
    time.sleep(0.3)  # the pool idles
    reloader = threading.Thread(target=reload, name="reloader")
    reloader.start()
    reloading.wait(10)
    for n in range(WORKERS * 4):  # a burst while the settings are reloaded
        requests.put(n)
    reloader.join(10)
    time.sleep(0.3)  # the pool idles again
    for _ in workers:
        requests.put(None)
    for t in workers:
        t.join(10)
    print("served", sum(served), "requests")
    return 0 if sum(served) == WORKERS * 4 else 1


if __name__ == "__main__":
    sys.exit(main())
