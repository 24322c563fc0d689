"""The settings the hot and slow paths read: one object, replaced whole.

``tracedsync.config`` validates options and calls :func:`use` with a new
:class:`Settings`; nothing else writes here. Code that runs on every
acquisition reads ``_settings.current.<field>`` through this one reference
(the compiled hot path is handed the few integers it compares in C by
:func:`use`, the only place that changes them).
"""

from __future__ import annotations

from typing import Any

from tracedsync import _impl

#: "No threshold": larger than any duration in ns.
NEVER = 1 << 62

#: While nothing records (no pipeline), holds from about a second on still
#: reach the recorder, which drops them: 2**30 - 1 is the largest int that
#: CPython 3.11+ compares on its one-digit fast path, so the pure-Python
#: release pays nothing for the comparison.
HOLD_OFF_NS = (1 << 30) - 1


class Settings:
    """Thresholds and limits, in the units the recorder compares (replaced
    whole, never changed in place)."""

    __slots__ = (
        "buffer_capacity",
        "enabled",
        "hold_gate_ns",
        "hold_ns",
        "idle_stuck_after_ns",
        "recording",
        "spans_per_second",
        "stack_depth",
        "stuck_after_ns",
        "wait_ns",
    )

    def __init__(
        self,
        *,
        wait_ns: int = 1_000_000,
        hold_ns: int = 10_000_000,
        spans_per_second: int = 1000,
        buffer_capacity: int = 65536,
        enabled: bool = True,
        recording: bool = False,
        stack_depth: int = 32,
        stuck_after_ns: int = 5_000_000_000,
        idle_stuck_after_ns: int = 60_000_000_000,
    ) -> None:
        #: A blocking wait this long (ns) becomes a record.
        self.wait_ns = wait_ns
        #: A hold this long (ns) becomes a record (the configured value).
        self.hold_ns = hold_ns
        #: Spans kept per primitive, per second, per kind (wait/hold); NEVER: no budget.
        self.spans_per_second = spans_per_second
        #: Records the buffer holds before dropping.
        self.buffer_capacity = buffer_capacity
        #: False: every constructor returns the stdlib's object.
        self.enabled = enabled
        #: True while a pipeline consumes records.
        self.recording = recording
        #: Frames of stack kept with a record (0: the call site only).
        self.stack_depth = stack_depth
        #: A lock-like wait blocked this long (ns) is stuck.
        self.stuck_after_ns = stuck_after_ns
        #: An idle wait (Event, Condition, Barrier) blocked this long (ns) is stuck.
        self.idle_stuck_after_ns = idle_stuck_after_ns
        #: What the pure-Python release compares a hold with: ``hold_ns`` while
        #: recording, else ``HOLD_OFF_NS``.
        self.hold_gate_ns = hold_ns if recording else HOLD_OFF_NS

    @property
    def budgeted(self) -> bool:
        """True when the per-primitive span budget applies."""
        return self.spans_per_second < NEVER

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (``hold_gate_ns`` follows)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        del values["hold_gate_ns"]
        return Settings(**values)


#: The settings in force.
current = Settings()


def use(new: Settings) -> Settings:
    """Make ``new`` the settings in force."""
    global current
    current = new
    speedups = _impl.speedups
    if speedups is not None:
        speedups.set_hold_threshold(new.hold_ns if new.recording else NEVER)
        speedups.set_wait_threshold(new.wait_ns)
    return new


def update(**changes: Any) -> Settings:
    """``use(current.replace(**changes))``."""
    return use(current.replace(**changes))


use(current)  # the compiled path's copies of the thresholds, from the start
