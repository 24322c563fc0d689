"""Drop-in traced replacements for ``threading``'s primitives.

Each class has the stdlib's signature, return values, exceptions and blocking
semantics, plus a keyword-only ``name=``. CPython's ``Lib/test/lock_tests.py``
is the reference and runs against them (``tests/conformance``).

Blocking is never ours: a ``Lock`` or ``RLock`` is a thin layer over a
``_thread`` lock (as CPython's own ``threading._PyRLock`` is), a
``Semaphore`` counts under a raw mutex and blocks on a stdlib ``Condition``
over it, and ``Condition``, ``Event`` and ``Barrier`` are the stdlib's
classes with their waits timed. The layer is the hot path -- on acquire a
non-blocking try, one clock read and the holder's ident (and a semaphore's
hold: thread, site and Thread); on release one clock read and the counters
-- and everything else (blocking, thresholds crossed, bad arguments) is a
call into ``tracedsync.recorder``. The counters live on the primitive
(``_hsum``, ``_hmax``, ``_hhist``; ``recorder`` lists what else), so a
compiled type with the same attributes can replace the layer: ``Lock``,
``RLock``, ``Semaphore`` and ``BoundedSemaphore`` are ``CompiledLock``,
``CompiledRLock``, ``CompiledSemaphore`` and ``CompiledBoundedSemaphore``
(``tracedsync._speedups``) where the extension is built and
``TRACEDSYNC_PURE_PYTHON`` is not set, else ``PureLock``, ``PureRLock``,
``PureSemaphore`` and ``PureBoundedSemaphore``; ``IMPLEMENTATION`` says which.
"""

from __future__ import annotations

import sys
import threading
import warnings
from _thread import LockType
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from sys import _getframe
from threading import BrokenBarrierError
from time import monotonic as _time
from time import monotonic_ns as _now
from typing import TYPE_CHECKING, Any

from tracedsync import _impl, _settings, _stdlib, _threads, acquisition, recorder, registry, waits
from tracedsync.counters import RAW_BUCKETS, PrimitiveStats, SlowStats
from tracedsync.describe import primitive_fields

if TYPE_CHECKING:
    _StdCondition = threading.Condition
    _StdEvent = threading.Event
    _StdBarrier = threading.Barrier
else:  # the originals, also when threading is patched already
    _StdCondition = _stdlib.Condition
    _StdEvent = _stdlib.Event
    _StdBarrier = _stdlib.Barrier

__all__ = [
    "IMPLEMENTATION",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "CompiledBoundedSemaphore",
    "CompiledLock",
    "CompiledRLock",
    "CompiledSemaphore",
    "Condition",
    "Event",
    "Lock",
    "PureBoundedSemaphore",
    "PureLock",
    "PureRLock",
    "PureSemaphore",
    "RLock",
    "Semaphore",
]

#: A hold budget window (ns); see tracedsync.budget.
_WINDOW = 1_000_000_000


class _Traced:
    """What every traced primitive has: a name, an id, a kind and stats."""

    __slots__ = ()
    _meta: registry.Identity
    _st: SlowStats | None

    @property
    def name(self) -> str:
        """The given or inferred name, e.g. ``pool_lock (app/db.py:41)``."""
        return self._meta.name

    @property
    def kind(self) -> str:
        """``lock``, ``rlock``, ``condition``, ``semaphore``, ``bounded_semaphore``,
        ``event`` or ``barrier``."""
        return self._meta.kind

    @property
    def id(self) -> int:
        """A process-unique id (a counter, not ``id()``)."""
        return self._meta.id

    @property
    def instance(self) -> int:
        """1, 2, ... in creation order among the primitives made at the same site."""
        return self._meta.instance

    def statistics(self) -> PrimitiveStats:
        """What this primitive measured so far, as a frozen ``PrimitiveStats``."""
        meta = self._meta
        return registry.read_counters(self).to_stats(meta.name, meta.kind, meta.id)

    if TYPE_CHECKING:

        def _used(self) -> bool:
            """Counted something on its hot path (its slow paths count in ``_st``)."""

    #: Keeps the counters of a primitive that was used (folded by name later).
    __del__ = registry.collected


# ---------------------------------------------------------------------------
# Lock and RLock: what both implementations share
# ---------------------------------------------------------------------------


class _Holdable(_Traced):
    """What every primitive with holds has (Lock, RLock, the semaphores):
    the hold counters, the hold budget's state, a waiter's reservation of
    the hold's span id, and whether acquisitions note their site."""

    if not TYPE_CHECKING:  # mypy: the attributes are slots of the subclasses
        __slots__ = ()
    _blame: int | None
    _track: bool
    _hsum: int
    _hmax: int
    _hsup: int
    _hhist: list[int]
    _admit: int
    _window: int


class _OwnedAPI(_Holdable):
    """The Python side that Lock and RLock (both implementations) share: an
    owner, the hold's start and its counters, given up and taken back by
    ``Condition.wait``."""

    if not TYPE_CHECKING:  # mypy: the attributes are slots of the subclasses
        __slots__ = ()
    _t: int
    _owner: int
    _rt: int
    _acq_at: tuple[Any, int] | None

    if TYPE_CHECKING:

        def _try(self, blocking: Any = True, timeout: Any = -1) -> bool: ...
        def _rel(self) -> None: ...

    def _holders(self) -> list[tuple[int, int, Any, Any]]:
        """(thread ident, since, acquisition site, Thread) of the holder."""
        owner = self._owner
        if not owner:
            return []
        return [(owner, self._t, self._acq_at, _threads.active.get(owner))]

    def _give_up(self, depth: int) -> int:
        """``Condition.wait`` releases the lock while it waits: that time is
        not hold time, and the re-acquire afterwards is not an acquisition.
        Returns what was held so far (``_take_back`` continues from it).
        The compiled Lock and RLock do this and ``_take_back`` in C
        (``give_up``/``take_back`` in _speedups.c): a Condition's every wait
        and notify round trip pays them."""
        t0 = self._t
        now = _now()
        held = now - t0 if t0 else 0
        blame = self._blame
        self._blame = None
        self._t = 0
        self._rt = now  # a waiter's hand-off is measured from here
        self._owner = 0
        self._rel()
        if blame is not None:  # a waiter links to the hold that ends here
            recorder.hold_end(self, t0, now, blame, depth)
        return held

    def _take_back(self, held: int) -> None:
        """``Condition.wait`` is over: the lock is taken again, blocking as a
        lock wait if it must; the hold goes on from ``held``."""
        if not self._try(False):
            recorder.reacquire(self)
        self._t = _now() - held


class _LockAPI(_OwnedAPI):
    """The Python side of both implementations of ``Lock``."""

    if not TYPE_CHECKING:
        __slots__ = ()

    if TYPE_CHECKING:

        def locked(self) -> bool: ...

    def _taken(self, t: int) -> None:
        """The state once the slow path acquired."""
        self._t = t
        self._owner = _get_ident()

    def _release_save(self) -> int:
        return self._give_up(0)

    def _acquire_restore(self, state: Any) -> None:
        self._take_back(state if isinstance(state, int) else 0)
        self._owner = _get_ident()

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} tracedsync.Lock object name={self._meta.name!r} at {id(self):#x}>"


class _RLockAPI(_OwnedAPI):
    """The Python side of both implementations of ``RLock``."""

    if not TYPE_CHECKING:
        __slots__ = ()
    _count: int
    _depth: int
    _reent: int

    def _taken(self, t: int) -> None:
        """The state once the slow path acquired."""
        self._count = self._depth = 1
        self._t = t
        self._owner = _get_ident()  # last: a waiter that sees it sees the rest

    def _release_save(self) -> tuple[int, int, int]:
        count = self._count
        if count == 0:
            raise RuntimeError("cannot release un-acquired lock")
        owner = self._owner
        self._count = 0
        return (count, owner, self._give_up(self._depth))

    def _acquire_restore(self, state: Any) -> None:
        self._take_back(state[2] if len(state) > 2 else 0)
        self._count = state[0]
        self._owner = state[1]  # last: a waiter that sees it sees the rest

    def __repr__(self) -> str:
        state = "locked" if self._count else "unlocked"
        return (
            f"<{state} tracedsync.RLock object name={self._meta.name!r} "
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


_LOCK_SLOTS = (
    "__weakref__",
    "_acq_at",
    "_admit",
    "_blame",
    "_hhist",
    "_hmax",
    "_hsum",
    "_hsup",
    "_lock",
    "_meta",
    "_owner",
    "_rt",
    "_st",
    "_t",
    "_track",
    "_window",
)


class _LockClass(type):
    """The metaclass of ``Lock`` and ``RLock`` (both implementations).

    Once ``install()`` made them ``threading.Lock``/``RLock``, the modules
    tracedsync leaves untraced still get the stdlib's locks from them; on
    3.13, where ``threading.Lock`` is a type, ``isinstance(x,
    threading.Lock)`` holds for every lock, so it must still hold for those.
    Here it holds for the untraced stdlib locks, on every version. It costs
    nothing on the hot path: a traced lock's own check is answered by
    CPython's exact-type test before this is called, and instance creation
    and method calls never consult the metaclass. Subclasses keep the usual
    check.
    """

    def __instancecheck__(cls, instance: Any) -> bool:
        untraced = _UNTRACED_TYPES.get(cls)
        return type.__instancecheck__(cls, instance) or (
            untraced is not None and isinstance(instance, untraced)
        )

    def __subclasscheck__(cls, subclass: type) -> bool:
        untraced = _UNTRACED_TYPES.get(cls)
        return type.__subclasscheck__(cls, subclass) or (
            untraced is not None and issubclass(subclass, untraced)
        )


#: Our Lock/RLock classes -> the type of the stdlib's lock each also stands for.
_UNTRACED_TYPES: dict[type, type] = {}


def _make_pure_lock(cls: type) -> Any:
    """A pure Lock's state, before the registry names it."""
    prim: Any = object.__new__(cls)
    prim._lock = _allocate_lock()
    prim._t = prim._owner = prim._rt = 0
    prim._hsum = prim._hmax = prim._hsup = 0
    prim._hhist = [0] * RAW_BUCKETS
    prim._admit = prim._window = 0
    prim._blame = prim._st = prim._acq_at = None
    prim._track = False
    return prim


def _make_pure_rlock(cls: type) -> Any:
    """A pure RLock's state, before the registry names it."""
    prim = _make_pure_lock(cls)
    prim._count = prim._depth = prim._reent = 0
    return prim


def _make_plain(cls: type) -> Any:
    """A primitive whose state its ``__init__`` (the stdlib's) sets."""
    prim: Any = object.__new__(cls)
    prim._st = None
    return prim


# ---------------------------------------------------------------------------
# The pure-Python Lock and RLock: the reference
# ---------------------------------------------------------------------------


class _PureCore:
    """What the compiled core types provide the Lock and RLock layer with,
    over the ``_thread`` lock ``_lock``: the underlying acquire and release
    the slow paths use, and whether the hot path counted anything."""

    __slots__ = ()
    _lock: LockType
    _hsum: int
    _t: int

    def _try(self, blocking: Any = True, timeout: Any = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def _rel(self) -> None:
        self._lock.release()

    def _used(self) -> bool:
        return bool(self._hsum or self._t)


class PureLock(_PureCore, _LockAPI, metaclass=_LockClass):
    """A traced ``threading.Lock``: a primitive lock, released by any thread.

    ``acquire(blocking=True, timeout=-1)`` returns True once acquired; with
    ``blocking=False`` it returns False at once if the lock is held; with a
    timeout it returns False when the timeout expires first.
    """

    __slots__ = _LOCK_SLOTS
    _lock: LockType

    def __new__(cls, *, name: str | None = None) -> Any:
        self = registry.new(cls, "lock", name, _make_pure_lock)
        return _stdlib.Lock() if self is None else self

    def acquire(self, blocking: Any = True, timeout: Any = -1) -> bool:
        """Acquire the lock; see the class docstring for the return value."""
        if timeout != -1 or (blocking is not True and blocking is not False):
            recorder.validate_acquire_args(blocking, timeout)
        if self._lock.acquire(False):
            if self._track:  # before the owner: a waiter reads both as one
                frame = _getframe(1)
                self._acq_at = (frame.f_code, frame.f_lasti)
            self._t = _now()
            self._owner = _get_ident()
            return True
        return recorder.acquire_slow(self, blocking, timeout)

    __enter__ = acquire

    def release(self) -> None:
        """Release the lock (any thread may); RuntimeError if it is unlocked."""
        t0 = self._t
        if not t0:
            self._lock.release()  # RuntimeError if unlocked
            return
        self._t = 0  # first: the histogram counts this hold from here on
        now = _now()
        d = now - t0
        self._hsum += d
        self._hhist[d.bit_length()] += 1
        if d > self._hmax:
            self._hmax = d
        blame = self._blame
        self._blame = None
        self._rt = now
        self._owner = 0
        self._lock.release()
        if blame is not None:
            recorder.hold_end(self, t0, now, blame, 0)
        elif d >= _settings.current.hold_gate_ns:
            if d > self._admit or now - self._window >= _WINDOW:
                recorder.hold_end(self, t0, now, None, 0)
            else:
                self._hsup += 1  # the budget's window is full of slower holds

    def __exit__(self, t: object, v: object, tb: object) -> None:
        self.release()

    def locked(self) -> bool:
        """True if the lock is held by any thread."""
        return self._lock.locked()

    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def _is_owned(self) -> bool:
        # A Lock has no owner: "owned" means locked by anyone. Condition uses
        # this instead of an acquire(False) probe that would pollute stats.
        return self._lock.locked()

    def _at_fork_reinit(self) -> None:
        self._lock = _allocate_lock()
        self._t = 0
        self._owner = 0
        self._blame = None


class PureRLock(_PureCore, _RLockAPI, metaclass=_LockClass):
    """A traced ``threading.RLock``: reentrant, released by its owner only.

    Re-entries by the owning thread are counted apart (``reentries``); a hold
    lasts from the first acquire to the matching last release.
    """

    __slots__ = (*_LOCK_SLOTS, "_count", "_depth", "_reent")
    _lock: LockType

    def __new__(cls, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        self = registry.new(cls, "rlock", name, _make_pure_rlock)
        if self is None:
            return _stdlib.RLock(*args, **kwargs)
        _rlock_arguments(args, kwargs)
        return self

    def acquire(self, blocking: Any = True, timeout: Any = -1) -> bool:
        """Acquire the lock, or re-enter it if this thread owns it already."""
        if timeout != -1 or (blocking is not True and blocking is not False):
            recorder.validate_acquire_args(blocking, timeout)
        me = _get_ident()
        if self._owner == me:
            count = self._count + 1
            self._count = count
            self._reent += 1
            if count > self._depth:
                self._depth = count
            return True
        if self._lock.acquire(False):
            if self._track:  # before the owner: a waiter reads both as one
                frame = _getframe(1)
                self._acq_at = (frame.f_code, frame.f_lasti)
            self._count = self._depth = 1
            self._t = _now()
            self._owner = me
            return True
        return recorder.acquire_slow(self, blocking, timeout)

    __enter__ = acquire

    def release(self) -> None:
        """Leave one level; the lock is free after the last. RuntimeError if
        this thread does not own it."""
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        if self._count > 1:  # owned, so at least 1
            self._count -= 1
            return
        t0 = self._t
        self._t = 0  # first: the histogram counts this hold from here on
        self._count = 0
        now = _now()
        d = now - t0
        self._hsum += d
        self._hhist[d.bit_length()] += 1
        if d > self._hmax:
            self._hmax = d
        blame = self._blame
        self._blame = None
        self._rt = now
        depth = self._depth
        self._owner = 0
        self._lock.release()
        if blame is not None:
            recorder.hold_end(self, t0, now, blame, depth)
        elif d >= _settings.current.hold_gate_ns:
            if d > self._admit or now - self._window >= _WINDOW:
                recorder.hold_end(self, t0, now, None, depth)
            else:
                self._hsup += 1  # the budget's window is full of slower holds

    def __exit__(self, t: object, v: object, tb: object) -> None:
        self.release()

    def locked(self) -> bool:
        """True if some thread owns the lock."""
        return self._count > 0

    def _is_owned(self) -> bool:
        return self._owner == _get_ident() and self._count > 0

    def _recursion_count(self) -> int:
        return self._count if self._owner == _get_ident() else 0

    def _at_fork_reinit(self) -> None:
        self._lock = _allocate_lock()
        self._owner = 0
        self._count = 0
        self._t = 0
        self._blame = None


# ---------------------------------------------------------------------------
# The compiled Lock and RLock: the same layer in C (tracedsync/_speedups.c)
# ---------------------------------------------------------------------------

CompiledLock: type[Any] | None = None
CompiledRLock: type[Any] | None = None

if _impl.speedups is not None:
    from tracedsync._speedups import LockCore as _LockCore
    from tracedsync._speedups import RLockCore as _RLockCore

    class _CompiledLock(_LockAPI, _LockCore, metaclass=_LockClass):
        """A traced ``threading.Lock``: a primitive lock, released by any thread.

        ``acquire(blocking=True, timeout=-1)`` returns True once acquired; with
        ``blocking=False`` it returns False at once if the lock is held; with a
        timeout it returns False when the timeout expires first.
        """

        # acquire, __enter__, release, __exit__, locked, _is_owned, _try,
        # _rel, _at_fork_reinit and the counters come from the C base.
        __slots__ = ()

        def __new__(cls, *, name: str | None = None) -> Any:
            self = registry.new(cls, "lock", name, _LockCore.__new__)
            return _stdlib.Lock() if self is None else self

        acquire_lock = _LockCore.acquire
        release_lock = _LockCore.release
        locked_lock = _LockCore.locked
        # Condition.wait's give-up and take-back, in C (_OwnedAPI's are the reference)
        _release_save = _LockCore._release_save
        _acquire_restore = _LockCore._acquire_restore

    class _CompiledRLock(_RLockAPI, _RLockCore, metaclass=_LockClass):
        """A traced ``threading.RLock``: reentrant, released by its owner only.

        Re-entries by the owning thread are counted apart (``reentries``); a hold
        lasts from the first acquire to the matching last release.
        """

        __slots__ = ()

        def __new__(cls, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
            self = registry.new(cls, "rlock", name, _RLockCore.__new__)
            if self is None:
                return _stdlib.RLock(*args, **kwargs)
            _rlock_arguments(args, kwargs)
            return self

        _release_save = _RLockCore._release_save
        _acquire_restore = _RLockCore._acquire_restore

    # Calls of the inherited C methods (release, locked, ...) specialise only
    # when the descriptor's type is the instance's: give the subclasses their own.
    _impl.speedups.adopt_methods(_CompiledLock)
    _impl.speedups.adopt_methods(_CompiledRLock)
    CompiledLock = _CompiledLock
    CompiledRLock = _CompiledRLock
    _impl.speedups._bind(recorder)

for _cls, _untraced in (
    (PureLock, type(_stdlib.Lock())),
    (PureRLock, type(_stdlib.RLock())),
    (CompiledLock, type(_stdlib.Lock())),
    (CompiledRLock, type(_stdlib.RLock())),
):
    if _cls is not None:
        _UNTRACED_TYPES[_cls] = _untraced

#: "compiled" or "pure": which Lock, RLock, Semaphore and BoundedSemaphore this process uses.
IMPLEMENTATION = _impl.IMPLEMENTATION

if TYPE_CHECKING:
    Lock = PureLock
    RLock = PureRLock
else:
    Lock = CompiledLock if CompiledLock is not None else PureLock
    RLock = CompiledRLock if CompiledRLock is not None else PureRLock


# ---------------------------------------------------------------------------
# Condition: the stdlib's, its waits timed
# ---------------------------------------------------------------------------


class Condition(_Traced, _StdCondition):
    """A traced ``threading.Condition``.

    Without a lock it makes its own traced ``RLock`` with the same name,
    which records the acquisitions; the Condition records its ``wait()``
    calls (span ``condition.wait``, outcome ``notified`` or ``timeout``). A
    traced lock passed in records its own acquisitions, under its own name.
    """

    _lock: Any
    _waiters: Any

    def __new__(cls, lock: Any = None, *, name: str | None = None) -> Any:
        self = registry.new(cls, "condition", name, _make_plain)
        return _stdlib.Condition(lock) if self is None else self

    def __init__(self, lock: Any = None, *, name: str | None = None) -> None:
        _StdCondition.__init__(self, RLock(name=name) if lock is None else lock)

    def __repr__(self) -> str:
        return f"<Condition({self._lock}, {len(self._waiters)}) name={self._meta.name!r}>"

    def _used(self) -> bool:
        return False  # its waits count in _st, its lock's acquisitions in the lock

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait until notified or the timeout, re-acquire.

        Returns True when notified, False on timeout.
        """
        t0 = _now()
        entry = waits.begin(self, t0, idle=True)
        try:
            notified = _StdCondition.wait(self, timeout)
        finally:
            waits.end()
        recorder.idle_wait_end(
            self,
            t0,
            _now(),
            "notified" if notified else "timeout",
            timeout is None or timeout > 0,
            not notified,
            entry,
        )
        return notified


# ---------------------------------------------------------------------------
# Semaphore, BoundedSemaphore
# ---------------------------------------------------------------------------

#: Outstanding acquisitions remembered per thread to pair releases with them
#: (``MAX_HOLDS_PER_THREAD`` in _speedups.c).
_MAX_HOLDS_PER_THREAD = 1024


class _SemaphoreAPI(_Holdable):
    """The Python side of both implementations of ``Semaphore`` and
    ``BoundedSemaphore``: creation, repr, and ``_block``, the wait of an
    acquire that found no unit left.

    A unit is taken or given back under a raw mutex (``_mutex``); only a
    thread that must block uses a stdlib Condition over that mutex, so the
    uncontended path runs no Python-level locking at all. Each acquisition is
    noted (``_holders()``: thread ident, when, the caller's code object and
    offset, and its Thread) and resolved into names only when a wait, a
    finding or a report asks.
    """

    if not TYPE_CHECKING:  # mypy: the attributes are slots of the subclasses
        __slots__ = ()
    _kind = "semaphore"
    _stdlib_class: Any = _stdlib.Semaphore
    _mutex: Any
    _cond: threading.Condition | None
    _value: int
    #: The value it was made with. 0: a signal (its permits come from other
    #: threads' releases: an acquisition is not a hold anyone must give back).
    _initial_value: int
    _nwait: int
    _acq: int

    if TYPE_CHECKING:

        def _take(self, code: Any, offset: int) -> int:
            """Take a unit (the caller holds the mutex): the hold's start."""

        def _holders(self) -> list[tuple[int, int, Any, Any]]:
            """(thread ident, since, acquisition site, Thread) of every
            outstanding acquisition, oldest first."""

        @staticmethod
        def _make(cls: type[Any], value: int) -> Any: ...

    def __new__(cls, value: int = 1, *, name: str | None = None) -> Any:
        self = registry.new(cls, cls._kind, name, cls._make, value)
        return cls._stdlib_class(value) if self is None else self

    def __repr__(self) -> str:
        cls = self.__class__
        value = f"{self._value}"
        if self._kind == "bounded_semaphore":
            value += f"/{self._initial_value}"
        return (
            f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x} "
            f"name={self._meta.name!r}: value={value}>"
        )

    def _block(self, timeout: float | None, code: Any, offset: int) -> bool:
        """Wait for a unit (``acquire`` found none): True once taken, False
        when the timeout expired first.

        While recording, as a Lock's wait (``recorder._block``), phase 1 waits
        up to the wait threshold with no bookkeeping but the counters: most
        contended waits end there. A wait that outlives it will become a span, so phase 2
        first names the holders (``recorder.lock_wait_begin``, outside the
        mutex: it reads ``_holders()``) and notes the wait for the watchdog,
        from when it began, then waits on.
        """
        t0 = _now()
        settings = _settings.current
        # Not recording, no holder is named: one untimed wait is cheaper.
        first = settings.wait_ns / 1e9 if settings.recording else 0.0
        began = None
        got = False
        finished = False
        took_at = 0
        try:
            if first > 0:
                got, took_at = self._wait_unit(
                    first if timeout is None else min(first, timeout), code, offset
                )
            if not got:
                left = None if timeout is None else timeout - (_now() - t0) / 1e9
                if left is None or left > 0 or first <= 0:
                    began = recorder.lock_wait_begin(self, t0)
                    got, took_at = self._wait_unit(left, code, offset)
            finished = True
        finally:
            if began is not None:
                waits.end()
            if finished:
                recorder.lock_wait_end(self, t0, took_at if got else _now(), got, began)
        return got

    def _wait_unit(self, timeout: float | None, code: Any, offset: int) -> tuple[bool, int]:
        """Wait on the Condition over the mutex until a unit is left (then
        take it: True and the hold's start) or ``timeout`` expires."""
        with self._mutex:
            cond = self._cond
            if cond is None:
                cond = self._cond = _stdlib.Condition(self._mutex)
            self._nwait += 1
            try:
                endtime = None
                while not self._value:
                    if timeout is not None:
                        if endtime is None:
                            endtime = _time() + timeout
                        else:
                            timeout = endtime - _time()
                            if timeout <= 0:
                                return False, 0
                    cond.wait(timeout)
                return True, self._take(code, offset)
            finally:
                self._nwait -= 1


def _make_pure_semaphore(cls: type[Any], value: int) -> Any:
    """A pure Semaphore's state, before the registry names it."""
    if value < 0:
        raise ValueError("semaphore initial value must be >= 0")
    self = object.__new__(cls)
    self._mutex = _allocate_lock()
    self._cond = None
    self._value = value
    self._initial_value = value
    self._nwait = 0
    self._acq = self._hsum = self._hmax = self._hsup = 0
    self._admit = self._window = 0
    self._hhist = [0] * RAW_BUCKETS
    self._holds = {}
    self._blame = self._st = None
    self._track = True
    return self


class PureSemaphore(_SemaphoreAPI):
    """A traced ``threading.Semaphore``.

    ``acquire(blocking=True, timeout=None)`` returns True once a unit is
    taken, False on a failed non-blocking try or a timeout. A hold lasts from
    an acquire to a release by the same thread (else the oldest outstanding
    acquisition: a semaphore used as a signal has holds that mean little).
    Each acquisition remembers its thread and site, so permits a thread
    leaked are still named after it has ended.
    """

    __slots__ = (
        "__weakref__",
        "_acq",
        "_admit",
        "_blame",
        "_cond",
        "_hhist",
        "_hmax",
        "_holds",
        "_hsum",
        "_hsup",
        "_initial_value",
        "_meta",
        "_mutex",
        "_nwait",
        "_st",
        "_track",
        "_value",
        "_window",
    )
    _mutex: LockType
    #: thread ident -> [(since, code, offset, Thread)]: the Thread itself, as a
    #: later thread may run under the ident of one that ended holding permits
    #: (which it keeps alive until they are released: it names the leaker).
    #: Empty for a semaphore made empty (a signal: see ``_took``).
    _holds: dict[int, list[tuple[int, Any, int, Any]]]
    _make = staticmethod(_make_pure_semaphore)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one unit; see the class docstring for the return value."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        frame = _getframe(1)
        with self._mutex:
            if self._value:
                self._value -= 1
                self._took(frame.f_code, frame.f_lasti)
                return True
        if not blocking or (timeout is not None and timeout <= 0):
            recorder.count_would_block(self)
            return False
        return self._block(timeout, frame.f_code, frame.f_lasti)

    __enter__ = acquire

    def _used(self) -> bool:
        return bool(self._acq)

    def _take(self, code: Any, offset: int) -> int:
        self._value -= 1
        return self._took(code, offset)

    def _took(self, code: Any, offset: int) -> int:
        """A unit was taken (under the mutex): note the hold. Returns its
        start, which is also the end of the wait that led to it (one clock
        reading: in a timeline the hold never starts before the wait ends).
        A semaphore made empty is a signal: its acquisitions consume what
        other threads released, and are not holds."""
        self._acq += 1
        if not self._initial_value:
            return _now()
        me = _get_ident()
        holds = self._holds.get(me)
        if holds is None:
            holds = self._holds[me] = []
        elif len(holds) >= _MAX_HOLDS_PER_THREAD:
            del holds[0]
        now = _now()
        holds.append((now, code, offset, _threads.active.get(me)))
        return now

    def _check_release(self, n: int) -> None:
        pass

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units, waking up to ``n`` waiters."""
        if n < 1:
            raise ValueError("n must be one or more")
        ended: list[tuple[int, int]] = []
        with self._mutex:
            self._check_release(n)
            self._value += n
            now = _now()
            me = _get_ident()
            for _ in range(n):
                t0 = self._pop_hold(me)
                if t0 is None:
                    break
                d = now - t0
                self._hsum += d
                self._hhist[d.bit_length()] += 1
                if d > self._hmax:
                    self._hmax = d
                if d >= _settings.current.hold_gate_ns:
                    ended.append((t0, d))
            if self._nwait:
                assert self._cond is not None
                self._cond.notify(n)
        for t0, d in ended:
            if d > self._admit or now - self._window >= _WINDOW:
                recorder.hold_end(self, t0, now, None, 0)
            else:
                self._hsup += 1

    def _pop_hold(self, me: int) -> int | None:
        holds = self._holds.get(me)
        if not holds:
            # Released by another thread: pair with the oldest acquisition.
            oldest = None
            for ident, entries in self._holds.items():
                if entries and (oldest is None or entries[0][0] < self._holds[oldest][0][0]):
                    oldest = ident
            if oldest is None:
                return None
            me = oldest
            holds = self._holds[me]
            t0 = holds.pop(0)[0]
        else:
            t0 = holds.pop()[0]
        if not holds:
            del self._holds[me]
        return t0

    def _holders(self) -> list[tuple[int, int, Any, Any]]:
        with self._mutex:
            pairs = [
                (t, ident, code, offset, thread)
                for ident, entries in self._holds.items()
                for t, code, offset, thread in entries
            ]
        pairs.sort(key=lambda p: p[0])
        return [(ident, t, (code, offset), thread) for t, ident, code, offset, thread in pairs]

    def __exit__(self, t: object, v: object, tb: object) -> None:
        self.release()


class PureBoundedSemaphore(PureSemaphore):
    """A traced ``threading.BoundedSemaphore``: releasing more than was
    acquired raises ``ValueError``, like the stdlib."""

    __slots__ = ()
    _kind = "bounded_semaphore"
    _stdlib_class = _stdlib.BoundedSemaphore

    def _check_release(self, n: int) -> None:
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")


CompiledSemaphore: type[Any] | None = None
CompiledBoundedSemaphore: type[Any] | None = None

if _impl.speedups is not None:
    from tracedsync._speedups import SEMAPHORE_VALUE_MAX as _SEMAPHORE_VALUE_MAX
    from tracedsync._speedups import SemaphoreCore as _SemaphoreCore

    class _CompiledSemaphore(_SemaphoreAPI, _SemaphoreCore):
        """A traced ``threading.Semaphore``.

        ``acquire(blocking=True, timeout=None)`` returns True once a unit is
        taken, False on a failed non-blocking try or a timeout. A hold lasts from
        an acquire to a release by the same thread (else the oldest outstanding
        acquisition: a semaphore used as a signal has holds that mean little).
        Each acquisition remembers its thread and site, so permits a thread
        leaked are still named after it has ended.
        """

        # acquire, __enter__, release, __exit__, _take, _holders, _used, the
        # mutex and the counters come from the C base.
        __slots__ = ()
        _bounded = False
        #: The pure-Python class made for an initial value C does not count in.
        _pure: type[Any] = PureSemaphore

        @staticmethod
        def _make(cls: type[Any], value: int) -> Any:
            if value < 0:
                raise ValueError("semaphore initial value must be >= 0")
            # C counts in a long long: another initial value (a float, a
            # larger int) makes the pure-Python semaphore.
            if type(value) is not int or value > _SEMAPHORE_VALUE_MAX:
                return _make_pure_semaphore(cls._pure, value)
            return _SemaphoreCore.__new__(cls, value, cls._bounded)

        # What acquire() and release() raise for arguments that do not fit
        # their signatures: the C methods call these then.
        def _signature_acquire(self, blocking: Any = True, timeout: Any = None) -> None:
            pass

        def _signature_release(self, n: int = 1) -> None:
            pass

        _signature_acquire.__name__ = "acquire"
        _signature_release.__name__ = "release"

    class _CompiledBoundedSemaphore(_CompiledSemaphore):
        """A traced ``threading.BoundedSemaphore``: releasing more than was
        acquired raises ``ValueError``, like the stdlib."""

        __slots__ = ()
        _kind = "bounded_semaphore"
        _stdlib_class = _stdlib.BoundedSemaphore
        _bounded = True
        _pure = PureBoundedSemaphore

    # As for the locks: calls of the inherited C methods specialise only on
    # the descriptor's own type.
    _impl.speedups.adopt_methods(_CompiledSemaphore)
    _impl.speedups.adopt_methods(_CompiledBoundedSemaphore)
    _impl.speedups.bind_threads(_threads.active)
    CompiledSemaphore = _CompiledSemaphore
    CompiledBoundedSemaphore = _CompiledBoundedSemaphore

if TYPE_CHECKING:
    Semaphore = PureSemaphore
    BoundedSemaphore = PureBoundedSemaphore
else:
    Semaphore = CompiledSemaphore if CompiledSemaphore is not None else PureSemaphore
    BoundedSemaphore = (
        CompiledBoundedSemaphore if CompiledBoundedSemaphore is not None else PureBoundedSemaphore
    )


# ---------------------------------------------------------------------------
# Event: the stdlib's, its waits timed
# ---------------------------------------------------------------------------


class Event(_Traced, _StdEvent):
    """A traced ``threading.Event``. ``wait()`` returns the flag: True once set,
    False on timeout (span ``event.wait``, outcome ``set`` or ``timeout``)."""

    _flag: bool
    _cond: threading.Condition
    #: Waits that found the flag set (no lock taken, no clock read).
    _wfast: int

    def __new__(cls, *, name: str | None = None) -> Any:
        self = registry.new(cls, "event", name, cls._make)
        return _stdlib.Event() if self is None else self

    @staticmethod
    def _make(cls: type[Event]) -> Event:
        self: Event = _make_plain(cls)
        self._wfast = 0
        return self

    def __init__(self, *, name: str | None = None) -> None:
        _StdEvent.__init__(self)

    def __repr__(self) -> str:
        cls = self.__class__
        status = "set" if self._flag else "unset"
        head = f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}"
        return f"{head} name={self._meta.name!r}: {status}>"

    def _used(self) -> bool:
        return bool(self._wfast)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or the timeout expires; return the flag."""
        if self._flag:
            self._wfast += 1  # a wait that did not block: counted, no more
            return True
        t0 = _now()
        entry = waits.begin(self, t0, idle=True)
        try:
            with self._cond:
                signaled: bool = self._flag
                if not signaled:
                    signaled = self._cond.wait(timeout)
        finally:
            waits.end()
        recorder.idle_wait_end(
            self,
            t0,
            _now(),
            "set" if signaled else "timeout",
            timeout is None or timeout > 0,
            not signaled,
            entry,
        )
        return signaled


# ---------------------------------------------------------------------------
# Barrier: the stdlib's, its waits timed, a break reported
# ---------------------------------------------------------------------------


class Barrier(_Traced, _StdBarrier):
    """A traced ``threading.Barrier``. ``wait()`` returns the arrival index
    (0 to parties-1) or raises ``BrokenBarrierError`` (span ``barrier.wait``,
    outcome ``passed``, ``broken`` or ``timeout``). A barrier broken by a
    timeout, ``abort()`` or a ``reset()`` with waiters is reported
    (``barrier_broken``): how many of its parties arrived, which threads,
    where they waited."""

    _parties: int
    _count: int
    _state: int
    #: thread ident -> (when it arrived, where): the parties waiting now.
    _arrived: dict[int, tuple[int, Any]]
    #: (why, which thread) the barrier broke last.
    _breaking: tuple[str, int] | None

    def __new__(
        cls,
        parties: int,
        action: Any = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
    ) -> Any:
        self = registry.new(cls, "barrier", name, cls._make)
        return _stdlib.Barrier(parties, action, timeout) if self is None else self

    @staticmethod
    def _make(cls: type[Barrier]) -> Barrier:
        self: Barrier = _make_plain(cls)
        self._arrived = {}
        self._breaking = None
        return self

    def __init__(
        self,
        parties: int,
        action: Any = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
    ) -> None:
        _StdBarrier.__init__(self, parties, action, timeout)

    def _used(self) -> bool:
        return False  # its waits count in _st

    def __repr__(self) -> str:
        cls = self.__class__
        head = f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x} name={self._meta.name!r}"
        if self.broken:
            return f"{head}: broken>"
        return f"{head}: waiters={self.n_waiting}/{self.parties}>"

    def wait(self, timeout: float | None = None) -> int:
        """Wait until all parties have called ``wait()``; return this thread's index."""
        t0 = _now()
        me = _get_ident()
        frame = _getframe(1)
        self._arrived[me] = (t0, (frame.f_code, frame.f_lasti))
        entry = waits.begin(self, t0, idle=True)
        outcome = "broken"
        index = -1
        try:
            index = _StdBarrier.wait(self, timeout)
            outcome = "passed"
            return index
        except BrokenBarrierError:
            if self._breaking == ("timeout", me):
                outcome = "timeout"
            raise
        finally:
            waits.end()
            self._arrived.pop(me, None)
            recorder.idle_wait_end(
                self,
                t0,
                _now(),
                outcome,
                index != self._parties - 1,
                outcome == "timeout",
                entry,
            )

    def _break(self) -> None:
        # Who breaks it: a wait that timed out (_wait), abort(), or an action
        # that raised (_release) -- read from the stdlib method calling this.
        caller = _getframe(1).f_code.co_name
        if caller == "_wait":
            self._breaking = ("timeout", _get_ident())
            self._report_break("a wait timed out")
        elif caller == "_release":
            self._breaking = ("action", _get_ident())
            self._report_break("the barrier's action raised")
        else:
            self._breaking = ("abort", _get_ident())
            self._report_break("aborted")
        _StdBarrier._break(self)  # type: ignore[attr-defined]  # private, not in typeshed

    def reset(self) -> None:
        """Return the barrier to its initial state; waiters get BrokenBarrierError."""
        if self._count > 0 and self._state == 0:  # a glance: the report only
            self._report_break("reset with threads waiting")
        _StdBarrier.reset(self)

    def _report_break(self, cause: str) -> None:
        """The barrier breaks (under its condition's lock): who came, who did not."""
        try:
            arrived = sorted(self._arrived.items(), key=lambda kv: kv[1][0])
            threads = [
                {
                    "thread.name": _threads.thread_name(ident),
                    "thread.id": ident,
                    "site": acquisition.recorded(site),
                }
                for ident, (_since, site) in arrived
            ]
            meta = self._meta
            came = len(threads)
            recorder.finding(
                "barrier_broken",
                {
                    "level": "error",
                    **primitive_fields(meta),
                    "parties": self._parties,
                    "arrived": came,
                    "cause": cause,
                    "threads": threads,
                    "message": (
                        f"barrier {meta.name} #{meta.instance} broken ({cause}): "
                        f"{came} of {self._parties} parties arrived ("
                        + ", ".join(f"{t['thread.name']} at {t['site'] or '?'}" for t in threads)
                        + f"); {self._parties - came} never came"
                    ),
                },
            )
        except Exception:
            pass


def _present_as_stdlib() -> None:
    """Both implementations present themselves as the stdlib names."""
    public: dict[type[Any] | None, str] = {
        PureLock: "Lock",
        PureRLock: "RLock",
        CompiledLock: "Lock",
        CompiledRLock: "RLock",
        PureSemaphore: "Semaphore",
        PureBoundedSemaphore: "BoundedSemaphore",
        CompiledSemaphore: "Semaphore",
        CompiledBoundedSemaphore: "BoundedSemaphore",
    }
    for cls, name in public.items():
        if cls is None:
            continue
        for attr in vars(cls).values():
            if hasattr(attr, "__qualname__") and hasattr(attr, "__code__"):
                attr.__qualname__ = f"{name}.{attr.__name__}"
        cls.__name__ = cls.__qualname__ = name
    for cls in (*public, Condition, Event, Barrier):
        if cls is not None:
            cls.__module__ = "tracedsync"


_present_as_stdlib()
