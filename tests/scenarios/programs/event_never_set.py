"""Request handlers wait for a cache warm-up that crashed: the Event is never set.

The warmer thread fails on a bad row before it sets ``cache_warm``; the two
request handlers wait for it without a timeout. The main thread returns,
and the program hangs in interpreter shutdown joining them -- until someone
kills it.
"""

import threading

cache: dict[str, str] = {}
cache_warm = threading.Event()


def warm_cache() -> None:
    for row in ["a=1", "b=2", "corrupt"]:
        key, value = row.split("=")  # ValueError on "corrupt"
        cache[key] = value
    cache_warm.set()


def handle_requests() -> None:
    cache_warm.wait()
    print(threading.current_thread().name, "serving from", len(cache), "entries")


warmer = threading.Thread(target=warm_cache, name="cache-warmer")
handlers = [threading.Thread(target=handle_requests, name=f"handler-{i}") for i in (1, 2)]
for t in [warmer, *handlers]:
    t.start()
print("started", flush=True)
