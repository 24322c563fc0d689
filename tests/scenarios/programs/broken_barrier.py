"""A sharded loader where one shard never reaches the barrier.

Three loaders each load their shard and meet at a barrier before the index
is built; shard 2's loader fails reading its file and returns early, so the
barrier's timeout breaks it and the two loaders that came get
``BrokenBarrierError``.
"""

import sys
import threading

loaded = threading.Barrier(3, timeout=1.0)
results: dict[int, str] = {}


def load_shard(shard: int) -> None:
    if shard == 2:
        print("shard 2: cannot open shard-2.dat, giving up")
        return  # the bug: leaves without loaded.wait() or loaded.abort()
    results[shard] = f"shard-{shard}"
    try:
        loaded.wait()
    except threading.BrokenBarrierError:
        print(f"shard {shard}: the other loaders never came")


def main() -> int:
    loaders = [threading.Thread(target=load_shard, args=(n,), name=f"loader-{n}") for n in range(3)]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join(timeout=10)
    return 1 if loaded.broken else 0


if __name__ == "__main__":
    sys.exit(main())
