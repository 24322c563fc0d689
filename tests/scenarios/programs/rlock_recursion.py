"""A config tree walked recursively under one RLock, held across slow work.

``resolve`` re-enters ``tree_lock`` at every level of the tree (six levels
down to the leaf) and, at the leaf, calls a slow loader while it still
holds the lock.
A reader thread wants the lock meanwhile and waits for the whole walk: real
contention, correctly counted, and no deadlock.
"""

import sys
import threading
import time

tree_lock = threading.RLock()
tree = {"a": {"b": {"c": {"d": {"e": "leaf"}}}}}
walking = threading.Event()


def load_slowly(value: str) -> str:
    time.sleep(0.2)  # a remote fetch
    return value.upper()


def resolve(node: object, depth: int = 1) -> str:
    with tree_lock:
        if depth == 1:
            walking.set()
        if isinstance(node, dict):
            (child,) = node.values()
            return resolve(child, depth + 1)
        return load_slowly(str(node))


def read_root() -> None:
    walking.wait()
    with tree_lock:
        print("reader saw", list(tree))


def main() -> int:
    reader = threading.Thread(target=read_root, name="reader")
    reader.start()
    walker = threading.Thread(target=lambda: print("resolved", resolve(tree)), name="walker")
    walker.start()
    walker.join(5)
    reader.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
