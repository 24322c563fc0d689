"""The settings the hot and slow paths read: one object, replaced whole.

``tracedsync.config`` validates options and calls :func:`use` with a new
:class:`Settings`; nothing else writes here. Code that runs on every
acquisition reads ``_settings.current.<field>`` through this one reference
(the compiled hot path is handed the few integers it compares in C by
:func:`use`, the only place that changes them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tracedsync import _impl

#: "No threshold": larger than any duration in ns.
NEVER = 1 << 62

#: While nothing records (no pipeline), holds from about a second on still
#: reach the recorder, which drops them: 2**30 - 1 is the largest int that
#: CPython 3.11+ compares on its one-digit fast path, so the pure-Python
#: release pays nothing for the comparison.
HOLD_OFF_NS = (1 << 30) - 1


@dataclass(frozen=True, slots=True)
class Settings:
    """Thresholds and limits, in the units the recorder compares."""

    #: A blocking wait this long (ns) becomes a record.
    wait_ns: int = 1_000_000
    #: A hold this long (ns) becomes a record (the configured value).
    hold_ns: int = 10_000_000
    #: Spans kept per primitive, per second, per kind (wait/hold); NEVER: no budget.
    spans_per_second: int = 1000
    #: Records the buffer holds before dropping.
    buffer_capacity: int = 65536
    #: False: every constructor returns the stdlib's object.
    enabled: bool = True
    #: True while a pipeline consumes records.
    recording: bool = False
    #: Frames of stack kept with a record (0: the call site only).
    stack_depth: int = 32
    #: A lock-like wait blocked this long (ns) is stuck.
    stuck_after_ns: int = 5_000_000_000
    #: An idle wait (Event, Condition, Barrier) blocked this long (ns) is stuck.
    idle_stuck_after_ns: int = 60_000_000_000
    #: What the pure-Python release compares a hold with: ``hold_ns`` while
    #: recording, else ``HOLD_OFF_NS``.
    hold_gate_ns: int = HOLD_OFF_NS

    @property
    def budgeted(self) -> bool:
        """True when the per-primitive span budget applies."""
        return self.spans_per_second < NEVER


#: The settings in force.
current = Settings()


def use(new: Settings) -> Settings:
    """Make ``new`` the settings in force (``hold_gate_ns`` is derived here)."""
    global current
    new = replace(new, hold_gate_ns=new.hold_ns if new.recording else HOLD_OFF_NS)
    current = new
    speedups = _impl.speedups
    if speedups is not None:
        speedups.set_hold_threshold(new.hold_ns if new.recording else NEVER)
    return new


def update(**changes: object) -> Settings:
    """``use(replace(current, **changes))``."""
    return use(replace(current, **changes))  # type: ignore[arg-type]
