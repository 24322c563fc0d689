"""Instructions per Lock/RLock/Semaphore operation, counted by valgrind: a
noise-free way to compare changes to the hot path.

    python benchmarks/instructions.py                 # with and explicit, every lock-like
    python benchmarks/instructions.py --only RLock --ops 50000

``tracedsync bench`` times these same cases (its own objects and unrolled
loops are used here), and that is what the targets are about; but on a
shared machine whose speed flips by 2x within seconds, a change worth 3%
disappears in its noise. Valgrind's callgrind counts the instructions the
CPU executes instead, the same from run to run. Each figure is
(instructions of a child process doing N operations - those of one doing
one loop of them) / the operations between, so interpreter start-up and
imports cancel out. Instructions are not time (an allocation or a cache
miss costs more than its count), so use this to see what a change removes,
and ``tracedsync bench`` for what it costs.

Needs ``valgrind`` (Debian: ``apt-get install valgrind``). Not run by CI.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from typing import Any

COLUMNS = ("plain", "compiled", "pure")


#: The primitives measured: those with a compiled and a pure implementation.
PRIMITIVES = ("Lock", "RLock", "Semaphore", "BoundedSemaphore")


def lock_cases() -> list[Any]:
    """``tracedsync bench``'s own uncontended cases of :data:`PRIMITIVES`."""
    from tracedsync.bench import micro

    return [
        c
        for c in micro.all_cases()
        if c.primitive in PRIMITIVES and c.style in ("uncontended", "explicit")
    ]


def child(column: str, case_name: str, ops: int) -> None:
    """Run ``tracedsync bench``'s case with its column's object, ``ops`` times."""
    from tracedsync.bench import micro

    columns = [micro.plain_column(), *micro.traced_columns()]
    col = next((c for c in columns if c.name == column), None)
    if col is None:
        raise SystemExit(f"no {column} column here (is the extension built?)")
    (case,) = [c for c in lock_cases() if c.name == case_name]
    obj = case.make(col.factories[case.primitive])
    case.run(obj, 1000)  # warm up: the interpreter specialises the loop and the methods
    case.run(obj, ops)


def instructions(column: str, case_name: str, ops: int) -> int:
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        column,
        case_name,
        str(ops),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = proc.stderr[-2000:]
        raise SystemExit(f"valgrind failed for {column} {case_name}:\n{tail}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20_000, help="operations per child")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        column, case_name, ops = args.child
        child(column, case_name, int(ops))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    from tracedsync.bench.timing import UNROLL

    ops = max(2, args.ops // UNROLL) * UNROLL
    print(f"instructions per operation ({ops:,} operations minus {UNROLL}, callgrind)")
    print(f"{'case':<34}" + "".join(f"{c:>16}" for c in COLUMNS))
    for case in lock_cases():
        if args.only not in case.name:
            continue
        row = {
            c: (instructions(c, case.name, ops) - instructions(c, case.name, UNROLL))
            / (ops - UNROLL)
            for c in COLUMNS
        }
        cells = "".join(f"{row[c]:>8.0f} ({row[c] / row['plain']:.2f}x)".rjust(16) for c in COLUMNS)
        print(f"{case.name:<34}{cells}", flush=True)


if __name__ == "__main__":
    main()
