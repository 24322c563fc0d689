"""The pure implementation's lock: a token in a list, waiters queued in ``_wq``
(``primitives._TokenLock``).

The races the wait protocol must survive are forced here deterministically: a
``list`` subclass stands in for ``_wq`` and plays the giving thread at the
exact moment a waiter queues itself. Mutual exclusion under real
interleavings is test_implementation's test_stress_mixed_acquires_keep_mutual_exclusion.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import wait_until
from tracedsync import primitives

PURE = pytest.mark.parametrize(
    "cls", [primitives.PureLock, primitives.PureRLock], ids=["Lock", "RLock"]
)


class _GiverOnQueue(list[Any]):
    """A waiter queue that runs ``act(queue)`` once, right after a waiter
    queues itself (``on="append"``) or right before it withdraws
    (``on="remove"``): another thread's give, at the worst moment."""

    def __init__(self, act: Callable[[Any], None], on: str = "append") -> None:
        super().__init__()
        self.act: Callable[[Any], None] | None = act
        self.on = on

    def _act(self, on: str) -> None:
        act = self.act
        if act is not None and on == self.on:
            self.act = None
            act(self)

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        self._act("append")

    def remove(self, waiter: Any) -> None:
        self._act("remove")
        super().remove(waiter)


def _held_token_lock() -> Any:
    lock = primitives.PureLock()
    assert lock._try(False)
    return lock


def test_a_waiter_that_finds_the_token_on_its_last_try_leaves_the_queue() -> None:
    """Queued, then the token is there: take it and leave the queue."""
    lock = primitives.PureLock()
    assert lock._wait(-1) is True
    assert lock._tok == [] and not lock._wq


def test_a_waiter_woken_as_it_queues_takes_the_given_token() -> None:
    """The token comes back and the giver wakes us between our queueing and
    our last try: the try takes it, and the wake-up is not left in the queue."""
    lock = _held_token_lock()

    def give(queue: Any) -> None:
        lock._tok.append(True)
        queue.pop(0).release()

    lock._wq = _GiverOnQueue(give)
    assert lock._wait(-1) is True
    assert lock._tok == [] and not lock._wq


@pytest.mark.parametrize("token_free", [True, False], ids=["token-free", "token-taken"])
def test_a_waiter_woken_as_it_times_out_takes_a_free_token(token_free: bool) -> None:
    """A giver picks us just as our time runs out, before we withdraw. We are
    no longer queued, so the give was meant for us: we take the token if it is
    still free; if someone else took it, its taker wakes the next waiter."""
    lock = _held_token_lock()

    def give(queue: Any) -> None:
        lock._tok.append(True)
        queue.pop(0)  # picked, its release() still to come
        if not token_free:
            lock._tok.pop()  # a thread that was not waiting took it first

    lock._wq = _GiverOnQueue(give, on="remove")
    assert lock._wait(0.001) is token_free
    assert lock._tok == [] and not lock._wq


def test_a_waiter_that_times_out_unwoken_leaves_the_queue() -> None:
    lock = _held_token_lock()
    assert lock._wait(0.01) is False
    assert lock._tok == [] and not lock._wq


@pytest.mark.skipif(sys.platform == "win32", reason="setitimer")
def test_an_interrupted_waiter_passes_its_wake_up_on() -> None:
    """The main thread waits; a giver gives the token back and picks the main
    thread to wake, and then Ctrl-C interrupts it. The interrupted waiter must
    wake the next waiter in its place, or that one sleeps with the lock free."""
    assert threading.current_thread() is threading.main_thread()
    lock = _held_token_lock()
    queued = threading.Event()
    got: list[bool] = []

    def second_waiter() -> None:
        queued.set()
        got.append(lock._try(True, 10))

    second = threading.Thread(target=second_waiter, daemon=True)

    def giver_then_ctrl_c(signum: int, frame: Any) -> None:
        if not lock._wq:  # the main thread has not queued itself yet: later
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        # The main thread is queued, and asleep in its waiter lock's acquire().
        second.start()
        assert queued.wait(10)
        wait_until(lambda: len(lock._wq) == 2)
        lock._tok.append(True)  # the give...
        lock._wq.pop(0)  # ...picks the main thread, first in the queue
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, giver_then_ctrl_c)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            lock._wait(-1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    second.join(10)
    assert not second.is_alive(), "the second waiter was never woken"
    assert got == [True]
    assert lock._tok == [] and not lock._wq


@PURE
def test_every_blocked_waiter_gets_the_lock_in_turn(cls: Any) -> None:
    """Eight threads blocked on a held lock each get it once it is released."""
    lock = cls()
    lock.acquire()
    done: list[int] = []

    def worker(i: int) -> None:
        with lock:
            done.append(i)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: len(lock._wq) == 8)
    lock.release()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert sorted(done) == list(range(8))
    assert lock._tok == [True] and not lock._wq
    assert lock.statistics().acquisitions == 9
