"""Drop-in traced replacements for ``threading``'s primitives (pure Python).

Each class has the stdlib's signature, return values, exceptions and blocking
semantics, plus a keyword-only ``name=``. CPython's ``Lib/test/lock_tests.py``
is the reference and runs against them (``tests/conformance``).

The hot path of ``Lock`` and ``RLock`` is deliberately one small piece per
method: a non-blocking try and one clock read on acquire; one clock read
and the counter updates on release. Everything else
(blocking, thresholds crossed, bad arguments) is a call into
``tracedsync.recorder``. The counters live on the primitive itself as
``_hsum``/``_hmax``/``_hhist`` (hold total, max and raw histogram), ``_t``
(when the current hold began, 0 when not held) and ``_owner`` (the holding
thread's ident, 0 when none); the recorder reads them through those names,
so a compiled type exposing the same attributes can replace these classes.
Acquisitions are not counted apart: they are the finished holds the
histogram counts plus the one under way (``recorder._lock_acquisitions``).

Two implementations of ``Lock`` and ``RLock`` live here: ``PureLock`` and
``PureRLock`` (this module, the reference; their lock is a token in a
list, see ``_TokenLock``) and ``CompiledLock`` and
``CompiledRLock`` (thin subclasses of the C types in ``tracedsync._speedups``
that inherit the C hot path, None where the extension is not built).
``Lock`` and ``RLock`` are the compiled ones unless the extension is missing
or ``TRACEDSYNC_PURE_PYTHON=1`` (``tracedsync._impl``); ``IMPLEMENTATION``
says which.
"""

from __future__ import annotations

import sys
import warnings
from _thread import get_ident as _get_ident
from collections import deque as _deque
from time import monotonic as _time
from time import monotonic_ns as _now
from typing import TYPE_CHECKING, Any

from tracedsync import _impl, _stdlib, recorder
from tracedsync.recorder import RAW_BUCKETS, SlowStats

__all__ = [
    "IMPLEMENTATION",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "CompiledLock",
    "CompiledRLock",
    "Condition",
    "Event",
    "Lock",
    "PureLock",
    "PureRLock",
    "RLock",
    "Semaphore",
]

from threading import BrokenBarrierError

_allocate_lock = _stdlib.allocate_lock

#: While nothing consumes records (the recorder is not recording), holds
#: from about a second (2**30 ns) still go to the recorder, which drops them
#: at once: 2**30 - 1 is the largest int CPython 3.11+ compares on its fast
#: path, and 2**62 took 20-30 ns more per release.
_HOLD_OFF_NS = (1 << 30) - 1

#: Holds at least this long (ns) go to the recorder.
_hold_ns = _HOLD_OFF_NS


def _set_hold_threshold(value: int) -> None:
    global _hold_ns
    _hold_ns = value if recorder.recording else _HOLD_OFF_NS
    if _impl.speedups is not None:
        _impl.speedups.set_hold_threshold(value)


recorder.set_hold_threshold_listener(_set_hold_threshold)


class _Traced:
    """What every traced primitive has: a name, an id, a kind and stats."""

    __slots__ = ()
    _meta: tuple[int, str, str]
    _st: SlowStats

    @property
    def name(self) -> str:
        """The given or inferred name, e.g. ``pool_lock (app/db.py:41)``."""
        return self._meta[1]

    @property
    def kind(self) -> str:
        """``lock``, ``rlock``, ``condition``, ``semaphore``, ``bounded_semaphore``,
        ``event`` or ``barrier``."""
        return self._meta[2]

    @property
    def id(self) -> int:
        """A process-unique id (a counter, not ``id()``)."""
        return self._meta[0]

    def statistics(self) -> recorder.PrimitiveStats:
        """What this primitive measured so far, as a frozen ``PrimitiveStats``."""
        return recorder.read_counters(self).to_stats(self._meta[1], self._meta[2], self._meta[0])

    def __del__(self) -> None:
        recorder.collected(self)


#: A thread waiting for a pure Lock or RLock this long (seconds) is handed the
#: lock at the next release instead of being woken to race for it.
HANDOFF_AFTER = 0.001


class _TokenLock:
    """The lock under ``PureLock`` and ``PureRLock``: free while the list
    ``_tok`` holds its one token.

    Taking the token is ``self._tok.pop()`` (IndexError when the lock is
    held) and giving it back ``self._tok.append(True)``. Both are single C
    calls, atomic under the GIL, that CPython specialises for lists: together
    half what ``SimpleQueue.get_nowait``/``put_nowait`` cost, and a tenth of
    ``_thread.lock.acquire(False)`` plus ``release()``.

    A thread that finds the token out blocks in ``_wait``: it queues
    ``(a private _thread.lock, since)`` in ``_wq``, tries the token once more
    and sleeps on that lock. Whoever gives the token back and finds ``_wq``
    not empty (``_wake``) wakes the first waiter to try again, or, once that
    waiter has waited ``HANDOFF_AFTER``, hands the token to it directly.
    Because a waiter queues itself before its last try and a giver puts the
    token back before looking at the queue, no wake-up is lost. The sleep is
    ``_thread.lock.acquire``, so it waits exactly like ``threading.Lock``:
    the GIL released, interruptibly (signal handlers run, Ctrl-C raises), the
    timeout kept across interruptions. Like ``threading.Lock`` it is not
    fair, but no waiter starves for long behind a thread that releases and
    re-acquires in a loop.
    """

    if not TYPE_CHECKING:  # mypy: the attributes are slots of the subclasses
        __slots__ = ()
    _tok: list[bool]
    _wq: list[Any]

    def _new_token(self) -> None:
        """A fresh, free lock (also after fork: a waiter may have held the old one)."""
        self._tok = [True]
        self._wq = []  # a list: an empty deque would cost each lock 760 bytes

    def _try(self, blocking: Any = True, timeout: Any = -1) -> bool:
        """``_thread.lock.acquire(blocking, timeout)`` on the token, arguments
        and errors included."""
        if timeout != -1 or (blocking is not True and blocking is not False):
            recorder.validate_acquire_args(blocking, timeout)
        try:
            self._tok.pop()
            return True
        except IndexError:
            if not blocking or timeout == 0:
                return False
        return self._wait(timeout)

    def _wait(self, timeout: float) -> bool:
        """Block until the token is ours (True) or ``timeout`` seconds pass
        (False; a negative timeout waits for ever).

        We queue ``(our lock, since)`` and sleep on our lock. A giver either
        wakes us to try again (our entry stays queued) or, once we have waited
        ``HANDOFF_AFTER`` seconds, hands the token to us: it takes our entry
        out of ``_wq`` and from that moment the token is ours. Being out of the
        queue is what says so, whether we were woken, timed out or interrupted
        meanwhile."""
        tok = self._tok
        queue = self._wq
        waiter = _allocate_lock()
        waiter.acquire()
        now = _time()
        entry = (waiter, now)
        deadline = now + timeout if timeout >= 0 else 0.0
        while True:
            try:
                queue.append(entry)
                try:
                    tok.pop()
                except IndexError:
                    pass
                else:
                    if not self._withdraw(entry):  # handed a second token: a double release
                        self._give()
                    return True
                if timeout < 0:
                    woken = waiter.acquire()
                else:
                    remaining = deadline - _time()
                    woken = remaining > 0 and waiter.acquire(True, remaining)
            except BaseException:  # interrupted (Ctrl-C): leave, passing on what we were given
                if self._withdraw(entry):
                    self._pass_wake_on()
                else:
                    self._give()
                raise
            if not woken:  # timed out
                if not self._withdraw(entry):
                    return True  # handed the token as the time ran out: ours
                self._pass_wake_on()
                return False
            if not self._withdraw(entry):
                return True  # handed over
            try:  # woken to try again
                tok.pop()
                return True
            except IndexError:
                pass  # taken first: queue again (keeping our place in time)

    def _withdraw(self, entry: tuple[Any, float]) -> bool:
        """Take ``entry`` out of the queue; False if a giver already did (and
        so handed it the token)."""
        try:
            self._wq.remove(entry)
            return True
        except ValueError:
            return False

    def _pass_wake_on(self) -> None:
        """A waiter leaves without the token: a wake-up meant for it goes to
        the next waiter if the token is free."""
        if self._tok and self._wq:
            self._wake()

    def _give(self) -> None:
        """Put the token back and wake (or hand it to) the first waiter."""
        self._tok.append(True)
        if self._wq:
            self._wake()

    def _wake(self) -> None:
        """Wake the first waiting thread to try for the token, or hand the
        token to it if it has waited ``HANDOFF_AFTER`` seconds.

        Only waking would let a thread that releases and re-acquires in a loop
        (holding the GIL, as a waiter cannot) take the token back every time:
        waiters would starve. Only handing over would make every contended
        acquisition a thread switch (a convoy): 50x slower. So it is both, as
        in Go's sync.Mutex."""
        tok = self._tok
        queue = self._wq
        while queue:
            try:
                waiter, since = queue[0]
            except IndexError:
                return
            if _time() - since < HANDOFF_AFTER:
                try:
                    waiter.release()
                except RuntimeError:
                    pass  # woken already, not yet running
                return
            try:
                tok.pop()
            except IndexError:
                return  # taken: whoever has it gives it on
            try:
                waiter, since = queue.pop(0)
            except IndexError:  # the waiter left (timed out) meanwhile
                tok.append(True)
                continue  # and someone may have queued since
            try:
                waiter.release()
            except RuntimeError:
                pass  # woken already: it will find itself handed over
            return

    def _rel(self) -> None:
        """``_thread.lock.release()``: the token back, RuntimeError if free."""
        if self._tok:
            raise RuntimeError("release unlocked lock")
        self._give()


# ---------------------------------------------------------------------------
# Lock
# ---------------------------------------------------------------------------


class _LockAPI(_Traced):
    """The Python side both implementations of ``Lock`` share."""

    if not TYPE_CHECKING:  # mypy: the attributes are slots of the subclasses
        __slots__ = ()
    _t: int
    _owner: int
    _blame: int | None

    if TYPE_CHECKING:

        def locked(self) -> bool: ...
        def _try(self, blocking: Any = True, timeout: Any = -1) -> bool: ...
        def _rel(self) -> None: ...

    def _release_save(self) -> int:
        # Condition.wait: the lock is released while waiting; that time is not
        # hold time, and the re-acquire afterwards is not an acquisition.
        t0 = self._t
        held = 0
        if t0:
            held = _now() - t0
            self._t = 0
            self._owner = 0
            if self._blame is not None:
                try:
                    recorder.hold_end(self, t0, held, 2)
                except Exception:
                    pass
        self._rel()
        return held

    def _acquire_restore(self, state: Any) -> None:
        self._try()
        held = state if isinstance(state, int) else 0
        # Continue the hold: what was held before the wait still counts.
        self._t = _now() - held
        self._owner = _get_ident()

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} tracedsync.Lock object name={self._meta[1]!r} at {id(self):#x}>"


class PureLock(_LockAPI, _TokenLock):
    """A traced ``threading.Lock``: a primitive lock, released by any thread.

    ``acquire(blocking=True, timeout=-1)`` returns True once acquired; with
    ``blocking=False`` it returns False at once if the lock is held; with a
    timeout it returns False when the timeout expires first.
    """

    __slots__ = (
        "__weakref__",
        "_blame",
        "_hhist",
        "_hmax",
        "_hsum",
        "_meta",
        "_owner",
        "_st",
        "_t",
        "_tok",
        "_wq",
    )

    def __new__(cls, *, name: str | None = None) -> Any:
        if cls is PureLock and recorder.untraced_creation(0):
            return _stdlib.Lock()
        return object.__new__(cls)

    def __init__(self, *, name: str | None = None) -> None:
        self._new_token()
        self._t = 0
        self._owner = 0
        self._hsum = 0
        self._hmax = 0
        self._hhist = [0] * RAW_BUCKETS
        self._blame: int | None = None
        self._st = SlowStats()
        self._meta = recorder.register(self, "lock", name, 0)

    # -- hot path ----------------------------------------------------------

    def acquire(self, blocking: Any = True, timeout: Any = -1) -> bool:
        """Acquire the lock; see the class docstring for the return value."""
        if blocking is True and timeout == -1:
            try:
                self._tok.pop()
            except IndexError:
                return recorder.lock_acquire_slow(self, True, -1)
            self._t = _now()
            self._owner = _get_ident()
            return True
        return recorder.lock_acquire_slow(self, blocking, timeout)

    def __enter__(self) -> bool:
        try:
            self._tok.pop()
        except IndexError:
            return recorder.lock_acquire_slow(self, True, -1)
        self._t = _now()
        self._owner = _get_ident()
        return True

    def release(self) -> None:
        """Release the lock (any thread may); RuntimeError if it is unlocked."""
        t0 = self._t
        if t0:
            d = _now() - t0
            self._t = 0
            self._owner = 0
            self._hsum += d
            self._hhist[d.bit_length()] += 1
            if d > self._hmax:
                self._hmax = d
            if d >= _hold_ns or self._blame is not None:
                try:
                    recorder.hold_end(self, t0, d, 2)
                except Exception:
                    pass
            self._tok.append(True)  # held (it has a start): the token is out
            if self._wq:
                self._wake()
        else:
            self._rel()  # RuntimeError if unlocked

    def __exit__(self, t: object, v: object, tb: object) -> None:
        t0 = self._t
        if t0:
            d = _now() - t0
            self._t = 0
            self._owner = 0
            self._hsum += d
            self._hhist[d.bit_length()] += 1
            if d > self._hmax:
                self._hmax = d
            if d >= _hold_ns or self._blame is not None:
                try:
                    recorder.hold_end(self, t0, d, 2)
                except Exception:
                    pass
            self._tok.append(True)  # held (it has a start): the token is out
            if self._wq:
                self._wake()
        else:
            self._rel()  # RuntimeError if unlocked

    # -- the rest of the stdlib API -----------------------------------------

    def locked(self) -> bool:
        """True if the lock is held by any thread."""
        return not self._tok

    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def _is_owned(self) -> bool:
        # A Lock has no owner: "owned" means locked by anyone. Condition uses
        # this instead of an acquire(False) probe that would pollute stats.
        return not self._tok

    def _at_fork_reinit(self) -> None:
        self._new_token()
        self._t = 0
        self._owner = 0
        self._blame = None


# ---------------------------------------------------------------------------
# RLock
# ---------------------------------------------------------------------------


class _RLockAPI(_Traced):
    """The Python side both implementations of ``RLock`` share."""

    if not TYPE_CHECKING:  # mypy: the attributes are slots of the subclasses
        __slots__ = ()
    _t: int
    _owner: int
    _count: int
    _blame: int | None

    if TYPE_CHECKING:

        def _try(self, blocking: Any = True, timeout: Any = -1) -> bool: ...
        def _rel(self) -> None: ...

    def _release_save(self) -> tuple[int, int, int]:
        count = self._count
        if count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        owner = self._owner
        t0 = self._t
        held = _now() - t0 if t0 else 0
        self._count = 0
        self._owner = 0
        self._t = 0
        if self._blame is not None:
            try:
                recorder.hold_end(self, t0, held, 2)
            except Exception:
                pass
        self._rel()
        return (count, owner, held)

    def _acquire_restore(self, state: Any) -> None:
        self._try()
        count, owner = state[0], state[1]
        held = state[2] if len(state) > 2 else 0
        self._owner = owner
        self._count = count
        self._t = _now() - held

    def __repr__(self) -> str:
        state = "locked" if self._count else "unlocked"
        return (
            f"<{state} tracedsync.RLock object name={self._meta[1]!r} "
            f"owner={self._owner} count={self._count} at {id(self):#x}>"
        )


def _rlock_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``threading.RLock()`` accepts any arguments and ignores them; from 3.13
    it warns that passing them is deprecated. So does ours."""
    if (args or kwargs) and sys.version_info >= (3, 13):
        warnings.warn(
            "Passing arguments to RLock is deprecated and will be removed in 3.15",
            DeprecationWarning,
            stacklevel=3,
        )


class PureRLock(_RLockAPI, _TokenLock):
    """A traced ``threading.RLock``: reentrant, released by its owner only.

    Re-entries by the owning thread are counted apart (``reentries``); a hold
    lasts from the first acquire to the matching last release.
    """

    __slots__ = (
        "__weakref__",
        "_blame",
        "_count",
        "_depth",
        "_hhist",
        "_hmax",
        "_hsum",
        "_meta",
        "_owner",
        "_reent",
        "_st",
        "_t",
        "_tok",
        "_wq",
    )

    def __new__(cls, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        if cls is PureRLock and recorder.untraced_creation(0):
            return _stdlib.RLock(*args, **kwargs)
        return object.__new__(cls)

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any) -> None:
        _rlock_arguments(args, kwargs)
        self._new_token()
        self._t = 0
        self._owner = 0
        self._count = 0
        self._depth = 0
        self._reent = 0
        self._hsum = 0
        self._hmax = 0
        self._hhist = [0] * RAW_BUCKETS
        self._blame: int | None = None
        self._st = SlowStats()
        self._meta = recorder.register(self, "rlock", name, 0)

    # -- hot path ----------------------------------------------------------

    def acquire(self, blocking: Any = True, timeout: Any = -1) -> bool:
        """Acquire the lock, or re-enter it if this thread owns it already."""
        if blocking is True and timeout == -1:
            me = _get_ident()
            if self._owner == me:
                count = self._count + 1
                self._count = count
                self._reent += 1
                if count > self._depth:
                    self._depth = count
                return True
            try:
                self._tok.pop()
            except IndexError:
                return recorder.rlock_acquire_slow(self, True, -1)
            self._owner = me
            self._count = self._depth = 1
            self._t = _now()
            return True
        return recorder.rlock_acquire_slow(self, blocking, timeout)

    def __enter__(self) -> bool:
        me = _get_ident()
        if self._owner == me:
            count = self._count + 1
            self._count = count
            self._reent += 1
            if count > self._depth:
                self._depth = count
            return True
        try:
            self._tok.pop()
        except IndexError:
            return recorder.rlock_acquire_slow(self, True, -1)
        self._owner = me
        self._count = self._depth = 1
        self._t = _now()
        return True

    def release(self) -> None:
        """Leave one level; the lock is free after the last. RuntimeError if
        this thread does not own it."""
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        if self._count > 1:  # owned, so at least 1
            self._count -= 1
            return
        self._count = 0
        d = _now() - self._t
        self._owner = 0  # first: the histogram counts this hold from here on
        self._hsum += d
        self._hhist[d.bit_length()] += 1
        if d > self._hmax:
            self._hmax = d
        if d >= _hold_ns or self._blame is not None:
            try:
                recorder.hold_end(self, self._t, d, 2)
            except Exception:
                pass
        self._t = 0
        self._tok.append(True)  # owned, so the token is out
        if self._wq:
            self._wake()

    def __exit__(self, t: object, v: object, tb: object) -> None:
        # release(), inlined: one Python call less per with-block
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        if self._count > 1:  # owned, so at least 1
            self._count -= 1
            return
        self._count = 0
        d = _now() - self._t
        self._owner = 0  # first: the histogram counts this hold from here on
        self._hsum += d
        self._hhist[d.bit_length()] += 1
        if d > self._hmax:
            self._hmax = d
        if d >= _hold_ns or self._blame is not None:
            try:
                recorder.hold_end(self, self._t, d, 2)
            except Exception:
                pass
        self._t = 0
        self._tok.append(True)
        if self._wq:
            self._wake()

    # -- the rest of the stdlib API -----------------------------------------

    def locked(self) -> bool:
        """True if some thread owns the lock."""
        return self._count > 0

    def _is_owned(self) -> bool:
        return self._owner == _get_ident() and self._count > 0

    def _recursion_count(self) -> int:
        return self._count if self._owner == _get_ident() else 0

    def _at_fork_reinit(self) -> None:
        self._new_token()
        self._owner = 0
        self._count = 0
        self._t = 0
        self._blame = None


# ---------------------------------------------------------------------------
# The compiled Lock and RLock: the same hot path in C (tracedsync/_speedups.c)
# ---------------------------------------------------------------------------

CompiledLock: type[Any] | None = None
CompiledRLock: type[Any] | None = None

if _impl.speedups is not None:
    from tracedsync._speedups import LockCore as _LockCore
    from tracedsync._speedups import RLockCore as _RLockCore

    class _CompiledLock(_LockAPI, _LockCore):
        """A traced ``threading.Lock``: a primitive lock, released by any thread.

        ``acquire(blocking=True, timeout=-1)`` returns True once acquired; with
        ``blocking=False`` it returns False at once if the lock is held; with a
        timeout it returns False when the timeout expires first.
        """

        # acquire, __enter__, release, __exit__, locked, _is_owned, _try,
        # _rel, _at_fork_reinit and the counters come from the C base.
        __slots__ = ()

        def __new__(cls, *, name: str | None = None) -> Any:
            if cls is _CompiledLock and recorder.untraced_creation(0):
                return _stdlib.Lock()
            return _LockCore.__new__(cls)

        def __init__(self, *, name: str | None = None) -> None:
            self._st = SlowStats()
            self._meta = recorder.register(self, "lock", name, 0)

        acquire_lock = _LockCore.acquire
        release_lock = _LockCore.release
        locked_lock = _LockCore.locked

    class _CompiledRLock(_RLockAPI, _RLockCore):
        """A traced ``threading.RLock``: reentrant, released by its owner only.

        Re-entries by the owning thread are counted apart (``reentries``); a hold
        lasts from the first acquire to the matching last release.
        """

        __slots__ = ()

        def __new__(cls, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
            if cls is _CompiledRLock and recorder.untraced_creation(0):
                return _stdlib.RLock(*args, **kwargs)
            return _RLockCore.__new__(cls)

        def __init__(self, *args: Any, name: str | None = None, **kwargs: Any) -> None:
            _rlock_arguments(args, kwargs)
            self._st = SlowStats()
            self._meta = recorder.register(self, "rlock", name, 0)

    # Calls of the inherited C methods (release, locked, ...) specialise only
    # when the descriptor's type is the instance's: give the subclasses their own.
    _impl.speedups.adopt_methods(_CompiledLock)
    _impl.speedups.adopt_methods(_CompiledRLock)
    CompiledLock = _CompiledLock
    CompiledRLock = _CompiledRLock
    _impl.speedups._bind(recorder)

#: "compiled" or "pure": which Lock and RLock this process uses.
IMPLEMENTATION = _impl.IMPLEMENTATION

if TYPE_CHECKING:
    Lock = PureLock
    RLock = PureRLock
else:
    Lock = CompiledLock if CompiledLock is not None else PureLock
    RLock = CompiledRLock if CompiledRLock is not None else PureRLock

# ---------------------------------------------------------------------------
# Condition
# ---------------------------------------------------------------------------


class Condition(_Traced):
    """A traced ``threading.Condition``.

    Without a lock it makes its own traced ``RLock`` named after it, which
    records the acquisitions; the Condition records its ``wait()`` calls
    (span ``condition.wait``, outcome ``notified`` or ``timeout``). A traced
    lock passed in records its own acquisitions, under its own name.
    """

    __slots__ = ("__dict__", "__weakref__", "_meta", "_st")

    def __new__(cls, lock: Any = None, *, name: str | None = None) -> Any:
        if cls is Condition and recorder.untraced_creation(0):
            return _stdlib.Condition(lock)
        return object.__new__(cls)

    def __init__(self, lock: Any = None, *, name: str | None = None) -> None:
        self._st = SlowStats()
        self._meta = recorder.register(self, "condition", name, 0)
        if lock is None:
            lock = RLock(name=self._meta[1])
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        if hasattr(lock, "_release_save"):
            self._release_save = lock._release_save  # type: ignore[method-assign]
        if hasattr(lock, "_acquire_restore"):
            self._acquire_restore = lock._acquire_restore  # type: ignore[method-assign]
        if hasattr(lock, "_is_owned"):
            self._is_owned = lock._is_owned  # type: ignore[method-assign]
        self._waiters: _deque[Any] = _deque()

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._waiters.clear()

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    def __repr__(self) -> str:
        return f"<Condition({self._lock}, {len(self._waiters)}) name={self._meta[1]!r}>"

    def _release_save(self) -> Any:
        self._lock.release()  # No state to save

    def _acquire_restore(self, x: Any) -> None:
        self._lock.acquire()  # Ignore saved state

    def _is_owned(self) -> bool:
        # Return True if lock is owned by current_thread.
        # This method is called only if _lock doesn't have _is_owned().
        if self._lock.acquire(False):
            self._lock.release()
            return False
        else:
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait until notified or the timeout, re-acquire.

        Returns True when notified, False on timeout.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        t0 = _now()
        waiter = _allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        saved_state = self._release_save()
        gotit = False
        finished = False
        recorder.begin_idle_wait(self, t0)
        try:  # restore state no matter what (e.g., KeyboardInterrupt)
            if timeout is None:
                waiter.acquire()
                gotit = True
            elif timeout > 0:
                gotit = waiter.acquire(True, timeout)
            else:
                gotit = waiter.acquire(False)
            finished = True
            return gotit
        finally:
            recorder.end_idle_wait()
            self._acquire_restore(saved_state)
            if not gotit:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            if finished:
                try:
                    recorder.idle_wait_end(
                        self,
                        t0,
                        _now(),
                        "notified" if gotit else "timeout",
                        timeout is None or timeout > 0,
                        not gotit,
                    )
                except Exception:
                    pass

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true (or the timeout); return its last value."""
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _time() + waittime
                else:
                    waittime = endtime - _time()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up at most ``n`` waiting threads; RuntimeError if the lock is not held."""
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        while waiters and n > 0:
            waiter = waiters[0]
            try:
                waiter.release()
            except RuntimeError:
                # gh-92530: a previous notify() released this waiter but was
                # interrupted before removing it from the queue.
                pass
            else:
                n -= 1
            try:
                waiters.remove(waiter)
            except ValueError:
                pass

    def notify_all(self) -> None:
        """Wake up every waiting thread."""
        self.notify(len(self._waiters))

    def notifyAll(self) -> None:
        """Deprecated alias of ``notify_all()``."""
        warnings.warn(
            "notifyAll() is deprecated, use notify_all() instead",
            DeprecationWarning,
            stacklevel=2,
        )
        self.notify_all()


# ---------------------------------------------------------------------------
# Semaphore, BoundedSemaphore
# ---------------------------------------------------------------------------

#: Outstanding acquisitions remembered per thread to pair releases with them.
_MAX_HOLDS_PER_THREAD = 1024


class Semaphore(_Traced):
    """A traced ``threading.Semaphore``.

    ``acquire(blocking=True, timeout=None)`` returns True once a unit is
    taken, False on a failed non-blocking try or a timeout. A hold lasts from
    an acquire to a release by the same thread (else the oldest outstanding
    acquisition): a semaphore used as a signal has holds that mean little.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_acq",
        "_blame",
        "_hhist",
        "_hmax",
        "_holds",
        "_hsum",
        "_meta",
        "_st",
    )
    _kind = "semaphore"

    def __new__(cls, value: int = 1, *, name: str | None = None) -> Any:
        if cls is Semaphore and recorder.untraced_creation(0):
            return _stdlib.Semaphore(value)
        return object.__new__(cls)

    def __init__(self, value: int = 1, *, name: str | None = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._cond = _stdlib.Condition(_allocate_lock())
        self._value = value
        self._acq = 0
        self._hsum = 0
        self._hmax = 0
        self._hhist = [0] * RAW_BUCKETS
        self._blame = None
        self._holds: dict[int, list[int]] = {}
        self._st = SlowStats()
        self._meta = recorder.register(self, self._kind, name, 0)

    def __repr__(self) -> str:
        cls = self.__class__
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x} "
            f"name={self._meta[1]!r}: value={self._value}>"
        )

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one unit; see the class docstring for the return value."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        rc = False
        endtime = None
        t0 = 0
        finished = False
        me = _get_ident()
        try:
            with self._cond:
                while self._value == 0:
                    if not blocking:
                        break
                    if timeout is not None:
                        if endtime is None:
                            endtime = _time() + timeout
                        else:
                            timeout = endtime - _time()
                            if timeout <= 0:
                                break
                    if not t0 and (timeout is None or timeout > 0):
                        t0 = _now()  # a real wait begins
                        recorder.begin_lock_wait(self, t0)
                    self._cond.wait(timeout)
                else:
                    self._value -= 1
                    rc = True
                    self._acq += 1
                    holds = self._holds.get(me)
                    if holds is None:
                        holds = self._holds[me] = []
                    elif len(holds) >= _MAX_HOLDS_PER_THREAD:
                        del holds[0]
                    holds.append(_now())
            finished = True
        finally:
            if t0:
                recorder.end_lock_wait()
            if finished and t0:
                try:
                    recorder.semaphore_wait_end(self, t0, rc)
                except Exception:
                    pass
            elif finished and not rc:
                try:
                    recorder.count_would_block(self)
                except Exception:
                    pass
        return rc

    __enter__ = acquire

    def _check_release(self, n: int) -> None:
        pass

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units, waking up to ``n`` waiters."""
        if n < 1:
            raise ValueError("n must be one or more")
        me = _get_ident()
        ended: list[tuple[int, int]] = []
        with self._cond:
            self._check_release(n)
            self._value += n
            now = _now()
            for _ in range(n):
                t0 = self._pop_hold(me)
                if t0 is None:
                    break
                d = now - t0
                self._hsum += d
                self._hhist[d.bit_length()] += 1
                if d > self._hmax:
                    self._hmax = d
                if d >= _hold_ns:
                    ended.append((t0, d))
            self._cond.notify(n)
        for t0, d in ended:
            try:
                recorder.hold_end(self, t0, d, 2)
            except Exception:
                pass

    def _pop_hold(self, me: int) -> int | None:
        holds = self._holds.get(me)
        if not holds:
            # Released by another thread: pair with the oldest acquisition.
            oldest = None
            for ident, times in self._holds.items():
                if times and (oldest is None or times[0] < self._holds[oldest][0]):
                    oldest = ident
            if oldest is None:
                return None
            me = oldest
            holds = self._holds[me]
            t0 = holds.pop(0)
        else:
            t0 = holds.pop()
        if not holds:
            del self._holds[me]
        return t0

    def holders(self) -> list[tuple[int, int]]:
        """(thread ident, acquired at) of outstanding acquisitions, oldest first."""
        with self._cond:
            pairs = [(t, ident) for ident, times in self._holds.items() for t in times]
        return [(ident, t) for t, ident in sorted(pairs)]

    def __exit__(self, t: object, v: object, tb: object) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """A traced ``threading.BoundedSemaphore``: releasing more than was
    acquired raises ``ValueError``, like the stdlib."""

    __slots__ = ()
    _kind = "bounded_semaphore"

    def __new__(cls, value: int = 1, *, name: str | None = None) -> Any:
        if cls is BoundedSemaphore and recorder.untraced_creation(0):
            return _stdlib.BoundedSemaphore(value)
        return object.__new__(cls)

    def __init__(self, value: int = 1, *, name: str | None = None) -> None:
        super().__init__(value, name=name)
        self._initial_value = value

    def __repr__(self) -> str:
        cls = self.__class__
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x} "
            f"name={self._meta[1]!r}: value={self._value}/{self._initial_value}>"
        )

    def _check_release(self, n: int) -> None:
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")


# ---------------------------------------------------------------------------
# Event
# ---------------------------------------------------------------------------


class Event(_Traced):
    """A traced ``threading.Event``. ``wait()`` returns the flag: True once set,
    False on timeout (span ``event.wait``, outcome ``set`` or ``timeout``)."""

    __slots__ = ("__dict__", "__weakref__", "_meta", "_st")

    def __new__(cls, *, name: str | None = None) -> Any:
        if cls is Event and recorder.untraced_creation(0):
            return _stdlib.Event()
        return object.__new__(cls)

    def __init__(self, *, name: str | None = None) -> None:
        self._cond = _stdlib.Condition(_allocate_lock())
        self._flag = False
        self._st = SlowStats()
        self._meta = recorder.register(self, "event", name, 0)

    def __repr__(self) -> str:
        cls = self.__class__
        status = "set" if self._flag else "unset"
        head = f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}"
        return f"{head} name={self._meta[1]!r}: {status}>"

    def _at_fork_reinit(self) -> None:
        # Private method called by Thread._after_fork()
        self._cond._at_fork_reinit()

    def is_set(self) -> bool:
        """True if the flag is set."""
        return self._flag

    def isSet(self) -> bool:
        """Deprecated alias of ``is_set()``."""
        warnings.warn(
            "isSet() is deprecated, use is_set() instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.is_set()

    def set(self) -> None:
        """Set the flag and wake every waiting thread."""
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        with self._cond:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or the timeout expires; return the flag."""
        t0 = _now()
        blocked = False
        with self._cond:
            signaled = self._flag
            if not signaled:
                blocked = timeout is None or timeout > 0
                recorder.begin_idle_wait(self, t0)
                try:
                    signaled = self._cond.wait(timeout)
                finally:
                    recorder.end_idle_wait()
        try:
            recorder.idle_wait_end(
                self, t0, _now(), "set" if signaled else "timeout", blocked, not signaled
            )
        except Exception:
            pass
        return signaled


# ---------------------------------------------------------------------------
# Barrier
# ---------------------------------------------------------------------------


class Barrier(_Traced):
    """A traced ``threading.Barrier``. ``wait()`` returns the arrival index
    (0 to parties-1) or raises ``BrokenBarrierError`` (span ``barrier.wait``,
    outcome ``passed``, ``broken`` or ``timeout``)."""

    __slots__ = ("__dict__", "__weakref__", "_meta", "_st")

    def __new__(
        cls,
        parties: int,
        action: Any = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
    ) -> Any:
        if cls is Barrier and recorder.untraced_creation(0):
            return _stdlib.Barrier(parties, action, timeout)
        return object.__new__(cls)

    def __init__(
        self,
        parties: int,
        action: Any = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if sys.version_info >= (3, 13) and parties < 1:
            raise ValueError("parties must be > 0")
        self._cond = _stdlib.Condition(_allocate_lock())
        self._action = action
        self._timeout = timeout
        self._parties = parties
        self._state = 0  # 0 filling, 1 draining, -1 resetting, -2 broken
        self._count = 0
        self._st = SlowStats()
        self._meta = recorder.register(self, "barrier", name, 0)

    def __repr__(self) -> str:
        cls = self.__class__
        head = f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x} name={self._meta[1]!r}"
        if self.broken:
            return f"{head}: broken>"
        return f"{head}: waiters={self.n_waiting}/{self.parties}>"

    def wait(self, timeout: float | None = None) -> int:
        """Wait until all parties have called ``wait()``; return this thread's index."""
        if timeout is None:
            timeout = self._timeout
        t0 = _now()
        outcome = "broken"
        blocked = False
        try:
            with self._cond:
                self._enter()  # Block while the barrier drains.
                index = self._count
                self._count += 1
                try:
                    if index + 1 == self._parties:
                        # We release the barrier
                        self._release()
                    else:
                        # We wait until someone releases us
                        blocked = True
                        recorder.begin_idle_wait(self, t0)
                        try:
                            passed = self._cond.wait_for(lambda: self._state != 0, timeout)
                        finally:
                            recorder.end_idle_wait()
                        if not passed:
                            # timed out.  Break the barrier
                            outcome = "timeout"
                            self._break()
                            raise BrokenBarrierError
                        if self._state < 0:
                            raise BrokenBarrierError
                        assert self._state == 1
                    outcome = "passed"
                    return index
                finally:
                    self._count -= 1
                    # Wake up any threads waiting for barrier to drain.
                    self._exit()
        finally:
            try:
                recorder.idle_wait_end(self, t0, _now(), outcome, blocked, outcome == "timeout")
            except Exception:
                pass

    def _enter(self) -> None:
        while self._state in (-1, 1):
            # It is draining or resetting, wait until done
            self._cond.wait()
        # see if the barrier is in a broken state
        if self._state < 0:
            raise BrokenBarrierError
        assert self._state == 0

    def _release(self) -> None:
        try:
            if self._action:
                self._action()
            # enter draining state
            self._state = 1
            self._cond.notify_all()
        except BaseException:
            # an exception during the _action handler.  Break and reraise
            self._break()
            raise

    def _exit(self) -> None:
        if self._count == 0:  # noqa: SIM102 - kept as in the stdlib
            if self._state in (-1, 1):
                # resetting or draining
                self._state = 0
                self._cond.notify_all()

    def reset(self) -> None:
        """Return the barrier to its initial state; waiters get BrokenBarrierError."""
        with self._cond:
            if self._count > 0:
                if self._state == 0:
                    # reset the barrier, waking up threads
                    self._state = -1
                elif self._state == -2:
                    # was broken, set it to reset state
                    # which clears when the last thread exits
                    self._state = -1
            else:
                self._state = 0
            self._cond.notify_all()

    def abort(self) -> None:
        """Put the barrier into the broken state."""
        with self._cond:
            self._break()

    def _break(self) -> None:
        # An internal error was detected.  The barrier is set to
        # a broken state all parties awakened.
        self._state = -2
        self._cond.notify_all()

    @property
    def parties(self) -> int:
        """The number of threads required to trip the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of threads currently waiting at the barrier."""
        # We don't need synchronization here since this is an ephemeral result
        # anyway.  It returns the correct value in the steady state.
        if self._state == 0:
            return self._count
        return 0

    @property
    def broken(self) -> bool:
        """True if the barrier is in a broken state."""
        return self._state == -2


for _cls in (PureLock, PureRLock, CompiledLock, CompiledRLock):
    if _cls is not None:
        # Both implementations present themselves as the stdlib names.
        _public = "RLock" if "RLock" in _cls.__name__ else "Lock"
        for _attr in vars(_cls).values():
            if hasattr(_attr, "__qualname__") and hasattr(_attr, "__code__"):
                _attr.__qualname__ = f"{_public}.{_attr.__name__}"
        _cls.__name__ = _cls.__qualname__ = _public
for _cls in (
    PureLock,
    PureRLock,
    CompiledLock,
    CompiledRLock,
    Condition,
    Semaphore,
    BoundedSemaphore,
    Event,
    Barrier,
):
    if _cls is not None:
        _cls.__module__ = "tracedsync"
del _cls, _attr, _public
