"""The kinds of primitive, and how their waits read: declared once for the
runtime, the exporters and the report (which must not import the runtime)."""

from __future__ import annotations

KINDS = ("lock", "rlock", "condition", "semaphore", "bounded_semaphore", "event", "barrier")
#: Kinds whose waits are contention (the report's PRIMITIVES section); a
#: condition's lock is one of them, its ``wait()`` is not.
LOCK_KINDS = frozenset({"lock", "rlock", "semaphore", "bounded_semaphore"})
#: Kinds whose waits are waits for work or a signal (the IDLE WAITS section).
IDLE_KINDS = frozenset({"event", "condition", "barrier"})
