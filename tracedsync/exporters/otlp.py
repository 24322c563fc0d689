"""The ``otlp`` exporter: the official OTLP exporters over gRPC or HTTP.

Needs the ``otlp`` extra (``pip install 'tracedsync[otlp]'``). The protocol
comes from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` /
``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``,
else ``http/protobuf`` (the specification's default): ``grpc`` or
``http/protobuf``. Endpoint, headers, timeout, compression and certificates
come from the standard ``OTEL_EXPORTER_OTLP_*`` variables, read by the
exporters themselves. The service name is the resource's
(``OTEL_SERVICE_NAME``).
"""

from __future__ import annotations

import os
from typing import Any

from tracedsync.exporters.base import Exporter
from tracedsync.exporters.sdk import MetricExporterAdapter, SpanExporterAdapter

PROTOCOLS = ("grpc", "http/protobuf")
INSTALL_HINT = "the otlp exporter needs its extra: pip install 'tracedsync[otlp]'"


class OtlpUnavailable(RuntimeError):
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


def create_otlp_exporters(config: Any, resource: Any, scope: Any) -> list[Exporter]:
    """A span and a metric exporter for the configured protocols.

    Each has its own name (``otlp-traces-grpc``, ``otlp-metrics-http/protobuf``):
    they may go to different endpoints and fail for different reasons, and
    ``exporter_failed`` is reported once per exporter and kind of error.
    """
    traces = protocol("traces")
    metrics = protocol("metrics")
    return [
        SpanExporterAdapter(_span_exporter(traces), resource, scope, name=f"otlp-traces-{traces}"),
        MetricExporterAdapter(_metric_exporter(metrics), name=f"otlp-metrics-{metrics}"),
    ]
