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

import ast
import itertools
import linecache
import threading
import time
from _thread import RLock as _RawRLock
from _thread import get_ident as _get_ident
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tracedsync import _sites, _stdlib, config, primitives, recorder

_now = time.monotonic_ns


# --------------------------------------------------------------------------
# Who holds what
# --------------------------------------------------------------------------


def holders_of(prim: Any) -> list[tuple[int, int]]:
    """(thread ident, held since in monotonic ns) of the holders of ``prim``."""
    if isinstance(prim, (primitives.Semaphore,)):
        return prim.holders()
    owner = getattr(prim, "_owner", 0)
    if owner:
        return [(owner, getattr(prim, "_t", 0))]
    return []


def held_by(ident: int) -> list[Any]:
    """The live primitives thread ``ident`` holds."""
    out = []
    for prim in recorder.live_primitives():
        try:
            if any(h == ident for h, _ in holders_of(prim)):
                out.append(prim)
        except Exception:
            continue
    return out


# --------------------------------------------------------------------------
# Snapshot
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadState:
    """A thread holding or waiting for a primitive."""

    ident: int
    name: str
    #: Seconds it has been holding or waiting.
    seconds: float
    #: Where it is now in user code (``app/db.py:57``), or None.
    site: str | None
    #: Its stack, innermost first (only when asked for).
    stack: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrimitiveState:
    """Holders and waiters of one primitive at the moment of the snapshot."""

    name: str
    kind: str
    id: int
    holders: tuple[ThreadState, ...]
    waiters: tuple[ThreadState, ...]


def _thread_state(ident: int, since: int, now: int, stacks: bool) -> ThreadState:
    return ThreadState(
        ident=ident,
        name=recorder.thread_name(ident),
        seconds=max(0, now - since) / 1e9 if since else 0.0,
        site=_sites.format_site(_sites.thread_site(ident)),
        stack=tuple(_sites.thread_stack(ident)) if stacks else (),
    )


def snapshot(stacks: bool = False) -> list[PrimitiveState]:
    """Every live primitive that has a holder or a waiter right now."""
    now = _now()
    waiters: dict[int, list[tuple[int, int]]] = {}
    prims: dict[int, Any] = {}
    for table in (recorder.waiting_threads(), recorder.idle_waiting_threads()):
        for ident, (prim, since, _ctx) in table.items():
            waiters.setdefault(prim._meta[0], []).append((ident, since))
            prims[prim._meta[0]] = prim
    for prim in recorder.live_primitives():
        prims.setdefault(prim._meta[0], prim)
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
                name=prim._meta[1],
                kind=prim._meta[2],
                id=pid,
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
        lines.append(f"  {st.kind} {clean(st.name)} (id {st.id})")
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

_ast_cache: dict[str, ast.Module | None] = {}


def _parsed(filename: str) -> ast.Module | None:
    if filename in _ast_cache:
        return _ast_cache[filename]
    tree = None
    try:
        source = "".join(linecache.getlines(filename))
        if source:
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        tree = None
    if len(_ast_cache) > 512:
        _ast_cache.clear()
    _ast_cache[filename] = tree
    return tree


_MISSING = object()


def _resolve(node: ast.AST, frame: Any) -> Any:
    """The object a ``name`` or ``name.attr.attr`` expression denotes in ``frame``,
    read statically (no property, no ``__getattr__`` runs), else _MISSING."""
    import builtins
    import inspect

    if isinstance(node, ast.Name):
        for namespace in (frame.f_locals, frame.f_globals, vars(builtins)):
            if node.id in namespace:
                return namespace[node.id]
        return _MISSING
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, frame)
        if base is _MISSING:
            return _MISSING
        try:
            return inspect.getattr_static(base, node.attr)
        except AttributeError:
            return _MISSING
    return _MISSING


def earlier_acquisition_site(prim: Any, frames: list[Any]) -> str | None:
    """Where the blocked thread took ``prim`` before, read from its own stack.

    Walks the frames outward; in each, looks in its source for a ``with``
    statement whose block contains the frame's current line, or an
    ``acquire()`` call earlier in the same function, on an expression (a name
    or attribute chain, resolved statically in that frame) that is ``prim``.
    """
    for depth, frame in enumerate(frames):
        tree = _parsed(frame.f_code.co_filename)
        if tree is None:
            continue
        line = frame.f_lineno
        best = 0
        for node in ast.walk(tree):
            if isinstance(node, (ast.With, ast.AsyncWith)):
                start, end = node.lineno, node.end_lineno or node.lineno
                if depth == 0 and start == line:
                    continue  # the acquisition blocking right now
                if (
                    start <= line <= end
                    and start > best
                    and any(_resolve(i.context_expr, frame) is prim for i in node.items)
                ):
                    best = start
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "acquire"
                and node.lineno < line
                and node.lineno > best
                and _same_function(tree, node.lineno, line)
                and _resolve(node.func.value, frame) is prim
            ):
                best = node.lineno
        if best:
            return f"{_sites.relative_path(frame.f_code.co_filename)}:{best}"
    return None


def _same_function(tree: ast.Module, a: int, b: int) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start, end = node.lineno, node.end_lineno or node.lineno
            if start <= a <= end and start <= b <= end:
                return True
    return False


def _user_frames(limit: int = 30) -> list[Any]:
    import sys

    frames: list[Any] = []
    frame = _sites.user_frame(sys._getframe(1))
    while frame is not None and len(frames) < limit:
        if not _sites.is_tracedsync_file(frame.f_code.co_filename):
            frames.append(frame)
        frame = frame.f_back
    return frames


def _frame_text(frame: Any) -> str:
    code = frame.f_code
    return f"{_sites.relative_path(code.co_filename)}:{frame.f_lineno} in {code.co_name}"


def on_self_deadlock(prim: Any, t0: int) -> None:
    """The current thread starts to block on a Lock it holds itself."""
    frames = _user_frames()
    try:
        name = prim._meta[1]
        site = (
            f"{_sites.relative_path(frames[0].f_code.co_filename)}:{frames[0].f_lineno}"
            if frames
            else "?"
        )
        earlier = earlier_acquisition_site(prim, frames)
        me = _get_ident()
        thread = recorder.thread_name(me)
        held_text = f"acquired at {earlier}" if earlier else "acquired earlier in this thread"
        recorder.finding(
            "self_deadlock_suspected",
            {
                "level": "error",
                "thread.name": thread,
                "thread.id": me,
                "sync.kind": prim._meta[2],
                "sync.name": name,
                "sync.id": prim._meta[0],
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


class Watchdog:
    """The internal thread that looks for deadlocks and stuck waits."""

    def __init__(self, interval_s: float, stuck_after_ns: int) -> None:
        self.interval_s = interval_s
        self.stuck_after_ns = stuck_after_ns
        self._stop = _stdlib.Event()
        self._reported_deadlocks: set[frozenset[tuple[int, int]]] = set()
        self._reported_stuck: set[tuple[int, int, int]] = set()
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
        recorder.mark_internal()
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self.check()
                except Exception:
                    pass  # never let a bug of ours end the watchdog
        finally:
            recorder.unmark_internal()

    def check(self) -> None:
        """One pass: report new deadlocks and stuck waits."""
        waits = recorder.waiting_threads()
        if not waits:
            return
        now = _now()
        for group in deadlocked({i: w[0] for i, w in waits.items()}, holders_of):
            cycle_key = frozenset((i, waits[i][0]._meta[0]) for i in group)
            if cycle_key not in self._reported_deadlocks:
                self._reported_deadlocks.add(cycle_key)
                self._report_deadlock(group, waits, now)
        for ident, (prim, since, _ctx) in waits.items():
            if now - since < self.stuck_after_ns:
                continue
            key = (ident, prim._meta[0], since)
            if key in self._reported_stuck:
                continue
            self._reported_stuck.add(key)
            self._report_stuck(ident, prim, since, now)
        live_keys = {(i, w[0]._meta[0], w[1]) for i, w in waits.items()}
        self._reported_stuck &= live_keys

    def _report_deadlock(self, group: list[int], waits: dict[int, Any], now: int) -> None:
        threads = []
        parts = []
        for ident in group:
            prim, since, _ctx = waits[ident]
            name = recorder.thread_name(ident)
            holders = [h for h, _ in holders_of(prim) if h != ident]
            holder_names = [recorder.thread_name(h) for h in holders]
            threads.append(
                {
                    "thread.name": name,
                    "thread.id": ident,
                    "waits_for": prim._meta[1],
                    "waits_for_kind": prim._meta[2],
                    "waits_for_id": prim._meta[0],
                    "waited_ms": round((now - since) / 1e6, 3),
                    "held_by": holder_names,
                    "holds": [p._meta[1] for p in held_by(ident)],
                    "stack": _sites.thread_stack(ident),
                }
            )
            parts.append(f"{name} waits for {prim._meta[1]} held by {', '.join(holder_names)}")
        contexts = [waits[i][2] for i in group]
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
                    "sync.deadlock.primitives": [t["waits_for"] for t in threads],
                },
                contexts,
                min(waits[i][1] for i in group),
            ),
        )

    def _report_stuck(self, ident: int, prim: Any, since: int, now: int) -> None:
        holders = [h for h, _ in holders_of(prim) if h != ident]
        name = recorder.thread_name(ident)
        holder_names = [recorder.thread_name(h) for h in holders]
        waited_ms = round((now - since) / 1e6, 3)
        holder_text = (
            f", held by {', '.join(holder_names)} at "
            + ", ".join(_sites.format_site(_sites.thread_site(h)) for h in holders)
            if holders
            else ""
        )
        recorder.finding(
            "stuck_wait",
            {
                "level": "warning",
                "thread.name": name,
                "thread.id": ident,
                "sync.kind": prim._meta[2],
                "sync.name": prim._meta[1],
                "sync.id": prim._meta[0],
                "waited_ms": waited_ms,
                "site": _sites.format_site(_sites.thread_site(ident)),
                "sync.holder.thread.name": holder_names[0] if holder_names else None,
                "holder_stacks": {recorder.thread_name(h): _sites.thread_stack(h) for h in holders},
                "message": (
                    f"stuck wait: {name} has waited {waited_ms / 1e3:.1f} s for "
                    f"{prim._meta[1]}{holder_text}"
                ),
            },
        )


# --------------------------------------------------------------------------
# Lock-order inversions (opt-in)
# --------------------------------------------------------------------------


class LockOrder:
    """The graph of nesting orders between lock classes (lockdep style)."""

    def __init__(self) -> None:
        self._lock = _RawRLock()
        #: (outer class, inner class) -> (outer site, inner site, thread name)
        self.edges: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._graph: dict[str, set[str]] = {}
        #: thread ident -> [(primitive, class, raw acquisition site)] it holds, in order
        self._held: dict[int, list[tuple[Any, str, Any]]] = {}
        self._reported: set[frozenset[tuple[str, str]]] = set()

    def declare(self, *classes: str) -> None:
        """Declare the intended order: each class before the next."""
        for outer, inner in itertools.pairwise(classes):
            self._add_edge(outer, inner, "declared", "declared", "declared")

    def attempt(self, prim: Any) -> Any:
        """A blocking acquire begins: add an edge from each class held that has
        none to this class yet. Returns the call site when it had to read it."""
        me = _get_ident()
        held = self._held.get(me)
        if not held:
            return None
        if getattr(prim, "_owner", None) == me and hasattr(prim, "_count"):
            return None  # RLock re-entry
        cls = prim._meta[1]
        edges = self.edges
        new = [
            (held_cls, held_site)
            for other, held_cls, held_site in held
            if held_cls != cls and other is not prim and (held_cls, cls) not in edges
        ]
        if not new:
            return None
        site = _sites.call_site(2)
        thread = recorder.thread_name(me)
        with self._lock:
            for held_cls, held_site in new:
                self._add_edge(
                    held_cls, cls, _sites.format_site(held_site), _sites.format_site(site), thread
                )
        return site

    def acquired(self, prim: Any, site: Any) -> None:
        """The acquire succeeded: the thread now holds ``prim``.

        Each thread appends to its own list only (atomic under the GIL); the
        site is kept raw and formatted only if it ever ends up in a report.
        """
        if getattr(prim, "_count", 1) > 1:
            return  # RLock re-entry
        if site is None:
            site = _sites.call_site(2)
        me = _get_ident()
        stack = self._held.get(me)
        if stack is None:
            stack = self._held[me] = []
        stack.append((prim, prim._meta[1], site))

    def released(self, prim: Any) -> None:
        if getattr(prim, "_count", 0) > 0:
            return  # RLock still held
        me = _get_ident()
        stack = self._held.get(me)
        if stack:
            for i in range(len(stack) - 1, -1, -1):
                if stack[i][0] is prim:
                    del stack[i]
                    return
        with self._lock:  # a Lock released by a thread that did not take it
            for ident, stack in list(self._held.items()):
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i][0] is prim:
                        del stack[i]
                        if not stack and ident != me:
                            self._held.pop(ident, None)
                        return

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
        text = "; ".join(
            f"{e['thread.name']} took {e['inner']} at {e['inner_site']} while holding "
            f"{e['outer']} (taken at {e['outer_site']})"
            for e in described
        )
        recorder.finding(
            "lock_order_inversion",
            {
                "level": "warning",
                "cycle": [c for c in cycle[:-1]],
                "edges": described,
                "message": f"lock-order inversion (potential deadlock) over {len(described)} "
                f"locks: {text}",
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
        cls.__enter__ = _ordered_enter(originals["__enter__"])  # type: ignore[method-assign]
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
    names = [lk if isinstance(lk, str) else lk._meta[1] for lk in locks]
    _order.declare(*names)


# --------------------------------------------------------------------------
# Lifecycle (driven by tracedsync.config)
# --------------------------------------------------------------------------

_watchdog: Watchdog | None = None


def _start(cfg: config.Config, pipeline: Any) -> None:
    global _watchdog, _order
    recorder._hooks.self_deadlock = on_self_deadlock
    if cfg.lock_order and cfg.enabled:
        _install_lock_order()
    else:
        _remove_lock_order()
        _order = None
    if pipeline is not None:
        _watchdog = Watchdog(cfg.watchdog_interval_ms / 1000, int(cfg.stuck_after_ms * 1e6))
        _watchdog.start()


def _stop() -> None:
    global _watchdog
    watchdog, _watchdog = _watchdog, None
    if watchdog is not None:
        watchdog.stop()


def watchdog() -> Watchdog | None:
    """The running watchdog, if any."""
    return _watchdog


config.register_component(_start, _stop)
