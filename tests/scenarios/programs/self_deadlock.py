"""An inventory whose method calls another that takes the same Lock.

``restock`` holds ``self._lock`` and calls ``count`` to log the new total;
``count`` takes ``self._lock`` too. A ``Lock`` is not re-entrant: the main
thread blocks on itself for ever, and the program hangs until it is killed.
"""

import threading


class Inventory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, int] = {}

    def count(self, item: str) -> int:
        with self._lock:
            return self._items.get(item, 0)

    def restock(self, item: str, n: int) -> None:
        with self._lock:
            self._items[item] = self._items.get(item, 0) + n
            print("restocked", item, "now", self.count(item))  # the bug: re-enters _lock


print("starting", flush=True)
Inventory().restock("widget", 5)
