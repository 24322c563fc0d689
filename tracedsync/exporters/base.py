"""What the pipeline hands to exporters, and the interface they implement.

The pipeline builds spans as :class:`SpanData` (plain slots objects, cheap to
make) and log events as dicts; each exporter encodes what it consumes
directly. Exporters that need OpenTelemetry SDK objects (the official OTLP
exporters, any ``SpanExporter`` a user passes in) convert with
:func:`tracedsync.exporters.sdk.to_readable_span`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    Each exporter has its own delivery lane (a bounded queue and an internal
    thread, :mod:`tracedsync.exporters.lanes`): every method but
    :meth:`abort` is called on that lane's thread, one call at a time, never
    on the program's threads. A slow or hung exporter holds up only its own
    lane. Raise (any exception) to report a failed export; the records of
    that batch count as failed for this exporter, and ``exporter_failed`` is
    logged once per exporter and kind of failure.
    """

    #: Short name used in ``exporter_failed`` events and error messages.
    name = "exporter"
    wants_spans = False
    wants_metrics = False
    wants_logs = False
    #: True for exporters tracedsync made from a name (it shuts them down);
    #: objects passed to configure() stay the caller's and are only flushed.
    owned = False
    #: Where it sends (an endpoint, a directory), named in messages; None if unknown.
    destination: str | None = None

    def start(self) -> None:
        """Called once when the pipeline starts (on the thread that configured
        tracedsync), before any other call: start any thread of your own here."""

    def set_metrics_source(self, source: Callable[[], Any]) -> None:
        """Called before :meth:`start` with a function returning the metric
        data now (a ``MetricsData``), callable from any thread: for exporters
        that are asked for metrics (a scrape) rather than handed them."""

    def export_spans(self, spans: Sequence[SpanData]) -> None:
        """Deliver a batch of finished spans."""

    def export_metrics(self, metrics: Any) -> None:
        """Deliver a ``tracedsync.exporters.model.MetricsData`` (the SDK's
        field names; ``tracedsync.exporters.sdk.sdk_metrics_data`` makes the
        SDK's own)."""

    def export_logs(self, events: Sequence[LogEvent]) -> None:
        """Deliver a batch of log events."""

    def flush(self, timeout_s: float) -> None:
        """Push out anything buffered."""

    def shutdown(self, timeout_s: float) -> None:
        """Flush and release resources; no call follows."""

    def abort(self) -> None:
        """Make a running export give up now. The one method called from
        another thread, while an export may be running on the lane's thread.

        Called when the shutdown timeout is about to run out and this
        exporter's lane is still busy (a collector that is down or never
        answers makes the OTLP exporters retry or wait for up to their own
        timeout). No call follows it; what the lane still held counts as
        failed. The default does nothing.
        """


class ExporterUnavailable(RuntimeError):
    """A named exporter cannot start here (its packages are missing, its
    settings are unusable, no port): it is left out with one warning line."""


#: Longest ``exporter_failed`` detail; longer ones are cut at a word boundary.
DETAIL_LIMIT = 600


def clip(text: str, limit: int = DETAIL_LIMIT) -> str:
    """``text`` on one line (whitespace runs made one space), cut at a word
    boundary with `` …`` when longer than ``limit``."""
    one_line = " ".join(text.split())
    if len(one_line) <= limit:
        return one_line
    cut = one_line[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:|") + " …"


def describe_failure(exc: BaseException, seconds: float, aborted: bool = False) -> str:
    """The one-line detail of a failed export: the exception's own words,
    how long the call ran (when that is a second or more: a timeout shows),
    and, when shutdown cut it short, that it was still running then."""
    text = clip(str(exc) or type(exc).__name__)
    if aborted:
        return f"still running after {seconds:.1f} s when shutdown cut it short: {text}"
    if seconds >= 1.0:
        text += f" (after {seconds:.1f} s)"
    return text
