"""Threads: tracedsync's own (never traced) and the names of everyone's.

An internal thread (the pipeline, the watchdog, the exporters' lanes) is
marked here; whatever a marked thread does with a primitive is not recorded.
Names are read from ``threading``'s registry; a thread that has ended keeps
the name it was last seen with (:func:`remember_names`), so a lock it left
held is still blamed on ``worker-7 (ended)``.
"""

from __future__ import annotations

import sys
import threading
from _thread import get_ident

from tracedsync._format import MAX_TEXT, cap

#: threading's registry of running threads (a dict it never rebinds).
active: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]

#: The marked threads' idents (a set changed in place: hot code binds it).
internal: set[int] = set()
#: ident -> last name seen, for threads that may have ended.
_seen_names: dict[int, str] = {}
_SEEN_LIMIT = 10_000


def mark_internal(ident: int | None = None) -> None:
    """Mark a thread as tracedsync's own: nothing it does is recorded."""
    internal.add(get_ident() if ident is None else ident)


def unmark_internal(ident: int | None = None) -> None:
    internal.discard(get_ident() if ident is None else ident)


def is_internal(ident: int | None = None) -> bool:
    return (get_ident() if ident is None else ident) in internal


def internal_idents() -> set[int]:
    """The marked threads now (a copy)."""
    return set(internal)


def name_of(thread: threading.Thread | None, ident: int) -> str:
    """A Thread's name (cut at ``_format.MAX_TEXT`` characters, marked), or
    ``thread-<ident>``."""
    if thread is None:
        return f"thread-{ident}"
    try:
        name = str(thread.name)
    except Exception:
        return f"thread-{ident}"
    return name if len(name) <= MAX_TEXT else cap(name)


def thread_name(ident: int) -> str:
    """The name of thread ``ident``: running, else the one Thread object that
    ran as ``ident`` and ended (while the program still refers to it), else
    last seen, else ``thread-<ident>``."""
    thread = active.get(ident)
    if thread is not None:
        return name_of(thread, ident)
    thread = _ended_thread(ident)
    if thread is not None:
        return name_of(thread, ident)
    return _seen_names.get(ident) or f"thread-{ident}"


def _ended_thread(ident: int) -> threading.Thread | None:
    """The Thread that ran as ``ident`` and has ended, if exactly one is still
    referenced (``threading._dangling`` holds every Thread weakly): a thread
    that lived between two watchdog passes was never seen by name."""
    try:
        refs = threading._dangling.data.copy()  # type: ignore[attr-defined]
        found = [t for t in (ref() for ref in refs) if t is not None and t.ident == ident]
        ended = [t for t in found if not t.is_alive()]
    except Exception:
        return None
    return ended[0] if len(ended) == 1 else None


def alive(ident: int) -> bool:
    """True while thread ``ident`` runs (at the C level: any thread, even one
    ``threading`` never heard of)."""
    if ident in active:
        thread = active[ident]
        try:
            return thread.is_alive()
        except Exception:
            return True
    try:
        return ident in sys._current_frames()
    except Exception:
        return True


def ended(thread: threading.Thread | None, ident: int) -> bool:
    """True once the thread that acted as ``ident`` has ended: told by its
    Thread object when known (an ident is reused by threads started later),
    else by whether any thread runs as ``ident`` now."""
    if thread is not None:
        try:
            return not thread.is_alive()
        except Exception:
            return False
    return not alive(ident)


def remember_names() -> None:
    """Note the names of the running threads (the watchdog calls this each
    pass, and a waiter before it blames a holder)."""
    if len(_seen_names) > _SEEN_LIMIT:
        _seen_names.clear()
    for ident, thread in list(active.items()):
        _seen_names[ident] = name_of(thread, ident)


def at_fork_child() -> None:
    """In a fork child: the parent's internal threads do not exist here."""
    internal.clear()
