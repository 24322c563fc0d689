"""A connection pool whose permits leak with a worker that died.

``pool`` allows three connections. A batch worker takes all three for a
bulk export, hits an error and ends without giving them back (no
``try/finally``). The request handlers that come next wait for a
connection until their timeout.
"""

import sys
import threading

pool = threading.BoundedSemaphore(3)
gave_up: list[str] = []


def checkout() -> None:
    pool.acquire()


def bulk_export() -> None:
    for _ in range(3):
        checkout()
    raise ConnectionError("export target went away")  # the permits leak


def handle_request() -> None:
    if pool.acquire(timeout=1.5):
        pool.release()
    else:
        gave_up.append(threading.current_thread().name)


def main() -> int:
    threading.excepthook = lambda args: print(args.thread.name, "failed:", args.exc_value)
    worker = threading.Thread(target=bulk_export, name="worker-1")
    worker.start()
    worker.join(10)
    handlers = [threading.Thread(target=handle_request, name=f"request-{i}") for i in range(4)]
    for t in handlers:
        t.start()
    for t in handlers:
        t.join(10)
    print(len(gave_up), "requests gave up waiting for a connection")
    return 1 if gave_up else 0


if __name__ == "__main__":
    sys.exit(main())
