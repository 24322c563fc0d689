"""The ``otlp`` exporter: the official OTLP exporters over gRPC or HTTP.

Needs the ``otlp`` extra (``pip install 'tracedsync[otlp]'``). The protocol
comes from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``,
else ``http/protobuf`` (the specification's default): ``grpc`` or
``http/protobuf``. Endpoint, headers, timeout, compression and certificates
come from the standard ``OTEL_EXPORTER_OTLP_*`` variables, read by the
exporters themselves. The service name is the resource's
(``OTEL_SERVICE_NAME``).

The official exporters log every failed batch (and every retry) through
``logging``. When tracedsync's pipeline makes the call, those lines are kept
out of the application's logs and become the detail of tracedsync's own
``exporter_failed`` event, reported once per exporter and kind of error. The
application's own use of the same exporters logs as usual.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tracedsync.exporters.base import Exporter, ExporterUnavailable
from tracedsync.exporters.sdk import MetricExporterAdapter, SpanExporterAdapter

PROTOCOLS = ("grpc", "http/protobuf")
INSTALL_HINT = "the otlp exporter needs its extra: pip install 'tracedsync[otlp]'"


#: Where the official OTLP exporters (and their HTTP client) log.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.common.http",
)


class _CapturedLogs(logging.Filter):
    """A filter on the exporters' loggers: while a thread is inside
    :meth:`capture`, its records are collected instead of logged."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        lines: list[str] | None = getattr(self._local, "lines", None)
        if lines is None:
            return True
        try:
            lines.append(record.getMessage().replace("\n", " "))
        except Exception:
            pass
        return False

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        lines: list[str] = []
        outer = getattr(self._local, "lines", None)
        self._local.lines = lines
        try:
            yield lines
        finally:
            self._local.lines = outer


_captured = _CapturedLogs()


def _quiet_exporter_loggers() -> None:
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if _captured not in logger.filters:
            # First: the SDK's DuplicateFilter on these loggers drops a record
            # whose format string repeats (traces then metrics) before a later
            # filter would see it.
            logger.filters.insert(0, _captured)


class OtlpUnavailable(ExporterUnavailable):
    """The OTLP exporter packages are not installed, or the protocol is unknown."""


def protocol(signal: str, environ: Any = None) -> str:
    """The protocol for ``signal`` (``traces`` or ``metrics``) from the environment."""
    env = os.environ if environ is None else environ
    value = (
        env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in PROTOCOLS:
        raise OtlpUnavailable(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={value!r} is not supported "
            f"(use one of {', '.join(PROTOCOLS)})"
        )
    return value


def _span_exporter(proto: str) -> Any:
    try:
        if proto == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise OtlpUnavailable(f"{INSTALL_HINT} ({exc})") from None
    return OTLPSpanExporter()


def _metric_exporter(proto: str) -> Any:
    try:
        if proto == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
    except ImportError as exc:
        raise OtlpUnavailable(f"{INSTALL_HINT} ({exc})") from None
    return OTLPMetricExporter()


def _http_cause(exporter: Any) -> Callable[[], str | None]:
    """For an OTLP/HTTP exporter: a getter of the cause of the last failed
    export made on the calling thread (HTTP status and reason, or the
    transport's exception). The exporter logs only "due to timeout, max
    retries or shutdown" when its one attempt got a 503 or no answer; the
    outcome its HTTP client returned says which. Reads a private attribute
    of the pinned ``opentelemetry-exporter-otlp-proto-http``: where it is
    missing the getter returns None and the log lines stand alone."""
    local = threading.local()
    client = getattr(exporter, "_client", None)
    export = getattr(client, "export", None)
    if client is None or not callable(export):
        return lambda: None

    def watched(data: bytes) -> Any:
        outcome = export(data)
        local.outcome = outcome
        return outcome

    try:
        client.export = watched
    except Exception:
        return lambda: None

    def cause() -> str | None:
        outcome = getattr(local, "outcome", None)
        local.outcome = None
        if outcome is None or getattr(outcome, "success", True):
            return None
        status, reason = getattr(outcome, "status_code", None), getattr(outcome, "reason", None)
        if status:
            return f"HTTP {status} {reason or ''}".strip()
        error = getattr(outcome, "error", None)
        return f"{type(error).__name__}: {error}" if error is not None else None

    return cause


def create_otlp_exporters(config: Any, resource: Any, scope: Any) -> list[Exporter]:
    """A span and a metric exporter for the configured protocols.

    Each has its own name (``otlp-traces-grpc``, ``otlp-metrics-http/protobuf``):
    they may go to different endpoints and fail for different reasons, and
    ``exporter_failed`` is reported once per exporter and kind of error.
    """
    traces = protocol("traces")
    spans = _span_exporter(traces)
    metrics = create_otlp_metric_exporter(protocol("metrics"))
    _quiet_exporter_loggers()
    return [
        SpanExporterAdapter(
            spans,
            resource,
            scope,
            name=f"otlp-traces-{traces}",
            capture=_captured.capture,
            cause=_http_cause(spans) if traces != "grpc" else None,
        ),
        metrics,
    ]


def create_otlp_metric_exporter(proto: str) -> Exporter:
    """The OTLP metric exporter for ``proto`` (``grpc`` or ``http/protobuf``),
    named ``otlp-metrics-<proto>``, configured by the ``OTEL_EXPORTER_OTLP_*``
    variables."""
    if proto not in PROTOCOLS:
        raise OtlpUnavailable(f"OTLP protocol {proto!r} is not supported")
    metric = _metric_exporter(proto)
    _quiet_exporter_loggers()
    return MetricExporterAdapter(
        metric,
        name=f"otlp-metrics-{proto}",
        capture=_captured.capture,
        cause=_http_cause(metric) if proto != "grpc" else None,
    )
