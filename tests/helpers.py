"""Workloads shared by tests: forced contention without timing guesses."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import run_threads
from tracedsync import recorder


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def blocked_on(prim: Any) -> Callable[[], bool]:
    """True once some thread is blocked on ``prim`` past the wait threshold."""
    return lambda: any(p is prim for p, *_ in recorder.waiting_threads().values())


class Contention:
    """One thread holds ``lock`` until another is blocked on it, then a bit longer."""

    def __init__(self, lock: Any, extra_hold: float = 0.02) -> None:
        self.lock = lock
        self.extra_hold = extra_hold
        self.held = threading.Event()
        self.measured_ns = 0
        self.acquire_line = 0

    def holder(self) -> None:
        with self.lock:
            self.held.set()
            wait_until(blocked_on(self.lock))
            time.sleep(self.extra_hold)

    def waiter(self, around: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.held.wait(10)

        def acquire() -> None:
            t0 = time.monotonic_ns()
            self.acquire_line = sys._getframe().f_lineno + 1
            self.lock.acquire()
            self.measured_ns = time.monotonic_ns() - t0
            self.lock.release()

        if around is None:
            acquire()
        else:
            around(acquire)

    def run(self, around: Callable[[Callable[[], None]], None] | None = None) -> None:
        run_threads(self.holder, lambda: self.waiter(around), names=["holder", "waiter"])


def _lines_of(*functions: Callable[..., Any]) -> set[int]:
    lines: set[int] = set()
    for fn in functions:
        source, first = inspect.getsourcelines(fn)
        lines.update(range(first, first + len(source)))
    return lines


#: Where the holder can be when the waiter blocks: polling in wait_until.
HOLDER_SITES = {f"tests/helpers.py:{n}" for n in _lines_of(wait_until, blocked_on)}
