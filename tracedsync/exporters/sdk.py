"""Bridges to OpenTelemetry SDK exporters.

A ``SpanExporter`` or ``MetricExporter`` instance given to
``tracedsync.configure(exporters=[...])`` is wrapped here; the official OTLP
exporters are used the same way by ``tracedsync.exporters.otlp``. The
pipeline's own data (``tracedsync.exporters.model``) becomes the SDK's
objects here, and only here: this module, and so the SDK, is imported only
when such an exporter is configured.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk import resources as sdk_resources
from opentelemetry.sdk.metrics import Exemplar as SdkExemplar
from opentelemetry.sdk.metrics import export as sdk_metrics
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from tracedsync.exporters import model
from tracedsync.exporters.base import Exporter, ExportError, SpanData, clip

#: Returns a context manager collecting the log lines an SDK exporter writes
#: during one call (see ``tracedsync.exporters.otlp``); they become the
#: detail of the failure instead of lines in the application's logs.
LogCapture = Callable[[], contextlib.AbstractContextManager[list[str]]]


def _no_capture() -> contextlib.AbstractContextManager[list[str]]:
    return contextlib.nullcontext([])


def _no_cause() -> str | None:
    return None


_RETRYING = re.compile(r",? retrying in [0-9.]+ ?s\.?")

#: Returns the cause of the last failed call made on this thread, when the
#: exporter's own log lines do not say it (see ``tracedsync.exporters.otlp``).
CauseGetter = Callable[[], "str | None"]


def _failure(name: str, result: str, lines: list[str], cause: str | None) -> ExportError:
    """The error for a failed export: the cause first (an HTTP status, the
    transport's exception), then what the SDK exporter logged during the call,
    its final verdict ("Failed to export ...") before the distinct errors of
    the attempts that preceded it ("Transient error ...", without the retry
    delays). One line, cut at a word boundary."""
    verdicts = [line for line in lines if line.startswith("Failed to")]
    attempts = [_RETRYING.sub("", line) for line in lines if line not in verdicts]
    if cause:
        attempts = []  # the cause is what the last attempt got
    said = " ".join(verdicts)
    # An attempt whose error details the verdict already gives adds nothing.
    attempts = [a for a in attempts if not _said(a.partition("Error details: ")[2], said)]
    parts = ([cause] if cause else []) + verdicts + attempts
    detail = " | ".join(dict.fromkeys(parts))
    return ExportError(clip(f"{name} returned {result}" + (f": {detail}" if detail else "")))


def _said(details: str, verdicts: str) -> bool:
    return bool(details) and details in verdicts


def _endpoint(exporter: Any) -> str | None:
    """Where an official OTLP exporter sends (a private attribute: None if absent)."""
    value = getattr(exporter, "_endpoint", None)
    return value if isinstance(value, str) else None


#: id(pipeline resource) -> (it, its SDK resource): made once per resource.
_sdk_resources: dict[int, tuple[model.Resource, Resource]] = {}


def sdk_resource(resource: model.Resource) -> Resource:
    """The SDK's ``Resource`` for the pipeline's: what ``Resource.create``
    gives (the SDK's ``telemetry.sdk.*`` attributes, then its configured
    resource detectors) with the pipeline's attributes over them.

    The pipeline's resource already holds what ``OTEL_RESOURCE_ATTRIBUTES``
    and ``OTEL_SERVICE_NAME`` say (``tracedsync.pipeline.build_resource``,
    the one reading of them), so the SDK's own detector for those variables
    is left out; a default the pipeline filled in (``unknown_service``)
    gives way to a detector's value. The detectors run one after another on
    the calling thread rather than in ``Resource.create``'s thread pool:
    configuring starts no thread but tracedsync's own, and a failing
    detector costs only its own attributes, as in the SDK. The SDK's
    ``telemetry.sdk.*`` attributes and detector list are private names; an
    SDK without them gets the pipeline's attributes alone.
    """
    hit = _sdk_resources.get(id(resource))
    if hit is not None and hit[0] is resource:
        return hit[1]
    merged = getattr(sdk_resources, "_DEFAULT_RESOURCE", None) or Resource.get_empty()
    try:
        detectors = sdk_resources._build_resource_detectors()
    except Exception:
        detectors = []
    for detector in detectors:
        if isinstance(detector, sdk_resources.OTELResourceDetector):
            continue
        try:
            merged = merged.merge(detector.detect())
        except Exception:
            continue
    ours = {
        k: v
        for k, v in resource.attributes.items()
        if k not in resource.defaulted or not merged.attributes.get(k)
    }
    made = merged.merge(Resource(ours, resource.schema_url or None))
    if len(_sdk_resources) > 16:
        _sdk_resources.clear()
    _sdk_resources[id(resource)] = (resource, made)
    return made


def sdk_scope(scope: model.Scope) -> InstrumentationScope:
    return InstrumentationScope(scope.name, scope.version, scope.schema_url or None)


def sdk_metrics_data(data: model.MetricsData) -> Any:
    """The SDK's ``MetricsData`` for the pipeline's (what an SDK
    ``MetricExporter`` takes)."""
    return sdk_metrics.MetricsData(
        resource_metrics=[
            sdk_metrics.ResourceMetrics(
                resource=sdk_resource(rm.resource),
                scope_metrics=[
                    sdk_metrics.ScopeMetrics(
                        scope=sdk_scope(sm.scope),
                        metrics=[_sdk_metric(m) for m in sm.metrics],
                        schema_url=sm.schema_url,
                    )
                    for sm in rm.scope_metrics
                ],
                schema_url=rm.schema_url,
            )
            for rm in data.resource_metrics
        ]
    )


def _sdk_metric(metric: model.Metric) -> Any:
    data = metric.data
    sdk_data: Any
    if isinstance(data, model.Sum):
        sdk_data = sdk_metrics.Sum(
            data_points=[_sdk_number(p) for p in data.data_points],
            aggregation_temporality=sdk_metrics.AggregationTemporality(
                data.aggregation_temporality
            ),
            is_monotonic=data.is_monotonic,
        )
    elif isinstance(data, model.Histogram):
        sdk_data = sdk_metrics.Histogram(
            data_points=[
                sdk_metrics.HistogramDataPoint(
                    attributes=p.attributes,
                    start_time_unix_nano=p.start_time_unix_nano,
                    time_unix_nano=p.time_unix_nano,
                    count=p.count,
                    sum=p.sum,
                    bucket_counts=p.bucket_counts,
                    explicit_bounds=p.explicit_bounds,
                    min=p.min,
                    max=p.max,
                    exemplars=[
                        SdkExemplar(
                            e.filtered_attributes, e.value, e.time_unix_nano, e.span_id, e.trace_id
                        )
                        for e in p.exemplars
                    ],
                )
                for p in data.data_points
            ],
            aggregation_temporality=sdk_metrics.AggregationTemporality(
                data.aggregation_temporality
            ),
        )
    else:
        sdk_data = sdk_metrics.Gauge(data_points=[_sdk_number(p) for p in data.data_points])
    return sdk_metrics.Metric(
        name=metric.name, description=metric.description, unit=metric.unit, data=sdk_data
    )


def _sdk_number(point: model.NumberDataPoint) -> Any:
    return sdk_metrics.NumberDataPoint(
        attributes=point.attributes,
        start_time_unix_nano=point.start_time_unix_nano,
        time_unix_nano=point.time_unix_nano,
        value=point.value,
    )


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_STATUS = {0: Status(StatusCode.UNSET), 1: Status(StatusCode.OK), 2: Status(StatusCode.ERROR)}


def to_readable_span(
    span: SpanData, resource: Resource, scope: InstrumentationScope
) -> ReadableSpan:
    """Convert a :class:`SpanData` into the SDK's ``ReadableSpan``."""
    context = SpanContext(span.trace_id, span.span_id, False, _SAMPLED)
    parent = (
        SpanContext(span.trace_id, span.parent_span_id, False, _SAMPLED)
        if span.parent_span_id
        else None
    )
    links = [
        Link(SpanContext(trace_id, span_id, False, _SAMPLED), attributes or None)
        for trace_id, span_id, attributes in span.links
    ]
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=span.attributes,
        links=links,
        kind=SpanKind.INTERNAL,
        instrumentation_scope=scope,
        status=_STATUS.get(span.status_code, _STATUS[0]),
        start_time=span.start_ns,
        end_time=span.end_ns,
    )


def warm_up(
    span: SpanData, metrics: model.MetricsData, resource: model.Resource, scope: model.Scope
) -> None:
    """Run the conversions once (the pipeline's warm-up, at configuration)."""
    to_readable_span(span, sdk_resource(resource), sdk_scope(scope))
    sdk_metrics_data(metrics)


class SpanExporterAdapter(Exporter):
    """Feed tracedsync's spans to any OpenTelemetry ``SpanExporter``."""

    wants_spans = True

    def __init__(
        self,
        exporter: SpanExporter,
        resource: model.Resource,
        scope: model.Scope,
        name: str | None = None,
        capture: LogCapture | None = None,
        cause: CauseGetter | None = None,
    ) -> None:
        self.exporter = exporter
        self.resource = sdk_resource(resource)
        self.scope = sdk_scope(scope)
        self.name = name or type(exporter).__name__
        self.destination = _endpoint(exporter)
        self._capture = capture or _no_capture
        self._cause = cause or _no_cause
        self._aborted = False

    def export_spans(self, spans: Sequence[SpanData]) -> None:
        readable = [to_readable_span(s, self.resource, self.scope) for s in spans]
        with self._capture() as lines:
            result = self.exporter.export(readable)
        if result is not SpanExportResult.SUCCESS:
            raise _failure(self.name, result.name, lines, self._cause())

    def flush(self, timeout_s: float) -> None:
        with self._capture():
            self.exporter.force_flush(int(timeout_s * 1000))

    def shutdown(self, timeout_s: float) -> None:
        if not self._aborted:
            with self._capture():
                self.exporter.shutdown()

    def abort(self) -> None:
        # The SDK exporters' shutdown() may be called from another thread
        # while export() runs (BatchSpanProcessor does): it ends their retry
        # backoff at once, and export() returns FAILURE from then on. An
        # exporter the caller passed in stays theirs: it is not shut down.
        if not self.owned:
            return
        self._aborted = True
        with self._capture():
            self.exporter.shutdown()


class MetricExporterAdapter(Exporter):
    """Feed tracedsync's metrics to any OpenTelemetry ``MetricExporter``."""

    wants_metrics = True

    def __init__(
        self,
        exporter: Any,
        name: str | None = None,
        capture: LogCapture | None = None,
        cause: CauseGetter | None = None,
    ) -> None:
        self.exporter = exporter
        self.name = name or type(exporter).__name__
        self.destination = _endpoint(exporter)
        self._capture = capture or _no_capture
        self._cause = cause or _no_cause
        self._aborted = False

    def export_metrics(self, metrics: model.MetricsData) -> None:
        data = sdk_metrics_data(metrics)
        with self._capture() as lines:
            result = self.exporter.export(data, timeout_millis=10_000)
        if result is not MetricExportResult.SUCCESS:
            raise _failure(self.name, result.name, lines, self._cause())

    def flush(self, timeout_s: float) -> None:
        with self._capture():
            self.exporter.force_flush(int(timeout_s * 1000))

    def shutdown(self, timeout_s: float) -> None:
        if not self._aborted:
            with self._capture():
                self.exporter.shutdown(timeout_millis=timeout_s * 1000)

    def abort(self) -> None:
        if not self.owned:
            return
        self._aborted = True
        with self._capture():
            self.exporter.shutdown(timeout_millis=0)
