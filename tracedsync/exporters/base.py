"""What the pipeline hands to exporters, and the interface they implement.

The pipeline builds spans as :class:`SpanData` (plain slots objects, cheap to
make) and log events as dicts; each exporter encodes what it consumes
directly. Exporters that need OpenTelemetry SDK objects (the official OTLP
exporters, any ``SpanExporter`` a user passes in) convert with
:func:`tracedsync.exporters.sdk.to_readable_span`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SpanData:
    """One finished span.

    Ids are ints (128-bit trace id, 64-bit span ids); times are nanoseconds
    since the epoch; ``links`` is a list of ``(trace_id, span_id, attributes)``.
    """

    __slots__ = (
        "attributes",
        "end_ns",
        "links",
        "name",
        "parent_span_id",
        "span_id",
        "start_ns",
        "status_code",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent_span_id: int,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        links: list[tuple[int, int, dict[str, Any]]] | None = None,
        status_code: int = 0,
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.attributes = attributes
        self.links = links if links is not None else []
        #: OTLP status code: 0 unset, 1 ok, 2 error.
        self.status_code = status_code

    def __repr__(self) -> str:
        return (
            f"SpanData(name={self.name!r}, trace_id={self.trace_id:032x}, "
            f"span_id={self.span_id:016x}, parent={self.parent_span_id:016x})"
        )


class SharedAttributes(dict):  # type: ignore[type-arg]
    """A span's attributes as the pipeline makes them: one dict for every span
    of the same primitive, thread, call site and outcome, never changed once
    made. Exporters may cache what they derive from one by identity (its
    text, say); they must not change it, nor any ``SpanData`` or event."""

    __slots__ = ()


#: A log event: a flat dict with at least ``timestamp`` (ISO 8601, UTC),
#: ``level``, ``event``; the related span's attributes and, when there is one,
#: ``trace_id`` and ``span_id`` (hex).
LogEvent = dict[str, Any]


class SpanEvent(dict):  # type: ignore[type-arg]
    """The ``long_wait`` / ``long_hold`` event mirroring ``span``: a ``LogEvent``
    whose keys are ``timestamp, level, event, trace_id, span_id, duration_ms``
    and then exactly the span's attributes, in that order."""

    __slots__ = ("span",)
    span: SpanData


class ExportError(Exception):
    """An exporter could not deliver a batch."""


class Exporter:
    """Base class of tracedsync exporters: override what you consume.

    Every method but :meth:`abort` is called on the pipeline thread only,
    never concurrently.
    Raise (any exception) to report a failed export; the pipeline counts it
    and logs ``exporter_failed`` once per exporter and kind of failure.
    """

    #: Short name used in ``exporter_failed`` events and error messages.
    name = "exporter"
    wants_spans = False
    wants_metrics = False
    wants_logs = False
    #: True for exporters tracedsync made from a name (it shuts them down);
    #: objects passed to configure() stay the caller's and are only flushed.
    owned = False

    def export_spans(self, spans: Sequence[SpanData]) -> None:
        """Deliver a batch of finished spans."""

    def export_metrics(self, metrics: Any) -> None:
        """Deliver an ``opentelemetry.sdk.metrics.export.MetricsData``."""

    def export_logs(self, events: Sequence[LogEvent]) -> None:
        """Deliver a batch of log events."""

    def flush(self, timeout_s: float) -> None:
        """Push out anything buffered."""

    def shutdown(self, timeout_s: float) -> None:
        """Flush and release resources; no call follows."""

    def abort(self) -> None:
        """Make a running export give up now. The one method called from
        another thread, while an export may be running on the pipeline thread.

        The pipeline calls it when its shutdown timeout is about to run out
        (a collector that is down or refusing makes the OTLP exporters retry
        for up to their own timeout); ``shutdown`` (for exporters tracedsync
        made) still follows on the pipeline thread. The default does nothing.
        """
