"""What every section of ``tracedsync bench`` measures with.

Unrolled loops (the loop itself costs little), the garbage collector paused
around a timed loop, the rotating order that interleaves plain and traced
runs (a noisy neighbour hits every side alike), medians and spreads, and
the settings the command line gives.

A loop is compiled from source with a file name outside the tracedsync
package and globals without ``__name__``: a primitive it creates while
``install()`` patches ``threading`` is therefore traced, as in a user's
module (tracedsync leaves what its own modules create untraced).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from tracedsync import primitives

T = TypeVar("T")

#: Loop bodies are repeated this many times per iteration of the loop.
UNROLL = 10

#: A measurement: given the object(s) under test and a count, run and return
#: (operations done, seconds).
Runner = Callable[[Any, int], tuple[int, float]]
#: A :data:`Runner` that also returns one local of the loop (what it made last).
KeepingRunner = Callable[[Any, int], tuple[int, float, Any]]
#: Where a section says what it is measuring (stderr, unless --json).
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command line asks of every section."""

    quick: bool = False
    #: Repetitions per case; None: each section's own default.
    repeat: int | None = None
    #: Operations per repetition for the in-process cases; None: their defaults.
    ops: int | None = None
    ddtrace: bool = True
    #: The ``--workload`` program's items and worker threads.
    items: int = 100_000
    workers: int = 8
    #: Repetitions are multiplied by this (2 when ``--check`` measures a case again).
    factor: int = 1

    def reps(self, quick: int, full: int) -> int:
        """Repetitions: ``--repeat``, else ``quick`` or ``full``, times ``factor``."""
        return (self.repeat or (quick if self.quick else full)) * self.factor

    def count(self, quick: int, full: int) -> int:
        """Operations: ``--ops``, else ``quick`` or ``full``."""
        return self.ops or (quick if self.quick else full)


def _source(body: str, prelude: str, keep: str | None) -> str:
    lines = ["def run(x, n):"]
    if prelude:
        lines.append(f"    {prelude}")
    if keep:
        lines.append(f"    {keep} = None")
    lines.append(f"    loops = range(max(1, n // {UNROLL}))")
    lines.append("    t0 = perf_counter()")
    lines.append("    for _ in loops:")
    lines.extend(f"        {body}" for _ in range(UNROLL))
    lines.append("    t1 = perf_counter()")
    result = f"len(loops) * {UNROLL}, t1 - t0" + (f", {keep}" if keep else "")
    lines.append(f"    return {result}")
    return "\n".join(lines)


def _compile(body: str, prelude: str, keep: str | None) -> Any:
    scope: dict[str, Any] = {"perf_counter": time.perf_counter}
    code = compile(_source(body, prelude, keep), f"<tracedsync bench: {body}>", "exec")
    exec(code, scope)
    return scope["run"]


def unrolled(body: str, prelude: str = "") -> Runner:
    """A runner executing ``body`` (one line; ``x`` is the object) n times."""
    run: Runner = _compile(body, prelude, None)
    return run


def unrolled_keeping(body: str, keep: str) -> KeepingRunner:
    """:func:`unrolled`, also returning the local ``keep`` after the loop, so
    that what the body made can be checked (traced or plain)."""
    run: KeepingRunner = _compile(body, "", keep)
    return run


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the cyclic collector off for the block."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def one_cpu() -> Iterator[None]:
    """Keep this thread, and the threads it starts meanwhile, on one CPU.

    A hand-off between two threads on two CPUs costs a cross-CPU wake-up
    whose latency swings with what else the machine runs (a ping-pong's
    ratio to plain spread from 0.4x to 2.9x over three runs here); on one
    CPU the hand-off goes through the GIL and one run queue, and what is
    left to compare is the primitives' own cost.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def rotated(names: Sequence[T], rep: int) -> list[T]:
    """``names`` rotated by ``rep``: each repetition starts with another one."""
    if not names:
        return []
    k = rep % len(names)
    return [*names[k:], *names[:k]]


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles: the spread printed beside a median."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def traced_implementations() -> list[tuple[str, Any, Any]]:
    """(name, Lock class, RLock class) of each implementation here: the
    compiled one when the extension is built, and the pure-Python one."""
    out: list[tuple[str, Any, Any]] = []
    if primitives.CompiledLock is not None:
        out.append(("compiled", primitives.CompiledLock, primitives.CompiledRLock))
    out.append(("pure", primitives.PureLock, primitives.PureRLock))
    return out


def traced_lock_types() -> tuple[type, ...]:
    """Every traced ``Lock`` class (what ``threading.Lock()`` makes under ``install()``)."""
    return tuple(cls for _, cls, _ in traced_implementations())
