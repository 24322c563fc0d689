"""A session store whose RLock is left held by a request thread that failed.

``save`` takes ``store_lock`` with ``acquire()`` and releases it at the end,
but returns early (without releasing) on a validation error. The thread
ends; only the owner of an RLock may release it, so the store is locked for
ever. The next save waits until its timeout.
"""

import sys
import threading

store_lock = threading.RLock()
sessions: dict[str, dict[str, str]] = {}


def save(session_id: str, data: dict[str, str]) -> bool:
    store_lock.acquire()
    if "user" not in data:
        return False  # the bug: store_lock is never released on this path
    sessions[session_id] = data
    store_lock.release()
    return True


def main() -> int:
    failed = threading.Thread(target=save, args=("s1", {}), name="request-17")
    failed.start()
    failed.join()
    if store_lock.acquire(timeout=1.5):
        store_lock.release()
        return 0
    print("session store locked by a request that ended")
    return 1


if __name__ == "__main__":
    sys.exit(main())
