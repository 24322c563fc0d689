"""tracedsync's own log events: a private structlog pipeline.

Every event (``long_wait``, ``deadlock_detected``, ``exporter_failed``...) is
made with ``structlog.wrap_logger`` and *every* argument given, so the
application's global structlog configuration is never read or changed. The
logger at the end of the chain is a :class:`Collector` the pipeline empties
into the exporters' lanes.
"""

from __future__ import annotations

import importlib.metadata  # noqa: F401 - see below
from collections.abc import MutableMapping
from typing import Any

import structlog

from tracedsync.describe import iso_timestamp
from tracedsync.exporters.base import LogEvent, SpanEvent

__all__ = ["SPAN_FIELD", "Collector", "iso_timestamp", "make_logger"]

# structlog's module __getattr__ imports importlib.metadata on any unknown
# attribute (hasattr(structlog, "x") included): imported here, it cannot
# change sys.modules later under a program that iterates it (CPython's
# regrtest does, checking __warningregistry__ on every module).


class Collector:
    """The logger at the end of tracedsync's private structlog pipeline:
    ``_EventLogger`` appends each finished event dict to ``events``."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []


class _EventLogger(structlog.BoundLoggerBase):
    """tracedsync's bound logger (a structlog custom wrapper class): each level
    method runs the processor chain and hands the event dict to the collector,
    without the generic BoundLogger's per-call proxying (one event is made per
    exported wait or hold span)."""

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        args, _ = self._process_event(level, event, fields)
        self._logger.events.append(args[0])

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._emit("critical", event, fields)


#: The keyword a wait or hold event is logged with: the span it mirrors.
SPAN_FIELD = "_tracedsync_span"


def _span_fields(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Processor: a wait or hold event's fields, read from the span it mirrors:
    a ``SpanEvent`` (its timestamp, level, event, ids and duration, then the
    span's attributes), or a plain dict when other fields were logged too."""
    span = event_dict.pop(SPAN_FIELD, None)
    if span is None:
        return event_dict
    d = span.end_ns - span.start_ns
    fields = SpanEvent(
        timestamp=iso_timestamp(span.end_ns),
        level=event_dict.pop("level", None),
        event=event_dict.pop("event", None),
        trace_id=f"{span.trace_id:032x}",
        span_id=f"{span.span_id:016x}",
        # milliseconds to the nearest microsecond
        duration_ms=(d + 500) // 1000 / 1000,
    )
    fields.update(span.attributes)
    if event_dict:
        fields.update(event_dict)
        return dict(fields)
    fields.span = span
    return fields


def _to_record(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    return ((event_dict,), {})


def make_logger(collector: Collector) -> Any:
    # Every argument is given: whatever is left out would come from the
    # application's global structlog configuration, which is not ours.
    # bind() once: the lazy proxy wrap_logger returns would build a new bound
    # logger for every event.
    return structlog.wrap_logger(
        collector,
        processors=[structlog.processors.add_log_level, _span_fields, _to_record],
        wrapper_class=_EventLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
        logger_factory_args=(),
    ).bind()
