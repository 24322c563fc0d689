"""Real workloads: creating primitives, and the stdlib's own use of them.

Each case runs plain and under ``tracedsync.install()``, interleaved (the
order alternates every repetition), in one process:

- ``threading.Lock() creation``: ``y = threading.Lock()`` in a loop, each
  lock dropped when the next is made (so what tracedsync does when a
  primitive is collected counts too); target an absolute time per lock;
- ``queue.Queue() creation``: the same with ``queue.Queue()`` (a mutex and
  three conditions);
- ``ThreadPoolExecutor(4) submit+result``: an executor made in that state,
  then N trivial tasks submitted and their results taken (every ``Future``
  makes a ``Condition``; the pool takes a ``Semaphore`` per task); per task.

The traced side is really traced: tracedsync is configured as ``tracedsync
run`` configures a program (the ``jsonfile`` exporter, into a temporary
directory, default thresholds), ``install()`` patches ``threading`` before
the objects are made and ``uninstall()`` follows each sample; what was made
is checked to be tracedsync's on the traced side and the stdlib's on the
plain one. The loops run from code outside the tracedsync package, like a
user's module. The garbage collector stays on, as in a program.
"""

from __future__ import annotations

import gc
import queue
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import tracedsync
from tracedsync import _stdlib, patching, primitives
from tracedsync.bench import targets
from tracedsync.bench.timing import (
    KeepingRunner,
    Progress,
    Settings,
    quartiles,
    traced_lock_types,
    unrolled_keeping,
)

SIDES = ("plain", "traced")


def _noop() -> None:
    return None


def _check_lock(made: Any, traced: bool) -> None:
    if traced:
        if type(made) not in traced_lock_types():  # isinstance holds for the stdlib's too
            raise RuntimeError(f"threading.Lock() under install() made {type(made)!r}")
    elif type(made) is not type(_stdlib.Lock()):
        raise RuntimeError(f"plain threading.Lock() made {type(made)!r}")


def _check_queue(made: Any, traced: bool) -> None:
    _check_lock(made.mutex, traced)
    condition = primitives.Condition if traced else _stdlib.Condition
    if type(made.not_empty) is not condition:  # ours subclasses the stdlib's
        raise RuntimeError(f"queue.Queue().not_empty is {type(made.not_empty)!r}")


def _check_future(made: Future[Any], traced: bool) -> None:
    condition = primitives.Condition if traced else _stdlib.Condition
    cond = made._condition
    if type(cond) is not condition:  # ours subclasses the stdlib's
        raise RuntimeError(f"a Future's condition is {type(cond)!r}")


@dataclass
class Creation:
    """A loop creating one thing per operation (``x`` is the module)."""

    module: Any
    body: str
    check: Callable[[Any, bool], None]
    quick: int
    full: int

    def __post_init__(self) -> None:
        self.run: KeepingRunner = unrolled_keeping(self.body, "y")

    def sample(self, traced: bool, n: int) -> float:
        count, seconds, made = self.run(self.module, n)
        self.check(made, traced)
        return seconds * 1e9 / count


@dataclass
class Executor:
    """``ThreadPoolExecutor(4)``: N tasks submitted, then every result taken."""

    quick: int = 2_000
    full: int = 20_000

    def sample(self, traced: bool, n: int) -> float:
        with ThreadPoolExecutor(4) as pool:
            warm = [pool.submit(_noop) for _ in range(8)]  # the workers start here
            for f in warm:
                f.result()
            self_check = pool.submit(_noop)
            self_check.result()
            _check_future(self_check, traced)
            t0 = time.perf_counter()
            futures = [pool.submit(_noop) for _ in range(n)]
            for f in futures:
                f.result()
            t1 = time.perf_counter()
        return (t1 - t0) * 1e9 / n


CASES: dict[str, Creation | Executor] = {
    "threading.Lock() creation": Creation(threading, "y = x.Lock()", _check_lock, 20_000, 100_000),
    "queue.Queue() creation": Creation(queue, "y = x.Queue()", _check_queue, 2_000, 10_000),
    "ThreadPoolExecutor(4) submit+result": Executor(),
}


def case_names() -> list[str]:
    return list(CASES)


def _sample(case: Creation | Executor, traced: bool, n: int) -> float:
    gc.collect()
    if traced:
        patching.install()
    try:
        return case.sample(traced, n)
    finally:
        if traced:
            patching.uninstall()


def measure(names: list[str], settings: Settings, progress: Progress) -> dict[str, Any]:
    """The cases named, plain and traced interleaved; ns per operation."""
    if patching.installed():
        raise RuntimeError("threading is patched already: there is no plain side to compare")
    repeat = settings.reps(5, 9)
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-realworld-")
    cases: dict[str, Any] = {}
    try:
        tracedsync.configure(exporters=["jsonfile"], output_dir=directory)
        for name in names:
            case = CASES[name]
            n = settings.count(case.quick, case.full)
            progress(f"{name} ...")
            _sample(case, False, max(1, n // 10))  # warm up both sides
            _sample(case, True, max(1, n // 10))
            samples: dict[str, list[float]] = {side: [] for side in SIDES}
            for rep in range(repeat):
                for side in SIDES if rep % 2 == 0 else SIDES[::-1]:
                    samples[side].append(_sample(case, side == "traced", n))
            ratios = [t / p for p, t in zip(samples["plain"], samples["traced"], strict=True)]
            cases[name] = {
                "operations": n,
                "plain_ns": round(statistics.median(samples["plain"]), 1),
                "traced_ns": round(statistics.median(samples["traced"]), 1),
                "ratio": round(statistics.median(ratios), 3),
                "ratio_quartiles": [round(q, 3) for q in quartiles(ratios)],
                "samples_ns": {k: [round(x, 1) for x in v] for k, v in samples.items()},
            }
    finally:
        patching.uninstall()
        tracedsync.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    return {"implementation": primitives.IMPLEMENTATION, "repeat": repeat, "cases": cases}


def figures(data: dict[str, Any]) -> list[targets.Figure]:
    out = []
    for name, c in data["cases"].items():
        target = targets.CASES[name]
        value = c["traced_ns"] / 1000 if target.unit == "us" else c["ratio"]
        out.append(
            targets.Figure(name, targets.target_id(name, data["implementation"]), value, target)
        )
    return out


def format_lines(data: dict[str, Any]) -> list[str]:
    lines = [
        f"{'real workload, under install()':<40}{'plain':>11}{'traced':>11}{'x':>8}  spread of x",
        "-" * 84,
    ]
    for name, c in data["cases"].items():
        lo, hi = c["ratio_quartiles"]
        lines.append(
            f"{name:<40}{c['plain_ns'] / 1000:>8.2f} us{c['traced_ns'] / 1000:>8.2f} us"
            f"{c['ratio']:>7.2f}x  {lo:.2f}-{hi:.2f}x"
        )
    lines.append("")
    lines.append(
        f"us per operation (a creation; a task), median of {data['repeat']} interleaved "
        f"repetitions; traced: under install(), {data['implementation']} implementation, "
        "jsonfile exporter; x: the median of the per-repetition ratios traced / plain, "
        "spread: their quartiles."
    )
    return lines
