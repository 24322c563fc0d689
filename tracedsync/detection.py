"""Finding trouble: self-deadlocks, deadlocks, stuck waits, lock-order inversions.

Everything here reports — a log event (and for a deadlock a span) flushed at
once — and never raises, exits or changes what the program does.

- **Self-deadlock** (at once, in the blocking thread): a thread starts to
  block on a ``Lock`` it holds itself. A ``Lock`` may legally be released by
  another thread, so this is "suspected", and the wait ends normally if
  that happens.
- **Deadlocks** (the watchdog thread, every ``watchdog_interval_ms``): the
  wait-for graph links each thread blocked in a lock-like acquire to the
  threads holding what it waits for. Threads that can still progress are
  peeled off (one of the holders they wait for is running); what remains is
  deadlocked, reported once per cycle with every thread's wait, holdings and
  stack, plus a ``tracedsync.deadlock`` span linking the threads' contexts.
- **Stuck waits**: a lock-like acquire still blocked after ``stuck_after_ms``
  is reported while it is blocked, with the holder's stack. Event, Condition
  and Barrier waits are idle waits (a worker waiting for work), never stuck.
- **Lock-order inversions** (opt-in, lockdep style): primitives created at
  one site (one name) form a class; the order in which a thread nests
  classes builds a graph; a cycle of any length is a potential deadlock even
  if it never happened, reported once with the sites of every edge.
- :func:`snapshot`: holders and waiters of every live primitive right now.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import weakref
from _thread import RLock as _RawRLock
from _thread import get_ident as _get_ident
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from tracedsync import (
    _settings,
    _sites,
    _stdlib,
    _threads,
    acquisition,
    describe,
    primitives,
    recorder,
    registry,
    waits,
)
from tracedsync.config import Config
from tracedsync.kinds import LOCK_KINDS

_now = time.monotonic_ns


# --------------------------------------------------------------------------
# Who holds what
# --------------------------------------------------------------------------


def holders_of(prim: Any) -> list[tuple[int, int]]:
    """(thread ident, held since in monotonic ns) of the holders of ``prim``."""
    holders = getattr(prim, "_holders", None)
    if holders is None:
        return []
    return [(ident, since) for ident, since, _site, _thread in holders()]


def held_by(ident: int) -> list[Any]:
    """The live primitives thread ``ident`` holds."""
    out = []
    for prim in registry.live_primitives():
        try:
            if any(h == ident for h, _ in holders_of(prim)):
                out.append(prim)
        except Exception:
            continue
    return out


# --------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------


class ThreadState(NamedTuple):
    """A thread holding or waiting for a primitive."""

    ident: int
    name: str
    #: Seconds it has been holding or waiting.
    seconds: float
    #: Where it is now in user code (``app/db.py:57``), or None.
    site: str | None
    #: Its stack, innermost first (only when asked for).
    stack: tuple[str, ...] = ()


class PrimitiveState(NamedTuple):
    """Holders and waiters of one primitive at the moment of the snapshot."""

    name: str
    kind: str
    id: int
    #: 1, 2, ... among the primitives made at the same site.
    instance: int
    holders: tuple[ThreadState, ...]
    waiters: tuple[ThreadState, ...]


def _thread_state(ident: int, since: int, now: int, stacks: bool) -> ThreadState:
    return ThreadState(
        ident=ident,
        name=_threads.thread_name(ident),
        seconds=max(0, now - since) / 1e9 if since else 0.0,
        site=_sites.format_site(_sites.thread_site(ident)),
        stack=tuple(_sites.thread_stack(ident)) if stacks else (),
    )


def snapshot(stacks: bool = False) -> list[PrimitiveState]:
    """Every live primitive that has a holder or a waiter right now."""
    now = _now()
    waiters: dict[int, list[tuple[int, int]]] = {}
    prims: dict[int, Any] = {}
    for ident, entry in waits.snapshot().items():
        prim = entry.prim
        waiters.setdefault(prim._meta.id, []).append((ident, entry.since))
        prims[prim._meta.id] = prim
    for prim in registry.live_primitives():
        prims.setdefault(prim._meta.id, prim)
    out = []
    for pid, prim in sorted(prims.items()):
        try:
            holders = holders_of(prim)
        except Exception:
            holders = []
        waiting = waiters.get(pid, [])
        if not holders and not waiting:
            continue
        out.append(
            PrimitiveState(
                name=prim._meta.name,
                kind=prim._meta.kind,
                id=pid,
                instance=prim._meta.instance,
                holders=tuple(_thread_state(i, s, now, stacks) for i, s in holders),
                waiters=tuple(_thread_state(i, s, now, stacks) for i, s in waiting),
            )
        )
    return out


def format_snapshot(states: Iterable[PrimitiveState], stacks: bool = True) -> str:
    """A readable dump of :func:`snapshot` (control characters escaped)."""
    from tracedsync._format import clean, duration

    lines = ["tracedsync snapshot: holders and waiters now"]
    states = list(states)
    if not states:
        lines.append("  (no primitive is held or waited for)")
    for st in states:
        lines.append(f"  {st.kind} {clean(st.name)} #{st.instance} (id {st.id})")
        for role, threads in (("held by", st.holders), ("waited for by", st.waiters)):
            for t in threads:
                lines.append(
                    f"    {role} {clean(t.name)} for {duration(t.seconds)}, now at {clean(t.site)}"
                )
                if stacks:
                    lines.extend(f"        {clean(frame)}" for frame in t.stack)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Self-deadlock (called by the recorder in the blocking thread)
# --------------------------------------------------------------------------


def _frame_text(frame: Any) -> str:
    code = frame.f_code
    return f"{_sites.relative_path(code.co_filename)}:{frame.f_lineno} in {code.co_name}"


def on_self_deadlock(prim: Any, t0: int) -> None:
    """The current thread starts to block on a Lock it holds itself."""
    frames = acquisition.user_frames(sys._getframe(1))
    try:
        name = prim._meta.name
        site = (
            f"{_sites.relative_path(frames[0].f_code.co_filename)}:{frames[0].f_lineno}"
            if frames
            else "?"
        )
        earlier = acquisition.recorded(prim._acq_at) or acquisition.inferred(
            prim, frames, skip_current=True
        )
        me = _get_ident()
        thread = _threads.thread_name(me)
        held_text = f"acquired at {earlier}" if earlier else "acquired earlier in this thread"
        recorder.finding(
            "self_deadlock_suspected",
            {
                "level": "error",
                "thread.name": thread,
                "thread.id": me,
                "sync.kind": prim._meta.kind,
                "sync.name": name,
                "sync.id": prim._meta.id,
                "sync.instance": prim._meta.instance,
                "site": site,
                "held_site": earlier,
                "stack": [_frame_text(f) for f in frames],
                "message": (
                    f"self-deadlock suspected: {thread} blocks at {site} on {name}, which it "
                    f"holds itself ({held_text}); a Lock may be released by another thread, "
                    "so the wait ends if one does — else use an RLock or restructure"
                ),
            },
        )
    finally:
        del frames


# --------------------------------------------------------------------------
# The watchdog: deadlocks and stuck waits
# --------------------------------------------------------------------------


def deadlocked(
    waits: dict[int, Any], holders: Callable[[Any], list[tuple[int, int]]]
) -> list[list[int]]:
    """Groups of deadlocked threads: cycles of the wait-for graph (size >= 2).

    ``waits`` maps a blocked thread to the primitive it waits for. A thread
    can progress if some holder of its primitive (other than itself) is not
    blocked; such threads are peeled off until none is left to peel. The
    rest wait, directly or not, on each other: each strongly connected group
    of two or more is one deadlock.
    """
    edges: dict[int, set[int]] = {}
    for ident, prim in waits.items():
        edges[ident] = {h for h, _ in holders(prim) if h != ident}
    blocked = set(waits)
    changed = True
    while changed:
        changed = False
        for ident in list(blocked):
            targets = edges[ident]
            if not targets or any(t not in blocked for t in targets):
                blocked.discard(ident)
                changed = True
    graph = {i: edges[i] & blocked for i in blocked}
    return [sorted(c) for c in _strongly_connected(graph) if len(c) >= 2]


def _strongly_connected(graph: dict[int, set[int]]) -> list[list[int]]:
    """Tarjan's algorithm (iterative)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _label(meta: Any) -> str:
    """``forks #3 (app.py:9)``-style: the name and, always, the instance."""
    return f"{meta.name} #{meta.instance}"


def where_taken(prim: Any, ident: int) -> str | None:
    """Where thread ``ident`` took ``prim``: recorded, else read from its stack."""
    for holder, _since, site, _thread in prim._holders():
        if holder == ident and site:
            return acquisition.recorded(site)
    return acquisition.inferred(prim, acquisition.thread_frames(ident))


def holder_chain(prim: Any, waiter: int, limit: int = 8) -> list[Any]:
    """The holders from ``prim`` on: who holds it, and when that holder is
    itself blocked on a lock-like primitive, who holds that, and so on (an
    idle wait -- Event, Condition, Queue, Barrier, Future -- ends the chain:
    no thread holds it). ``records.Holder`` entries."""
    chain: list[Any] = []
    seen = {waiter}
    while len(chain) < limit:
        holder, _ = recorder.describe_holder(prim, waiter)
        if holder is None:
            break
        chain.append(holder)
        if holder.waiting_on is None or holder.ident in seen:
            break
        seen.add(holder.ident)
        blocked = waits.of(holder.ident)
        if blocked is None or blocked.idle:
            break
        prim, waiter = blocked.prim, holder.ident
    return chain


def _chain_text(chain: list[Any]) -> str:
    return "".join(describe.holder_text(h) for h in chain)


class Watchdog:
    """The internal thread that looks for deadlocks, stuck waits and holds
    left by threads that ended."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = _stdlib.Event()
        self._reported_deadlocks: set[frozenset[tuple[int, int]]] = set()
        self._reported_stuck: set[tuple[int, int, int]] = set()
        self._reported_abandoned: set[tuple[int, int, int]] = set()
        self._thread = threading.Thread(target=self._run, name="tracedsync-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident != _get_ident() and self._thread.is_alive():
            self._thread.join(5)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _run(self) -> None:
        _threads.mark_internal()
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self.check()
                except Exception:
                    pass  # never let a bug of ours end the watchdog
        finally:
            _threads.unmark_internal()

    def check(self) -> None:
        """One pass: report new deadlocks, stuck waits and abandoned holds."""
        _threads.remember_names()
        registry.fold_collected()
        blocked = {i: b for i, b in waits.snapshot().items() if not _threads.is_internal(i)}
        now = _now()
        settings = _settings.current
        lock_waits = {i: b for i, b in blocked.items() if not b.idle}
        for group in deadlocked({i: b.prim for i, b in lock_waits.items()}, holders_of):
            cycle_key = frozenset((i, lock_waits[i].prim._meta.id) for i in group)
            if cycle_key not in self._reported_deadlocks:
                self._reported_deadlocks.add(cycle_key)
                self._report_deadlock(group, lock_waits, now)
        for ident, entry in blocked.items():
            limit = settings.idle_stuck_after_ns if entry.idle else settings.stuck_after_ns
            if now - entry.since < limit:
                continue
            key = (ident, entry.prim._meta.id, entry.since)
            if key in self._reported_stuck:
                continue
            self._reported_stuck.add(key)
            self._report_stuck(ident, entry, now)
        live_keys = {(i, b.prim._meta.id, b.since) for i, b in blocked.items()}
        self._reported_stuck &= live_keys
        self.check_abandoned(lock_waits)

    def check_abandoned(self, lock_waits: dict[int, Any], at_exit: bool = False) -> None:
        """Holds whose thread has ended: at once for an RLock (only its owner
        may release it); for a Lock or semaphore (which another thread may
        legally release) when a wait blocks on it, or at exit."""
        waited_on = {b.prim._meta.id for b in lock_waits.values()}
        for prim in registry.live_primitives():
            meta = prim._meta
            if meta.kind not in LOCK_KINDS:
                continue
            if not (at_exit or meta.kind == "rlock" or meta.id in waited_on):
                continue
            if getattr(prim, "_initial_value", None) == 0:
                continue  # a semaphore made empty is a signal: nobody owes its permits back
            try:
                holders = prim._holders()
            except Exception:
                continue
            told: set[tuple[int, int]] = set()
            for ident, since, site, thread in holders:  # oldest first
                if (ident, id(thread)) in told:
                    continue  # a thread's other permits: its report counts them
                told.add((ident, id(thread)))
                key = (meta.id, ident, since)
                if key in self._reported_abandoned or not _threads.ended(thread, ident):
                    continue
                self._reported_abandoned.add(key)
                report_abandoned(prim, ident, since, site, thread)
        if len(self._reported_abandoned) > 10_000:
            self._reported_abandoned.clear()

    def _report_deadlock(self, group: list[int], blocked: dict[int, Any], now: int) -> None:
        threads = []
        parts = []
        for ident in group:
            entry = blocked[ident]
            prim = entry.prim
            meta = prim._meta
            name = _threads.thread_name(ident)
            holders = [h for h, _ in holders_of(prim) if h != ident]
            holder_names = [_threads.thread_name(h) for h in holders]
            taken_at = [where_taken(prim, h) for h in holders]
            holds = [
                {
                    "sync.name": p._meta.name,
                    "sync.kind": p._meta.kind,
                    "sync.instance": p._meta.instance,
                    "acquired_at": where_taken(p, ident),
                }
                for p in held_by(ident)
            ]
            threads.append(
                {
                    "thread.name": name,
                    "thread.id": ident,
                    "waits_for": meta.name,
                    "waits_for_kind": meta.kind,
                    "waits_for_id": meta.id,
                    "waits_for_instance": meta.instance,
                    "site": _sites.format_site(_sites.thread_site(ident)),
                    "waited_ms": round((now - entry.since) / 1e6, 3),
                    "held_by": holder_names,
                    "held_by_acquired_at": taken_at,
                    "holds": holds,
                    "stack": _sites.thread_stack(ident),
                }
            )
            holder_part = ", ".join(
                f"{h} (took it at {at or '?'})"
                for h, at in zip(holder_names, taken_at, strict=True)
            )
            parts.append(
                f"{name} waits at {threads[-1]['site']} for {_label(meta)} held by {holder_part}"
            )
        contexts = [blocked[i].context for i in group]
        for i in group:
            blocked[i].reported = True
        recorder.finding(
            "deadlock_detected",
            {
                "level": "error",
                "threads": threads,
                "message": f"deadlock between {len(group)} threads: " + "; ".join(parts),
            },
            span=(
                "tracedsync.deadlock",
                {
                    "sync.deadlock.threads": [t["thread.name"] for t in threads],
                    "sync.deadlock.primitives": [
                        f"{t['waits_for']} #{t['waits_for_instance']}" for t in threads
                    ],
                },
                contexts,
                min(blocked[i].since for i in group),
            ),
        )

    def _report_stuck(self, ident: int, entry: Any, now: int) -> None:
        prim = entry.prim
        meta = prim._meta
        name = _threads.thread_name(ident)
        waited_ms = round((now - entry.since) / 1e6, 3)
        site = _sites.format_site(_sites.thread_site(ident))
        chain = [] if entry.idle else holder_chain(prim, ident)
        entry.reported = True
        offset = time.time_ns() - _now()
        fields: dict[str, Any] = {
            "level": "warning",
            "thread.name": name,
            "thread.id": ident,
            **describe.primitive_fields(meta),
            "idle": entry.idle,
            "waited_ms": waited_ms,
            "site": site,
        }
        if chain:
            fields.update(describe.holder_attributes(chain[0], offset))
            fields["holder_stacks"] = {
                h.name: _sites.thread_stack(h.ident) for h in chain if not h.ended
            }
            fields["chain"] = [
                {
                    **describe.holder_attributes(h, offset),
                }
                for h in chain
            ]
        what = "waiting for" if entry.idle else "stuck waiting for"
        fields["message"] = (
            f"{name} has been {what} {meta.kind} {_label(meta)} for {waited_ms / 1e3:.1f} s "
            f"at {site}" + _chain_text(chain)
        )
        recorder.finding("stuck_wait", fields)


def report_abandoned(prim: Any, ident: int, since: int, site: Any, thread: Any) -> None:
    """A thread ended while it held ``prim``."""
    meta = prim._meta
    name = _threads.name_of(thread, ident) if thread is not None else _threads.thread_name(ident)
    taken = acquisition.recorded(site)
    count = (
        getattr(prim, "_count", 1)
        if meta.kind == "rlock"
        else sum(1 for h in prim._holders() if h[0] == ident and h[3] is thread)
    )
    recorder.finding(
        "abandoned_hold",
        {
            "level": "error",
            "thread.name": name,
            "thread.id": ident,
            **describe.primitive_fields(meta),
            "count": count,
            "acquired_at": taken,
            "held_ms": round((_now() - since) / 1e6, 3) if since else None,
            "message": (
                f"{name} ended holding {meta.kind} {_label(meta)}"
                + (f" x{count}" if count > 1 else "")
                + (f", taken at {taken}" if taken else "")
                + (
                    ": only its owner can release an RLock, so it is held for ever"
                    if meta.kind == "rlock"
                    else ""
                )
            ),
        },
    )


# --------------------------------------------------------------------------
# Lock-order inversions (opt-in)
# --------------------------------------------------------------------------


#: Same-class nestings remembered per pair of instances (the oldest are
#: forgotten first): two instances of one class nested in both orders is an
#: inversion, nested always in one order is not.
PAIR_LIMIT = 10_000


#: A thread's held list is cleared of dropped primitives past this length.
_HELD_PRUNE_AT = 64


class LockOrder:
    """The graph of nesting orders between lock classes (lockdep style).

    A class is a creation site (one name); nesting one class inside another
    adds an edge, and a cycle of any length is reported once with the sites
    of every edge. Two instances of one class (``transfer(a, b)`` and
    ``transfer(b, a)`` locking two accounts) are checked per instance.
    """

    def __init__(self) -> None:
        self._lock = _RawRLock()
        #: (outer class, inner class) -> (outer site, inner site, thread name)
        self.edges: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._graph: dict[str, set[str]] = {}
        #: (outer id, inner id) -> (outer, inner, outer site, inner site, thread):
        #: nestings of two instances of one class.
        self._pairs: dict[tuple[int, int], tuple[Any, Any, str, str, str]] = {}
        #: thread ident -> [(weak reference to the primitive, class, raw
        #: acquisition site)] it holds, in order. Weak: a lock dropped while
        #: held (``lock.acquire(); del lock``) is held by nobody, and is not
        #: kept alive for it.
        self._held: dict[int, list[tuple[Any, str, Any]]] = {}
        self._reported: set[frozenset[Any]] = set()

    def declare(self, *classes: str) -> None:
        """Declare the intended order: each class before the next."""
        for outer, inner in itertools.pairwise(classes):
            self._add_edge(outer, inner, "declared", "declared", "declared")

    def attempt(self, prim: Any) -> Any:
        """A blocking acquire begins: add the nesting edges it makes that are
        new. Returns the call site when it had to read it."""
        me = _get_ident()
        held = self._held.get(me)
        if not held:
            return None
        if getattr(prim, "_owner", None) == me and hasattr(prim, "_count"):
            return None  # RLock re-entry
        meta = prim._meta
        cls = meta.name
        edges = self.edges
        pairs = self._pairs
        new_classes = []
        new_pairs = []
        for ref, held_cls, held_site in held:
            other = ref()
            if other is None or other is prim:
                continue
            if held_cls != cls:
                if (held_cls, cls) not in edges:
                    new_classes.append((held_cls, held_site))
            elif (other._meta.id, meta.id) not in pairs:
                new_pairs.append((other, held_site))
        if not new_classes and not new_pairs:
            return None
        site = recorder.caller_site(2)
        thread = _threads.thread_name(me)
        here = acquisition.recorded(site) or "?"
        with self._lock:
            for held_cls, held_site in new_classes:
                self._add_edge(held_cls, cls, acquisition.recorded(held_site) or "?", here, thread)
            for other, held_site in new_pairs:
                self._add_pair(other, prim, acquisition.recorded(held_site) or "?", here, thread)
        return site

    def acquired(self, prim: Any, site: Any) -> None:
        """The acquire succeeded: the thread now holds ``prim``.

        Each thread appends to its own list only (atomic under the GIL); the
        site is kept raw and formatted only if it ever ends up in a report.
        """
        if getattr(prim, "_count", 1) > 1:
            return  # RLock re-entry
        if site is None:
            site = recorder.caller_site(2)
        me = _get_ident()
        stack = self._held.get(me)
        if stack is None:
            stack = self._held[me] = []
        if len(stack) > _HELD_PRUNE_AT:
            stack[:] = [e for e in stack if e[0]() is not None]
        stack.append((weakref.ref(prim), prim._meta.name, site))

    def released(self, prim: Any) -> None:
        if getattr(prim, "_count", 0) > 0:
            return  # RLock still held
        me = _get_ident()
        stack = self._held.get(me)
        if stack:
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0]() is prim:
                    del stack[i]
                    return
        with self._lock:  # a Lock released by a thread that did not take it
            for ident, stack in list(self._held.items()):
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i][0]() is prim:
                        del stack[i]
                        if not stack and ident != me:
                            self._held.pop(ident, None)
                        return

    def _add_pair(
        self, outer: Any, inner: Any, outer_site: str, inner_site: str, thread: str
    ) -> None:
        key = (outer._meta.id, inner._meta.id)
        pairs = self._pairs
        if key in pairs:
            return
        while len(pairs) >= PAIR_LIMIT:
            del pairs[next(iter(pairs))]
        pairs[key] = (outer._meta, inner._meta, outer_site, inner_site, thread)
        reverse = pairs.get((key[1], key[0]))
        if reverse is None:
            return
        report_key = frozenset(key)
        if report_key in self._reported:
            return
        self._reported.add(report_key)
        described = []
        for a_meta, b_meta, a_site, b_site, who in (reverse, pairs[key]):
            described.append(
                {
                    "outer": a_meta.name,
                    "outer_instance": a_meta.instance,
                    "inner": b_meta.name,
                    "inner_instance": b_meta.instance,
                    "outer_site": a_site,
                    "inner_site": b_site,
                    "thread.name": who,
                }
            )
        self._report(described, [f"{described[0]['outer']}"], same_class=True)

    def _add_edge(
        self, outer: str, inner: str, outer_site: str, inner_site: str, thread: str
    ) -> None:
        if (outer, inner) in self.edges:
            return
        self.edges[(outer, inner)] = (outer_site, inner_site, thread)
        self._graph.setdefault(outer, set()).add(inner)
        path = self._path(inner, outer)
        if path is None:
            return
        cycle = [outer, *path]  # outer -> inner -> ... -> outer
        cycle_edges = list(itertools.pairwise(cycle))
        key = frozenset(cycle_edges)
        if key in self._reported:
            return
        self._reported.add(key)
        described = []
        for a, b in cycle_edges:
            a_site, b_site, who = self.edges[(a, b)]
            described.append(
                {
                    "outer": a,
                    "inner": b,
                    "outer_site": a_site,
                    "inner_site": b_site,
                    "thread.name": who,
                }
            )
        self._report(described, list(cycle[:-1]), same_class=False)

    @staticmethod
    def _report(described: list[dict[str, Any]], cycle: list[str], same_class: bool) -> None:
        def label(edge: dict[str, Any], end: str) -> str:
            instance = edge.get(f"{end}_instance")
            return f"{edge[end]} #{instance}" if instance is not None else str(edge[end])

        text = "; ".join(
            f"{e['thread.name']} took {label(e, 'inner')} at {e['inner_site']} while holding "
            f"{label(e, 'outer')} (taken at {e['outer_site']})"
            for e in described
        )
        what = (
            "two instances of one lock class taken in both orders"
            if same_class
            else f"{len(described)} locks"
        )
        recorder.finding(
            "lock_order_inversion",
            {
                "level": "warning",
                "cycle": cycle,
                "same_class": same_class,
                "edges": described,
                "message": f"lock-order inversion (potential deadlock) over {what}: {text}",
            },
        )

    def _path(self, start: str, goal: str) -> list[str] | None:
        """A path start -> ... -> goal in the order graph (BFS), or None."""
        previous: dict[str, str | None] = {start: None}
        queue = [start]
        while queue:
            node = queue.pop(0)
            if node == goal:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])  # type: ignore[arg-type]
                return list(reversed(path))
            for nxt in sorted(self._graph.get(node, ())):
                if nxt not in previous:
                    previous[nxt] = node
                    queue.append(nxt)
        return None


_order: LockOrder | None = None
_saved_methods: dict[tuple[type, str], Any] = {}
_ORDERED = ("acquire", "__enter__", "release", "__exit__")


def _install_lock_order() -> None:
    """Swap Lock/RLock methods for versions that feed the order graph."""
    global _order
    if _order is None:
        _order = LockOrder()
    if _saved_methods:
        return
    for cls in (primitives.Lock, primitives.RLock):
        originals = {name: getattr(cls, name) for name in _ORDERED}
        for name in _ORDERED:
            _saved_methods[(cls, name)] = cls.__dict__.get(name)
        cls.acquire = _ordered_acquire(originals["acquire"])  # type: ignore[method-assign]
        cls.__enter__ = _ordered_enter(originals["__enter__"])
        cls.release = _ordered_release(originals["release"])  # type: ignore[method-assign]
        cls.__exit__ = _ordered_exit(originals["__exit__"])  # type: ignore[method-assign]


def _remove_lock_order() -> None:
    for (cls, name), original in _saved_methods.items():
        if original is None:
            try:
                delattr(cls, name)
            except AttributeError:
                pass
        else:
            setattr(cls, name, original)
    _saved_methods.clear()


def _ordered_acquire(original: Any) -> Any:
    def acquire(self: Any, blocking: Any = True, timeout: Any = -1) -> bool:
        order = _order
        site = None
        if order is not None and blocking and timeout != 0:
            try:
                site = order.attempt(self)  # a non-blocking try adds no edge
            except Exception:
                pass
        got = original(self, blocking, timeout)
        if got and order is not None:
            try:
                order.acquired(self, site)
            except Exception:
                pass
        return bool(got)

    return acquire


def _ordered_enter(original: Any) -> Any:
    def __enter__(self: Any) -> bool:
        order = _order
        site = None
        if order is not None:
            try:
                site = order.attempt(self)
            except Exception:
                pass
        got = original(self)
        if order is not None:
            try:
                order.acquired(self, site)
            except Exception:
                pass
        return bool(got)

    return __enter__


def _ordered_release(original: Any) -> Any:
    def release(self: Any) -> None:
        original(self)
        if _order is not None:
            try:
                _order.released(self)
            except Exception:
                pass

    return release


def _ordered_exit(original: Any) -> Any:
    def __exit__(self: Any, t: Any, v: Any, tb: Any) -> None:
        original(self, t, v, tb)
        if _order is not None:
            try:
                _order.released(self)
            except Exception:
                pass

    return __exit__


def declare_lock_order(*locks: Any) -> None:
    """Declare the intended nesting order: each lock (or name) before the next.

    With ``lock_order`` on, acquiring them in the opposite order is reported
    as an inversion the first time it happens.
    """
    global _order
    if _order is None:
        _order = LockOrder()
    names = [lk if isinstance(lk, str) else lk._meta.name for lk in locks]
    _order.declare(*names)


# --------------------------------------------------------------------------
# Lifecycle (driven by tracedsync.config)
# --------------------------------------------------------------------------

_watchdog: Watchdog | None = None


def start(cfg: Config, pipeline: Any) -> None:
    """Apply ``cfg`` (called by ``lifecycle.apply``): the lock-order checker,
    and the watchdog when a pipeline runs."""
    global _watchdog, _order
    recorder.self_deadlock_hook = on_self_deadlock
    if cfg.lock_order and cfg.enabled:
        _install_lock_order()
    else:
        _remove_lock_order()
        _order = None
    if pipeline is not None:
        _watchdog = Watchdog(cfg.watchdog_interval_ms / 1000)
        _watchdog.start()


def stop() -> None:
    """Stop the watchdog (``lifecycle`` calls this before a new configuration)."""
    global _watchdog
    watchdog, _watchdog = _watchdog, None
    if watchdog is not None:
        watchdog.stop()


def watchdog() -> Watchdog | None:
    """The running watchdog, if any."""
    return _watchdog
