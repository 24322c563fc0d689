"""A healthy busy service: a thread pool, a work queue, locks, a semaphore.

Producers queue orders; a pool of workers takes them from the queue,
updates shared stats under ``stats_lock`` (briefly contended), reserves
stock under each item's lock (made in ``Item.__init__``, always taken in
item-number order), limits calls to a payment gateway with a semaphore,
and reports through futures; an audit writer (a daemon) waits for lines
in ``Queue.get`` and is still waiting when the program ends. Nothing here
is a bug.
"""

import concurrent.futures
import queue
import sys
import threading
import time

ORDERS = 400
WORKERS = 4


class Item:
    def __init__(self, number: int) -> None:
        self.number = number
        self.stock = 10_000
        self.lock = threading.Lock()


items = [Item(n) for n in range(8)]
stats_lock = threading.Lock()
stats = {"orders": 0, "units": 0}
gateway = threading.BoundedSemaphore(2)
orders: "queue.Queue[tuple[int, int] | None]" = queue.Queue(maxsize=32)
audit_log: "queue.Queue[str]" = queue.Queue()
config_lock = threading.RLock()
config = {"discount": 0}


def current_discount() -> int:
    with config_lock:
        return config["discount"]


def discount() -> int:
    with config_lock:
        return current_discount()  # takes config_lock again: fine with an RLock


def reserve(first: Item, second: Item) -> None:
    low, high = sorted((first, second), key=lambda item: item.number)
    with low.lock:  # noqa: SIM117 (two locks, two sites)
        with high.lock:
            low.stock -= 1
            high.stock -= 1


def charge(order_id: int) -> int:
    with gateway:
        time.sleep(0.0005)  # the gateway's latency
        return order_id * 100 - discount()


def work(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    while True:
        order = orders.get()
        if order is None:
            orders.task_done()
            return
        order_id, units = order
        reserve(items[order_id % 8], items[(order_id * 3 + 1) % 8])
        receipt = pool.submit(charge, order_id)
        with stats_lock:
            stats["orders"] += 1
            stats["units"] += units
            time.sleep(0.0002)  # a little bookkeeping: the workers contend here
        receipt.result(timeout=10)
        orders.task_done()


def write_audit_log() -> None:
    while True:  # a daemon: still waiting for the next line when the program ends
        audit_log.get()


def produce(start: int) -> None:
    for order_id in range(start, ORDERS, 2):
        orders.put((order_id, order_id % 5 + 1))
    audit_log.put(f"producer {start} done")


def main() -> int:
    threading.Thread(target=write_audit_log, name="audit-writer", daemon=True).start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="gateway") as pool:
        workers = [
            threading.Thread(target=work, args=(pool,), name=f"worker-{i}") for i in range(WORKERS)
        ]
        producers = [
            threading.Thread(target=produce, args=(i,), name=f"producer-{i}") for i in (0, 1)
        ]
        for t in workers + producers:
            t.start()
        for t in producers:
            t.join(30)
        orders.join()
        for _ in workers:
            orders.put(None)
        for t in workers:
            t.join(30)
    print("orders", stats["orders"], "units", stats["units"])
    return 0 if stats["orders"] == ORDERS else 1


if __name__ == "__main__":
    sys.exit(main())
