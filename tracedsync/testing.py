"""Helpers for tests of threaded code, tracedsync's own included.

Interleavings are forced with events, never with sleeps, and every thread
started here is joined with a timeout and checked to have ended::

    from tracedsync.testing import held_in_thread, wait_until, blocked_on

    lock = tracedsync.Lock()
    with held_in_thread(lock):
        assert lock.acquire(timeout=0.01) is False   # a contention, counted
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tracedsync import lifecycle, registry, waits
from tracedsync.exporters.base import Exporter, LogEvent

__all__ = [
    "LogCollector",
    "blocked_on",
    "held_in_thread",
    "reset",
    "run_threads",
    "threads_running",
    "wait_until",
]


def reset() -> None:
    """Stop tracedsync's pipeline and forget collected primitives' stats."""
    lifecycle.shutdown()
    registry.reset_stats()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def blocked_on(prim: Any, idle: bool | None = None) -> Callable[[], bool]:
    """A predicate: some thread is blocked on ``prim`` (a lock-like wait past
    the wait threshold, or any idle wait; ``idle`` narrows to one of them)."""

    def check() -> bool:
        return any(
            entry.prim is prim and (idle is None or entry.idle is idle)
            for entry in waits.snapshot().values()
        )

    return check


def run_threads(
    *targets: Callable[[], Any], timeout: float = 30.0, names: Sequence[str] | None = None
) -> None:
    """Start one thread per target, join each with a timeout, assert all ended."""
    with threads_running(*targets, timeout=timeout, names=names):
        pass


@contextlib.contextmanager
def threads_running(
    *targets: Callable[[], Any],
    timeout: float = 30.0,
    names: Sequence[str] | None = None,
    release: threading.Event | None = None,
) -> Iterator[list[threading.Thread]]:
    """Run one thread per target for the ``with`` block. Leaving it, normally
    or not, sets ``release`` (what the threads wait for to finish), then
    joins each thread with a timeout and asserts all ended."""
    threads = [
        threading.Thread(target=t, name=(names[i] if names else None), daemon=True)
        for i, t in enumerate(targets)
    ]
    for t in threads:
        t.start()
    try:
        yield threads
    finally:
        if release is not None:
            release.set()
        for t in threads:
            t.join(timeout)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {timeout}s: {alive}"


@contextlib.contextmanager
def held_in_thread(
    prim: Any, *, name: str = "holder", timeout: float = 30.0
) -> Iterator[threading.Thread]:
    """Hold ``prim`` (``with prim:``) in another thread for the ``with`` block.

    The thread has taken it when the block starts and lets go when the block
    ends; it is joined (and must have ended) before the block's exit returns.
    """
    held = threading.Event()
    release = threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with prim:
                held.set()
                release.wait(timeout)
        except BaseException as exc:  # reported in the test's thread
            failure.append(exc)
            held.set()

    thread = threading.Thread(target=hold, name=name, daemon=True)
    thread.start()
    try:
        if not held.wait(timeout):
            raise AssertionError(f"{name} did not take {prim!r} within {timeout} s")
        if failure:
            raise failure[0]
        yield thread
    finally:
        release.set()
        thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{name} still running after {timeout} s")
    if failure:
        raise failure[0]


class LogCollector(Exporter):
    """An exporter keeping the log events it receives (for assertions)."""

    name = "collector"
    wants_logs = True

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def export_logs(self, events: Sequence[LogEvent]) -> None:
        self.events.extend(events)

    def named(self, event: str) -> list[LogEvent]:
        """The events called ``event``, in the order they came."""
        return [e for e in self.events if e.get("event") == event]
