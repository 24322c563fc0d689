"""Workloads shared by tests: forced contention without timing guesses."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tracedsync.testing import blocked_on, run_threads, wait_until


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


#: Where the holder can be when the waiter blocks: in Contention.holder,
#: polling (the polling helpers are tracedsync's, so not user frames).
HOLDER_SITES = {f"tests/helpers.py:{n}" for n in _lines_of(Contention.holder)}
