"""Exporters: where tracedsync's spans, metrics and log events go.

- ``console``: one readable line per event on stderr.
- ``jsonfile``: OTLP JSON Lines files (spans, metrics) and structlog JSON
  lines (logs), one set per process, in the output directory.
- ``otlp``: the official OTLP exporters (gRPC or HTTP/protobuf), configured
  by the standard ``OTEL_EXPORTER_OTLP_*`` variables.
- ``prometheus``: ``/metrics`` on 127.0.0.1 for Prometheus to scrape.

Each exporter has its own delivery lane (``tracedsync.exporters.lanes``).

Exporter objects may be passed to ``configure(exporters=[...])`` too: a
subclass of :class:`Exporter`, or an OpenTelemetry ``SpanExporter`` or
``MetricExporter``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracedsync.exporters.base import Exporter, ExportError, LogEvent, SpanData

__all__ = ["ExportError", "Exporter", "LogEvent", "SpanData", "create_exporters"]


def create_exporters(
    config: Any,
    resource: Any,
    scope: Any,
    on_unavailable: Callable[[str, Exception], None] | None = None,
) -> list[Exporter]:
    """The exporter objects for ``config.exporters`` (names or objects).

    A named exporter that cannot start (output directory not writable, OTLP
    or Prometheus packages missing, no port) is reported to ``on_unavailable`` and left out; without
    that callback the error is raised.
    """
    from tracedsync.exporters.base import ExporterUnavailable
    from tracedsync.outdir import OutputDirError

    out: list[Exporter] = []
    for item in config.exporters:
        try:
            made = _create_one(item, config, resource, scope)
            if isinstance(item, str):
                for exporter in made:
                    exporter.owned = True
            out.extend(made)
        except (OutputDirError, ExporterUnavailable) as exc:
            if on_unavailable is None:
                raise
            on_unavailable(str(item), exc)
    return out


def _create_one(item: Any, config: Any, resource: Any, scope: Any) -> list[Exporter]:
    if item == "console":
        from tracedsync.exporters.console import ConsoleExporter

        return [ConsoleExporter()]
    if item == "jsonfile":
        from tracedsync.exporters.jsonfile import JsonFileExporter

        return [JsonFileExporter.from_config(config, resource, scope)]
    if item == "otlp":
        from tracedsync.exporters.otlp import create_otlp_exporters

        return create_otlp_exporters(config, resource, scope)
    if item == "prometheus":
        from tracedsync.exporters.prometheus import PrometheusExporter

        return [PrometheusExporter.from_config(config)]
    if isinstance(item, Exporter):
        return [item]
    # Anything else may be an SDK exporter: the SDK is imported only now.
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from tracedsync.exporters.sdk import MetricExporterAdapter, SpanExporterAdapter

    if isinstance(item, SpanExporter):
        return [SpanExporterAdapter(item, resource, scope)]
    if isinstance(item, MetricExporter):
        return [MetricExporterAdapter(item)]
    raise TypeError(
        "exporters must be names or Exporter, SpanExporter or MetricExporter "
        f"objects, got {type(item).__name__}"
    )
