"""A cache that holds its lock across the slow backend call.

``get`` takes ``cache_lock`` and, on a miss, fetches from the backend while
it still holds the lock: every request waits for every other request's
fetch. ``metrics_lock`` is held only to bump a counter. Nothing hangs and
the program ends by itself: the contention is what to find.
"""

import sys
import threading
import time

cache_lock = threading.Lock()
metrics_lock = threading.Lock()
cache: dict[str, str] = {}
gets = [0]


def fetch(key: str) -> str:
    time.sleep(0.01)  # the backend's latency
    return key.upper()


def get(key: str) -> str:
    with cache_lock:
        if key not in cache:
            cache[key] = fetch(key)  # the bug: a slow call under the lock
        value = cache[key]
    with metrics_lock:
        gets[0] += 1
    return value


def serve(client: int) -> None:
    for n in range(10):
        get(f"user-{client}-{n}")
        get(f"user-{client}-{n}")


def main() -> int:
    clients = [threading.Thread(target=serve, args=(c,), name=f"client-{c}") for c in range(8)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(30)
    print("served", gets[0], "gets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
