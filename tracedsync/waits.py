"""Who is blocked on what, right now.

Every thread blocked in a traced primitive has an entry here while it
waits: lock-like acquires once they outlive the wait threshold, idle waits
(``Event``, ``Condition`` -- a ``Queue``'s included --, ``Barrier``) as soon
as they block. The watchdog builds the wait-for graph from it, a waiter
reads from it what its holder is itself waiting for, ``snapshot()`` shows
it, and at exit or SIGTERM what is still here becomes the ``unfinished``
waits. An entry is a plain object set and removed by its own thread
(``dict`` operations are atomic), so readers take a copy.
"""

from __future__ import annotations

from _thread import get_ident
from time import monotonic_ns as _now
from typing import Any

from tracedsync import _settings, _threads, records
from tracedsync.describe import iso_timestamp, primitive_fields


class Blocked:
    """One thread's wait under way."""

    __slots__ = ("context", "idle", "prim", "reported", "since", "since_wall")

    def __init__(self, prim: Any, since: int, context: Any, idle: bool) -> None:
        self.prim = prim
        #: Monotonic ns when the wait began.
        self.since = since
        #: The waiting thread's OpenTelemetry context.
        self.context = context
        #: An Event/Condition/Barrier wait (waiting for work or a signal).
        self.idle = idle
        #: Set once a finding named this wait: its span is always kept.
        self.reported = False
        #: ``since`` in wall-clock ns, fixed by its first report (0 before):
        #: every later report of the wait gives the same start, so readers
        #: can tell it is the same wait.
        self.since_wall = 0


_blocked: dict[int, Blocked] = {}


def begin(prim: Any, since: int, idle: bool) -> Blocked:
    """The calling thread starts to block on ``prim``."""
    entry = _blocked[get_ident()] = Blocked(
        prim, since, records.current_context() if _settings.current.recording else None, idle
    )
    return entry


def end() -> Blocked | None:
    """The calling thread's wait is over; its entry (None if it had none).

    A wait a flush already reported still blocked (``unfinished_wait``: the
    main thread ended while it waited, say) is said to have ended, so that
    the summary and the report do not call it blocked at exit.
    """
    entry = _blocked.pop(get_ident(), None)
    if entry is not None and entry.since_wall:
        _ended(entry)
    return entry


def _ended(entry: Blocked) -> None:
    if not _settings.current.recording:
        return
    try:
        me = get_ident()
        meta = entry.prim._meta
        thread = _threads.thread_name(me)
        fields = {
            "level": "info",
            "thread.name": thread,
            "thread.id": me,
            **primitive_fields(meta),
            "since": iso_timestamp(entry.since_wall),
            "message": f"{thread} is no longer blocked on {meta.kind} {meta.name} #{meta.instance}",
        }
        records.emit(
            records.Finding("unfinished_wait_ended", fields, entry.context, None, _now()),
            urgent=True,
        )
    except Exception:
        pass


def restore(entry: Blocked | None) -> None:
    """Put back the calling thread's wait that another (nested) replaced."""
    if entry is None:
        _blocked.pop(get_ident(), None)
    else:
        _blocked[get_ident()] = entry


def of(ident: int) -> Blocked | None:
    """Thread ``ident``'s wait under way, or None."""
    return _blocked.get(ident)


def snapshot() -> dict[int, Blocked]:
    """Every wait under way: thread ident -> entry (a copy)."""
    return dict(_blocked)


def at_fork_child() -> None:
    """The parent's waiters do not exist in a fork child."""
    _blocked.clear()
