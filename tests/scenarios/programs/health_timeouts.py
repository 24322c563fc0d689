"""A health check that gives up on a lock a migration holds, beside polling loops.

The migrator takes ``db_lock`` and holds it for a second while it "migrates";
the health checker tries the lock three times with a 0.2 s timeout and
reports the service unhealthy each time. Meanwhile a heartbeat polls its
stop ``Event`` every 50 ms and a poller polls an empty ``Queue`` every 50 ms
with timeouts: waits for a signal or for work that time out, which is how
they are written, not contention. Nothing hangs; the program ends by itself.
"""

import queue
import sys
import threading
import time

db_lock = threading.Lock()
migrating = threading.Event()
stop = threading.Event()
inbox: "queue.Queue[str]" = queue.Queue()
beats = [0]
polls = [0]


def migrate() -> None:
    with db_lock:
        migrating.set()
        time.sleep(1.0)  # the migration, under db_lock


def check_health() -> int:
    failures = 0
    for _ in range(3):
        if db_lock.acquire(timeout=0.2):  # gives up after 0.2 s
            db_lock.release()
        else:
            failures += 1
    return failures


def heartbeat() -> None:
    while not stop.wait(0.05):
        beats[0] += 1


def poll() -> None:
    while not stop.is_set():
        try:
            inbox.get(timeout=0.05)
        except queue.Empty:
            polls[0] += 1


def main() -> int:
    helpers = [
        threading.Thread(target=heartbeat, name="heartbeat"),
        threading.Thread(target=poll, name="poller"),
    ]
    for t in helpers:
        t.start()
    migrator = threading.Thread(target=migrate, name="migrator")
    migrator.start()
    migrating.wait(10)
    checker_failures: list[int] = []
    checker = threading.Thread(
        target=lambda: checker_failures.append(check_health()), name="health-check"
    )
    checker.start()
    checker.join(10)
    migrator.join(10)
    stop.set()
    for t in helpers:
        t.join(10)
    print("health check failures:", checker_failures[0])
    return 0 if checker_failures == [3] else 1


if __name__ == "__main__":
    sys.exit(main())
