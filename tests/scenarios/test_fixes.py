"""Runtime faults the scenarios found, each pinned down in-process.

The scenarios (``test_scenarios.py``) show them end to end, under
``tracedsync run``; these tests say exactly what was wrong, and fail fast.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
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


SECOND_SIGTERM = """
import os, signal, sys
from tracedsync import child, lifecycle

calls = []

def final_flush():
    calls.append(1)
    if len(calls) == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # another SIGTERM while this flush runs
        sum(range(100000))                    # bytecodes: the pending handler runs here
        sys.stdout.write(f"flushed, {len(calls)} flush\\n")
        sys.stdout.flush()

lifecycle.final_flush = final_flush
child._flush_on_sigterm()
os.kill(os.getpid(), signal.SIGTERM)
sum(range(100000))
sys.stdout.write("survived SIGTERM\\n")
"""


def test_a_second_sigterm_does_not_cut_the_final_flush_short() -> None:
    """A SIGTERM sent to the process group reaches the program twice (directly
    and forwarded by ``tracedsync run``): the second, arriving during the
    final flush, killed the process before the flush had written anything."""
    result = subprocess.run(
        [sys.executable, "-c", SECOND_SIGTERM], capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "flushed, 1 flush\n", result.stderr
    assert result.returncode == -signal.SIGTERM
