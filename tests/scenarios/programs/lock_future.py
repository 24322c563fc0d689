"""A cache that waits for a future whose task needs the cache's lock.

``get_report`` holds ``cache_lock`` while it waits for the report computed
in the thread pool; the task first reads the cache, which takes
``cache_lock``. The ``result()`` call has a timeout, so the request fails
after it and the program ends.
"""

import concurrent.futures
import sys
import threading

cache_lock = threading.Lock()
cache: dict[str, str] = {}
pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="reports")


def build_report(name: str) -> str:
    with cache_lock:
        base = cache.get("base", "")
    return base + name


def get_report(name: str) -> str:
    with cache_lock:
        if name not in cache:
            future = pool.submit(build_report, name)
            cache[name] = future.result(timeout=2.0)  # the bug: waits under cache_lock
        return cache[name]


def main() -> int:
    try:
        get_report("daily")
    except concurrent.futures.TimeoutError:
        print("report timed out")
        return 1
    finally:
        pool.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
