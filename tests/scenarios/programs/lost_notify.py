"""A job runner whose worker misses its wake-up: the notify comes first.

The dispatcher queues a job and notifies the condition before the worker
has started; the worker then calls ``wait()`` without checking for queued
jobs, so the notification is lost and it sleeps for ever. The main thread
gives up on it after a deadline and exits (the worker is a daemon).
"""

import sys
import threading

jobs: list[str] = []
jobs_ready = threading.Condition()


def dispatch(job: str) -> None:
    with jobs_ready:
        jobs.append(job)
        jobs_ready.notify()


def work() -> None:
    with jobs_ready:
        jobs_ready.wait()  # the bug: no "while not jobs:" before waiting
        print("job-worker ran", jobs.pop(0))


def main() -> int:
    dispatch("rebuild-index")
    worker = threading.Thread(target=work, name="job-worker", daemon=True)
    worker.start()
    worker.join(timeout=1.5)
    if worker.is_alive():
        print("job-worker never picked up rebuild-index; giving up")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
