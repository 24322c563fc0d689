"""The pure implementation's lock: a token in a list, waiters queued in ``_wq``
(``primitives._TokenLock``).

The races the wait protocol must survive are forced here deterministically: a
``list`` subclass stands in for ``_wq`` and plays the giving thread at the
exact moment a waiter queues itself or withdraws. Mutual exclusion under real
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
from tracedsync import _stdlib, primitives

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


#: HANDOFF_AFTER for a giver that hands the token over / only wakes the waiter.
HANDS_OVER = pytest.mark.parametrize(
    "hands_over", [True, False], ids=["handed-over", "woken-to-retry"]
)


@pytest.fixture
def handoff(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    def set_mode(hands_over: bool) -> None:
        monkeypatch.setattr(primitives, "HANDOFF_AFTER", 0.0 if hands_over else float("inf"))

    return set_mode


@HANDS_OVER
def test_a_token_given_back_as_a_waiter_queues_is_its(
    hands_over: bool, handoff: Callable[[bool], None]
) -> None:
    """Another thread gives the token back between our queueing and our last
    try: handed over, the try fails and the wait ends at once; woken, the try
    takes it. Either way the token is ours and the queue empty."""
    handoff(hands_over)
    lock = _held_token_lock()
    lock._wq = _GiverOnQueue(lambda queue: lock._give())
    assert lock._wait(-1) is True
    assert lock._tok == [] and not lock._wq


@HANDS_OVER
def test_a_token_handed_over_as_the_time_runs_out_is_kept(
    hands_over: bool, handoff: Callable[[bool], None]
) -> None:
    """The token comes back just before we withdraw at the end of our timeout:
    handed to us, it is ours (out of the queue means handed over); only woken,
    we time out and the token stays free."""
    handoff(hands_over)
    lock = _held_token_lock()
    lock._wq = _GiverOnQueue(lambda queue: lock._give(), on="remove")
    assert lock._wait(0.001) is hands_over
    assert lock._tok == ([] if hands_over else [True]) and not lock._wq


def test_a_waiter_queueing_as_the_first_one_leaves_is_handed_the_token(
    handoff: Callable[[bool], None],
) -> None:
    """The giver finds a waiter, takes the token out for it, and the waiter
    has left (timed out); a new one queued meanwhile, found the token out and
    went to sleep. The giver must look at the queue again and hand the token
    to the new waiter, not just put it back."""
    handoff(True)
    lock = _held_token_lock()
    leaving = (_stdlib.allocate_lock(), 0.0)
    arriving = (_stdlib.allocate_lock(), 0.0)
    leaving[0].acquire()
    arriving[0].acquire()

    class Racing(list[Any]):
        def pop(self, index: Any = -1) -> Any:
            if leaving in self:
                self.remove(leaving)  # timed out and withdrew...
                self.append(arriving)  # ...as another thread queued
                raise IndexError("pop from empty list")
            return super().pop(index)

    lock._wq = Racing([leaving])
    lock._give()
    assert not arriving[0].locked(), "the new waiter was not woken"
    assert lock._tok == [] and not lock._wq  # the token is the new waiter's
    assert leaving[0].locked()


def test_a_waiter_that_times_out_unhanded_leaves_the_queue() -> None:
    lock = _held_token_lock()
    assert lock._wait(0.01) is False
    assert lock._tok == [] and not lock._wq


@pytest.mark.skipif(sys.platform == "win32", reason="setitimer")
@HANDS_OVER
def test_an_interrupted_waiter_passes_on_what_it_was_given(
    hands_over: bool, handoff: Callable[[bool], None]
) -> None:
    """The main thread waits, a second thread queues behind it, the token
    comes back (handed to the main thread, or waking it), and then Ctrl-C
    interrupts it. The interrupted waiter must pass the token (or the wake-up)
    on, or the second sleeps with the lock free."""
    assert threading.current_thread() is threading.main_thread()
    handoff(hands_over)
    lock = _held_token_lock()
    queued = threading.Event()
    got: list[bool] = []

    def second_waiter() -> None:
        queued.set()
        got.append(lock._try(True, 10))

    second = threading.Thread(target=second_waiter, daemon=True)

    def give_then_ctrl_c(signum: int, frame: Any) -> None:
        if not lock._wq:  # the main thread has not queued itself yet: later
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        second.start()
        assert queued.wait(10)
        wait_until(lambda: len(lock._wq) == 2)
        lock._give()  # to the main thread, first in the queue
        if hands_over:
            assert len(lock._wq) == 1 and lock._tok == []
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, give_then_ctrl_c)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            lock._wait(-1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    second.join(15)
    assert not second.is_alive()
    assert got == [True], "what the interrupted waiter was given was lost"
    assert lock._tok == [] and not lock._wq


@PURE
@HANDS_OVER
def test_a_waiter_that_has_waited_long_enough_is_handed_the_lock(
    cls: Any, hands_over: bool, handoff: Callable[[bool], None]
) -> None:
    """Released while a thread has waited HANDOFF_AFTER, the lock is that
    thread's: the releasing thread's immediate try fails. (A waiter that must
    win the token back loses it, again and again, to a thread that loops
    acquire/release holding the GIL: it would starve.) Before that the waiter
    is only woken, and the releasing thread may take the lock back."""
    handoff(hands_over)
    lock = cls()
    lock.acquire()
    got: list[bool] = []
    release = threading.Event()

    def waiter() -> None:
        got.append(lock.acquire(timeout=10))
        release.wait(10)
        lock.release()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    wait_until(lambda: len(lock._wq) == 1)
    lock.release()
    retaken = lock.acquire(False)
    assert retaken is not hands_over
    if retaken:
        lock.release()
    release.set()
    t.join(10)
    assert not t.is_alive() and got == [True]
    assert lock.acquire(False) is True
    lock.release()


@PURE
def test_every_blocked_waiter_gets_the_lock_in_turn(cls: Any) -> None:
    """Eight threads blocked on a held lock each get it once it is released.
    (Not necessarily first come first served: a wait that outlives the wait
    threshold queues again for its second phase, recorder._block.)"""
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
