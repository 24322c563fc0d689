"""Which primitives exist: identities, the live set, stats of collected ones.

Creating a primitive is on the program's path (every ``Future`` makes a
``Condition``, every ``Queue`` three), so :func:`new` does little: it finds
the creating frame's creation site (a code object and instruction offset,
cached with whether the creating module is excluded), hands out an id and an
instance number and notes a weak reference. The name (``pool_lock
(app/db.py:41)``) is worked out from the code object, once per site, when
something first asks for it.

A primitive that is collected leaves its counters in a graveyard if it was
used; they are folded into per-(name, kind) totals off the program's thread
(the pipeline and the watchdog call :func:`fold_collected`), so that
``stats()`` and the metrics stay cumulative.
"""

from __future__ import annotations

import collections
import itertools
import threading
import weakref
from _thread import RLock as _RawRLock
from _thread import get_ident as _get_ident
from collections.abc import Callable, Iterator
from sys import _getframe
from types import CodeType, FrameType
from typing import Any

from tracedsync import _settings, _sites
from tracedsync._format import MAX_TEXT, cap
from tracedsync._threads import internal as _internal
from tracedsync.counters import Counters, PrimitiveStats, SlowStats, add_histogram
from tracedsync.kinds import LOCK_KINDS

#: Kinds whose acquisitions are the holds their hold histogram counts.
_HOLD_COUNTED_KINDS = frozenset({"lock", "rlock"})


class CreationSite:
    """One place primitives are made: a code object and an instruction offset.

    It numbers the primitives of each kind made there (1, 2, ...: the
    instance numbers) and names them, the name worked out from the code
    object the first time something asks: ``pool_lock (app/db.py:41)``.
    """

    __slots__ = ("_counters", "_name", "code", "offset")

    def __init__(self, code: CodeType | None, offset: int) -> None:
        self.code = code
        self.offset = offset
        self._counters: dict[str, Iterator[int]] = {}
        self._name: str | None = None

    def counter(self, kind: str) -> Iterator[int]:
        """The instance numbers of ``kind`` here (made on first use)."""
        return self._counters.setdefault(kind, itertools.count(1))

    @property
    def name(self) -> str:
        name = self._name
        if name is None:
            code = self.code
            name = self._name = "<unknown>" if code is None else _sites.name_at(code, self.offset)
        return name


#: Where primitives with no creating frame outside tracedsync come from.
UNKNOWN_SITE = CreationSite(None, 0)


class Identity(tuple[int, str, int, CreationSite, "str | None"]):
    """Who a primitive is: id, kind, instance number, creation site and the
    name given, if any. A tuple underneath (made by one C call: every
    primitive's creation makes one), read by name."""

    __slots__ = ()

    @property
    def id(self) -> int:
        """A process-unique number (a counter, not ``id()``)."""
        return self[0]

    @property
    def kind(self) -> str:
        return self[1]

    @property
    def instance(self) -> int:
        """1, 2, ... in creation order among the primitives of this kind made
        at the same site."""
        return self[2]

    @property
    def site(self) -> CreationSite:
        return self[3]

    @property
    def name(self) -> str:
        """The given name, else the creation site's: ``pool_lock (app/db.py:41)``."""
        return self[4] or self[3].name

    def __repr__(self) -> str:
        return f"<{self.kind} #{self.instance} {self.name!r} id={self.id}>"


_new_identity = tuple.__new__


# --------------------------------------------------------------------------
# Which creations are traced
# --------------------------------------------------------------------------

DEFAULT_EXCLUDE = (
    "threading",
    "opentelemetry",
    "grpc",
    "google.protobuf",
    "urllib3",
    "requests",
    "structlog",
    "logging",
    "prometheus_client",
    "tracedsync",
)
_exclude: tuple[str, ...] = DEFAULT_EXCLUDE
_include: tuple[str, ...] = ()
_excluded_modules: dict[str, bool] = {}

#: id(code) -> (code, what a creation in it means, its creation sites by
#: offset): _USER is traced there, _OURS is a tracedsync frame (look further
#: out), _EXCLUDED is untraced, _WRAPPER is a stdlib module that makes
#: primitives for its caller (``queue``, ``concurrent.futures``): the
#: creation site is there, but an excluded caller further out (grpc's
#: server making a Future) keeps it untraced.
_USER, _OURS, _EXCLUDED, _WRAPPER = 0, 1, 2, 3
_code_kinds: dict[int, tuple[CodeType, int, dict[int, CreationSite]]] = {}
_CACHE_LIMIT = 100_000
#: threading.Timer's Event (``finished``) is one users wait on: traced.
_TRACED_IN_THREADING = {threading.Timer.__init__.__code__}


def set_exclusions(exclude: tuple[str, ...], include: tuple[str, ...] = ()) -> None:
    global _exclude, _include
    _exclude = tuple(dict.fromkeys(DEFAULT_EXCLUDE + tuple(exclude)))
    _include = tuple(include)
    _excluded_modules.clear()
    _code_kinds.clear()


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_excluded(module: str) -> bool:
    """True when primitives created by ``module`` stay the stdlib's."""
    try:
        return _excluded_modules[module]
    except KeyError:
        pass
    result = _matches(module, _exclude) and not _matches(module, _include)
    _excluded_modules[module] = result
    return result


def _classify(frame: FrameType) -> tuple[CodeType, int, dict[int, CreationSite]]:
    code = frame.f_code
    if _sites.is_tracedsync_file(code.co_filename):
        kind = _OURS
    elif code in _TRACED_IN_THREADING:
        kind = _USER
    else:
        module = frame.f_globals.get("__name__") or ""
        if module_excluded(str(module)):
            kind = _EXCLUDED
        elif _sites.skipped_file(code.co_filename):
            kind = _WRAPPER
        else:
            kind = _USER
    if len(_code_kinds) > _CACHE_LIMIT:
        _code_kinds.clear()
    entry = _code_kinds[id(code)] = (code, kind, {})
    return entry


# --------------------------------------------------------------------------
# Identities and the live set
# --------------------------------------------------------------------------

_ids = itertools.count(1)
#: id -> weak reference to every live traced primitive.
_live: dict[int, weakref.ReferenceType[Any]] = {}


_weakref = weakref.ref


def new(cls: type, kind: str, name: str | None, make: Callable[..., Any], *args: Any) -> Any:
    """A new traced primitive, or None when the caller must make the stdlib's.

    Called from a primitive class's ``__new__``: the creating frame decides
    (the stdlib's when tracedsync is disabled, on an internal thread, or when
    an excluded module made it); ``make(cls, *args)`` builds the object with
    all its state, which then gets its identity (``_meta``) and only then is
    made visible. This runs for every primitive the program makes: one call.
    """
    if name is not None and type(name) is not str:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        name = str(name)
    if name is not None and len(name) > MAX_TEXT:
        name = cap(name)  # spans, events and reports carry it: 1 KiB at most
    if not _settings.current.enabled or _get_ident() in _internal:
        return None
    try:
        frame: FrameType | None = _getframe(2)
    except ValueError:
        frame = None
    # The first frame out of tracedsync's and the stdlib wrappers' decides
    # (its code object classified once); the first frame out of tracedsync's
    # gives the creation site.
    site: CreationSite | None = None
    kinds = _code_kinds
    while frame is not None:
        code = frame.f_code
        entry = kinds.get(id(code))
        if entry is None or entry[0] is not code:
            entry = _classify(frame)
        decides = entry[1]
        if decides is _EXCLUDED:
            return None
        if decides is not _OURS and site is None:
            sites = entry[2]
            offset = frame.f_lasti
            site = sites.get(offset)
            if site is None:
                site = sites[offset] = CreationSite(code, offset)
        if decides is _USER:
            break
        frame = frame.f_back
    if site is None:
        site = UNKNOWN_SITE
    prim = make(cls, *args)
    counter = site._counters.get(kind) or site.counter(kind)
    ident = next(_ids)
    prim._meta = _new_identity(Identity, (ident, kind, next(counter), site, name))
    _live[ident] = _weakref(prim)
    return prim


def live_primitives() -> list[Any]:
    """Every traced primitive still alive."""
    out = []
    for ref in list(_live.values()):
        prim = ref()
        if prim is not None:
            out.append(prim)
    return out


def live_by_id(ident: int) -> Any:
    ref = _live.get(ident)
    return None if ref is None else ref()


# --------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------

#: Guards every primitive's SlowStats and the folded totals.
stats_lock = _RawRLock()


def slow_stats(prim: Any) -> SlowStats:
    """``prim``'s slow-path counters, made on first use."""
    st: SlowStats | None = prim._st
    if st is None:
        made = SlowStats()  # outside the lock: the lock only settles who wins
        with stats_lock:
            st = prim._st
            if st is None:
                st = prim._st = made
    return st


def read_counters(prim: Any, live: bool = True) -> Counters:
    """A copy of a primitive's counters (hot ones on it, slow ones in ``_st``).

    ``live`` is False from :func:`collected`: nobody can touch the primitive
    any more, so its figures are final and need no lock.
    """
    c = Counters()
    st: SlowStats | None = prim._st
    kind = prim._meta.kind
    c.instances = 1
    hold_hist = getattr(prim, "_hhist", None)
    if hold_hist is not None:
        c.hold_hist = list(hold_hist)
    if kind in _HOLD_COUNTED_KINDS:
        c.acquisitions = _lock_acquisitions(prim, st, c.hold_hist, live)
    else:
        c.acquisitions = getattr(prim, "_acq", 0)
    c.reentries = getattr(prim, "_reent", 0)
    c.hold_sum = getattr(prim, "_hsum", 0)
    c.hold_max = getattr(prim, "_hmax", 0)
    c.suppressed = getattr(prim, "_hsup", 0)
    if st is not None:
        c.contentions = st.contentions
        c.timeouts = st.timeouts
        c.would_block = st.would_block
        c.waits = st.waits
        c.wait_sum = st.wait_sum
        c.wait_max = st.wait_max
        c.suppressed += st.suppressed
        c.wait_hist = list(st.wait_hist)
    # Failed non-blocking tries the compiled Semaphore counted in C.
    c.would_block += getattr(prim, "_wblock", 0)
    short = getattr(prim, "_wcont", 0)
    if short:
        # Waits the compiled Lock/RLock saw end within the wait threshold,
        # counted in C (_speedups.call_slow) rather than in ``_st``.
        c.contentions += short
        c.wait_sum += prim._wsum
        if prim._wmax > c.wait_max:
            c.wait_max = prim._wmax
        add_histogram(c.wait_hist, prim._whist or ())
    if kind in LOCK_KINDS:
        # Uncontended acquisitions never reach the slow path: they waited 0 ns.
        c.wait_hist[0] += max(0, c.acquisitions - (c.contentions - c.timeouts))
    fast = getattr(prim, "_wfast", 0)
    if fast:
        # Event.wait on a flag already set: a wait of 0 ns, counted on the hot path.
        c.waits += fast
        c.wait_hist[0] += fast
    return c


def _lock_acquisitions(prim: Any, st: SlowStats | None, hold_hist: list[int], live: bool) -> int:
    """A Lock's or RLock's acquisitions: its finished holds (the hold
    histogram counts each once) plus the one under way (``_owner`` set).

    The hot path keeps no acquisition counter of its own (one integer
    allocation less per acquire in pure Python). A reader racing a release
    can be one off; ``acq_seen`` keeps a live figure from going back.
    """
    n = sum(hold_hist) + (1 if prim._owner else 0)
    if not live:
        return n
    if st is None:
        st = slow_stats(prim)
    with stats_lock:
        if n > st.acq_seen:
            st.acq_seen = n
        else:
            n = st.acq_seen
    return n


def used(prim: Any) -> bool:
    """True when a primitive counted anything (else its collection is not kept)."""
    return prim._st is not None or bool(prim._used())


#: (identity, counters) of collected primitives that were used, appended
#: from ``__del__`` on whatever thread dropped them.
_graveyard: collections.deque[tuple[Identity, Counters]] = collections.deque()
#: (name, kind) -> folded counters of collected primitives.
_folded: dict[tuple[str, str], Counters] = {}
#: Folding happens on tracedsync's threads; with none running (nothing
#: exported), a graveyard this long is folded by the thread that adds to it.
_GRAVEYARD_LIMIT = 4096


def collected(prim: Any) -> None:
    """Called from a primitive's ``__del__``: forget it, keep its counters if
    it was used. Never raises."""
    try:
        meta = prim._meta
        del _live[meta[0]]
        if prim._st is not None or prim._used():
            _graveyard.append((meta, read_counters(prim, live=False)))
            if len(_graveyard) > _GRAVEYARD_LIMIT and not _settings.current.recording:
                fold_collected()
    except Exception:
        pass


def anything_used() -> bool:
    """True when some primitive, live or collected, counted anything."""
    if _graveyard or _folded:
        return True
    return any(used(p) for p in live_primitives())


def fold_collected() -> None:
    """Fold the graveyard into the per-(name, kind) totals.

    Folded first on the side, then added under the lock in one go: the
    program's threads take ``stats_lock`` on their slow paths.
    """
    if not _graveyard:
        return
    batch: dict[tuple[str, str], Counters] = {}
    pop = _graveyard.popleft
    try:
        while True:
            meta, counters = pop()
            key = (meta.name, meta.kind)
            into = batch.get(key)
            if into is None:
                batch[key] = counters
            else:
                into.add(counters)
    except IndexError:
        pass
    with stats_lock:
        for key, counters in batch.items():
            folded = _folded.get(key)
            if folded is None:
                _folded[key] = counters
            else:
                folded.add(counters)


def stats() -> list[PrimitiveStats]:
    """Stats of every traced primitive: live ones one by one, collected ones
    folded by (name, kind). Sorted by kind, name and id."""
    fold_collected()
    out = []
    for prim in live_primitives():
        meta = prim._meta
        out.append(read_counters(prim).to_stats(meta.name, meta.kind, meta.id))
    with stats_lock:
        out.extend(c.to_stats(name, kind, None) for (name, kind), c in _folded.items())
    out.sort(key=lambda s: (s.kind, s.name, s.id if s.id is not None else 1 << 62))
    return out


def aggregated_counters() -> dict[tuple[str, str], Counters]:
    """(kind, name) -> counters summed over live and collected primitives.

    What metrics report: cumulative and continuous when a primitive is
    collected (its counters move from the live set to the folded set).
    """
    fold_collected()
    agg: dict[tuple[str, str], Counters] = {}
    for prim in live_primitives():
        meta = prim._meta
        key = (meta.kind, meta.name)
        c = agg.get(key)
        if c is None:
            c = agg[key] = Counters()
            c.instances = 0
        c.add(read_counters(prim))
    with stats_lock:
        for (name, kind), folded in _folded.items():
            c = agg.get((kind, name))
            if c is None:
                c = agg[(kind, name)] = Counters()
                c.instances = 0
            c.add(folded)
    return agg


def reset_stats() -> None:
    """Forget collected primitives' stats (for tests); live ones keep theirs."""
    fold_collected()
    with stats_lock:
        _folded.clear()


def at_fork_child() -> None:
    """In a fork child: fresh locks (a parent thread may have held them)."""
    global stats_lock
    stats_lock = _RawRLock()
