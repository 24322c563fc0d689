"""The main thread starts the work and returns; the workers finish after it.

A batch job: the main thread starts a loader that holds ``cache_lock`` while
it fills the cache, a reader that waits for that lock, and a reporter that
waits for ``loaded``; then it returns. Python joins the workers before it
exits, and they all finish. The flush made when the main thread ends sees
the reader and the reporter blocked; nothing is blocked at exit and nothing
here is a bug.
"""

import threading
import time

cache_lock = threading.Lock()
loaded = threading.Event()
started = threading.Barrier(3)
cache = {}


def loader() -> None:
    with cache_lock:
        started.wait()
        time.sleep(0.5)  # fills the cache
        cache["rows"] = 1000
    loaded.set()


def reader() -> None:
    started.wait()
    with cache_lock:
        print(f"reader saw {cache.get('rows')}", flush=True)


def reporter() -> None:
    loaded.wait()
    print(f"reporter saw {cache['rows']}", flush=True)


for work in (loader, reader, reporter):
    threading.Thread(target=work, name=work.__name__).start()
started.wait()
time.sleep(0.1)  # the main thread's own part of the job, then it returns
