"""What the recorder hands the pipeline: records, one bounded buffer, counts.

A record is a small named tuple made on the program's thread when something
crosses a threshold (a wait, a hold) or is found (a deadlock...). It carries
raw facts only -- identities, monotonic times, thread idents, code objects
and offsets; turning them into names, text, spans and events is the
pipeline's work, on its own thread.

Counting rule: a record handed to :func:`emit` is *produced*: it is in the
buffer, or was taken by the pipeline (which counts what it takes and offers
it to every exporter's lane), or was *dropped* here because the buffer was
full. Records the span budget keeps out never get here: they are counted
*suppressed*, per primitive (``PrimitiveStats.spans_suppressed``).
"""

from __future__ import annotations

import collections
from _thread import allocate_lock
from collections.abc import Callable
from typing import Any, NamedTuple

from tracedsync import _settings

#: (absolute file path, line, function): a call site in user code.
CallSite = tuple[str, int, str]


class WaitingOn(NamedTuple):
    """What a holder was itself blocked on when a waiter looked."""

    meta: Any  # registry.Identity
    since: int  # monotonic ns
    site: CallSite | None


class Holder(NamedTuple):
    """The thread a waiter blamed when its wait crossed the threshold."""

    ident: int
    name: str
    ended: bool
    #: "path:line" where the holder took the primitive, None when unknown.
    acquired_at: str | None
    #: Where the holder was when the waiter looked.
    site: CallSite | None
    #: Permits it holds (semaphores), else 1.
    permits: int
    waiting_on: WaitingOn | None


class Wait(NamedTuple):
    """A wait that crossed the wait threshold (or was still blocked at exit)."""

    meta: Any  # registry.Identity
    thread: int
    thread_name: str
    start: int  # monotonic ns
    end: int
    #: acquired, timeout (locks, semaphores); notified, timeout (condition);
    #: set, timeout (event); passed, broken, timeout (barrier); unfinished.
    outcome: str
    context: Any  # the OpenTelemetry context current in the waiting thread
    #: stacks.Stack: the waiting thread's stack, its call site first; or None.
    stack: Any
    holder: Holder | None
    #: True: a holder existed but released before the waiter looked.
    released_before_wait: bool
    #: The span id reserved for the hold this wait links to, or None.
    link: int | None
    #: ns between the holder's release and this wait's end (lock waits), or None.
    handoff: int | None


class Hold(NamedTuple):
    """A hold that crossed the hold threshold, or that a waiter links to."""

    meta: Any  # registry.Identity
    thread: int
    #: Its name, read when the hold ended (not the Thread: a record waiting
    #: in the buffer must not keep a finished thread alive).
    thread_name: str
    start: int
    end: int
    context: Any
    #: stacks.Stack: the releasing thread's stack, the release site first; or None.
    stack: Any
    #: An RLock's deepest recursion during the hold, else 0.
    depth: int
    #: The span id reserved for it by a waiter (the wait's link), or None.
    span_id: int | None


class Finding(NamedTuple):
    """A detection finding (deadlock, stuck wait, ...): exported at once."""

    event: str
    fields: dict[str, Any]
    context: Any
    #: (span name, attributes, OTel contexts to link, start ns) or None.
    span: tuple[str, dict[str, Any], list[Any], int] | None
    at: int  # monotonic ns


Record = Wait | Hold | Finding

buffer: collections.deque[Record] = collections.deque()
_count_lock = allocate_lock()


class Accounting:
    """Record counts for the whole process.

    Nothing is counted when a record is appended (that is the program
    thread's cost): ``produced`` is derived.
    """

    def __init__(self) -> None:
        #: Taken from the buffer by the pipeline (each is offered to every lane).
        self.taken = 0
        #: Lost because the buffer was full.
        self.dropped = 0
        #: Of the taken, delivered to every exporter / failed at one.
        self.exported = 0
        self.failed = 0

    @property
    def produced(self) -> int:
        return self.taken + len(buffer) + self.dropped


accounting = Accounting()

#: Wakes the pipeline (set by it while it runs).
_wakeup: Callable[[], None] = lambda: None  # noqa: E731
#: The program thread's current OpenTelemetry context (set by the pipeline:
#: this package never imports OpenTelemetry on the program's path).
_context: Callable[[], Any] = lambda: None  # noqa: E731


#: Called once, by the thread emitting the first record (a fork child starts
#: its pipeline then), else None.
_on_first: Callable[[], None] | None = None


def connect(
    wakeup: Callable[[], None] | None,
    context: Callable[[], Any] | None,
    on_first: Callable[[], None] | None = None,
) -> None:
    """The pipeline plugs in how to wake it and how to read the context."""
    global _wakeup, _context, _on_first
    _wakeup = wakeup if wakeup is not None else (lambda: None)
    if context is not None:
        _context = context
    _on_first = on_first


def replace_context(old: Callable[[], Any], new: Callable[[], Any]) -> None:
    """Read the context with ``new`` from now on, if ``old`` is what reads it."""
    global _context
    if _context is old:
        _context = new


def current_context() -> Any:
    """The calling thread's OpenTelemetry context, or None."""
    try:
        return _context()
    except Exception:
        return None


def emit(record: Record, urgent: bool = False) -> None:
    """Append one record, or count it dropped when the buffer is full.

    No lock on the way in: ``deque.append`` is atomic, and threads racing
    past the size check can overfill the buffer by one record each. The
    pipeline is woken at half capacity and for urgent records.
    """
    if _on_first is not None:
        first_record()
    capacity = _settings.current.buffer_capacity
    n = len(buffer)
    if n < capacity:
        buffer.append(record)
        if urgent or n == capacity >> 1:
            try:
                _wakeup()
            except Exception:
                pass
        return
    with _count_lock:
        accounting.dropped += 1
    if urgent:
        try:
            _wakeup()
        except Exception:
            pass


def first_record() -> None:
    """A record is about to exist: run (once) what waits for the first one."""
    global _on_first
    first = _on_first
    if first is not None:
        _on_first = None
        try:
            first()
        except Exception:
            pass


def take_all() -> list[Record]:
    """Everything buffered now, oldest first (the pipeline's side)."""
    out: list[Record] = []
    pop = buffer.popleft
    try:
        while True:
            out.append(pop())
    except IndexError:
        pass
    accounting.taken += len(out)  # only the pipeline thread takes
    return out


def drop_buffer() -> None:
    """Discard buffered records (a fork child's: they are the parent's)."""
    with _count_lock:
        accounting.dropped += len(buffer)
        buffer.clear()


def at_fork_child() -> None:
    """In a fork child: the buffered records and the counts are the parent's."""
    global _count_lock
    _count_lock = allocate_lock()
    buffer.clear()
    accounting.taken = accounting.dropped = accounting.exported = accounting.failed = 0
