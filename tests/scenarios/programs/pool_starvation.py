"""A serial executor whose task waits for a task queued behind it.

All writes to the store go through one worker (``max_workers=1``), so they
never overlap. ``save_order`` runs there and, to log an audit record,
submits ``write_audit`` to the same executor and waits for it -- queued
behind ``save_order`` itself, it never starts. Nothing holds a lock: only
the futures' waits tell. The caller waits for the save, so the program
hangs until it is killed.
"""

import concurrent.futures

writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
store: list[str] = []


def write_audit(text: str) -> None:
    store.append(f"audit: {text}")


def save_order(order_id: int) -> None:
    store.append(f"order {order_id}")
    audit = writer.submit(write_audit, f"order {order_id} saved")
    audit.result()  # the bug: waits for a task queued behind this one


print("saving order 42", flush=True)
writer.submit(save_order, 42).result()
print("saved")
