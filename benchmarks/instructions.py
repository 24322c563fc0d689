"""Instructions per Lock/RLock operation, counted by valgrind: a noise-free
way to compare changes to the hot path.

    python benchmarks/instructions.py                 # Lock and RLock, with and explicit
    python benchmarks/instructions.py --only RLock --ops 50000

``tracedsync bench`` times the same cases, and that is what the targets are
about; but on a shared machine whose speed flips by 2x within seconds, a
change worth 3% disappears in its noise. Valgrind's callgrind counts the
instructions the CPU executes instead, the same from run to run. Each figure
is (instructions of a child process doing N operations - those of one doing
none) / N, so interpreter start-up and imports cancel out; the loop around
the operation is in every column alike. Instructions are not time (an
allocation or a cache miss costs more than its count), so use this to see
what a change removes, and ``tracedsync bench`` for what it costs.

Needs ``valgrind`` (Debian: ``apt-get install valgrind``). Not run by CI.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

COLUMNS = ("plain", "compiled", "pure", "floor")
CASES = (("Lock", "with"), ("Lock", "explicit"), ("RLock", "with"), ("RLock", "explicit"))


def make(column: str, primitive: str) -> object:
    import threading

    from tracedsync import bench, primitives

    if column == "plain":
        return getattr(threading, primitive)()
    if column == "floor":
        return getattr(bench, f"PythonFloor{primitive}")()
    cls = getattr(primitives, f"{column.capitalize()}{primitive}")
    if cls is None:
        raise SystemExit(f"{column} {primitive}: not available (is the extension built?)")
    return cls()


def child(column: str, primitive: str, style: str, ops: int) -> None:
    lock = make(column, primitive)

    def run(n: int) -> None:
        if style == "with":
            for _ in range(n):
                with lock:
                    pass
        else:
            acquire, release = lock.acquire, lock.release  # type: ignore[attr-defined]
            for _ in range(n):
                acquire()
                release()

    run(1000)  # warm up: the interpreter specialises the loop and the methods
    run(ops)


def instructions(column: str, primitive: str, style: str, ops: int) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        column,
        primitive,
        style,
        str(ops),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr[-2000:]
        raise SystemExit(f"valgrind failed for {column} {primitive} {style}:\n{tail}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20_000, help="operations per child")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        column, primitive, style, ops = args.child
        child(column, primitive, style, int(ops))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    print(f"instructions per operation ({args.ops:,} operations minus none, callgrind)")
    print(f"{'case':<18}" + "".join(f"{c:>16}" for c in COLUMNS))
    for primitive, style in CASES:
        name = f"{primitive} {style}"
        if args.only not in name:
            continue
        row = {
            c: (instructions(c, primitive, style, args.ops) - instructions(c, primitive, style, 0))
            / args.ops
            for c in COLUMNS
        }
        cells = "".join(f"{row[c]:>8.0f} ({row[c] / row['plain']:.2f}x)".rjust(16) for c in COLUMNS)
        print(f"{name:<18}{cells}", flush=True)


if __name__ == "__main__":
    main()
