"""``tracedsync report``: turn tracedsync output files into answers.

Which lock hurts, who waits, who holds, when. The data flows one way::

    read.py        files -> lines -> decoded records (SpanRecord, log events);
                   the one attribute decoder; fast.py: the same records
                   through msgspec's typed decoder (tracedsync[fast])
    metrics.py     metrics lines and summary files -> checked snapshots
    model.py       records and snapshots -> bounded aggregates (Analysis),
                   waits still blocked; timeline.py keeps the slowest spans
    document.py    aggregates -> the document (plain data, stable keys):
                   PRIMITIVES (contention), IDLE WAITS, still blocked, threads
    render_*.py    document (+ timeline) -> table, json, html, perfetto
    command.py     the command line: options, --fail-on, the flow above;
                   run_report() for ``tracedsync run``
    errors.py      ReportError, the one error every layer raises

Formats: ``table`` (terminal), ``json`` (stable keys, for scripts),
``html`` (one self-contained page with a per-thread timeline; its CSS and
script are package data in ``assets/``) and ``perfetto`` (Chrome Trace Event
JSON). The report imports neither OpenTelemetry nor structlog, and no traced
program imports it.
"""

from __future__ import annotations

from tracedsync.report.command import (
    FailOn,
    add_arguments,
    command,
    parse_fail_on,
    parse_time,
    print_run_report,
    run_report,
    run_summary,
)
from tracedsync.report.errors import ReportError

__all__ = [
    "FailOn",
    "ReportError",
    "add_arguments",
    "command",
    "parse_fail_on",
    "parse_time",
    "print_run_report",
    "run_report",
    "run_summary",
]
