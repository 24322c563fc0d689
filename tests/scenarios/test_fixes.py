"""Runtime faults the scenarios found, each pinned down in-process.

The scenarios (``test_scenarios.py``) show them end to end, under
``tracedsync run``; these tests say exactly what was wrong, and fail fast.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import tracedsync
from tracedsync.testing import LogCollector, blocked_on, wait_until

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def configure(logs: LogCollector, **kw: Any) -> None:
    options: dict[str, Any] = {"watchdog_interval_ms": 50, "stuck_after_ms": 60_000}
    options.update(kw)
    tracedsync.configure(exporters=[logs], **options)


def test_unfinished_wait_events_carry_a_timestamp(logs: LogCollector) -> None:
    """``unfinished_wait`` has a timestamp like every other event (the report
    sorted it first, as "?")."""
    configure(logs)
    never = tracedsync.Event(name="never")
    waiter = threading.Thread(target=never.wait, name="waiter", daemon=True)
    waiter.start()
    try:
        wait_until(blocked_on(never))
        assert tracedsync.flush(10)
        (event,) = logs.named("unfinished_wait")
        assert ISO_UTC.fullmatch(event["timestamp"])
    finally:
        never.set()
        waiter.join(10)
