"""Exporters: where tracedsync's spans, metrics and log events go.

- ``console``: one readable line per event on stderr.
- ``jsonfile``: OTLP JSON Lines files (spans, metrics) and structlog JSON
  lines (logs), one set per process, in the output directory.
- ``otlp``: the official OTLP exporters (gRPC or HTTP/protobuf), configured
  by the standard ``OTEL_EXPORTER_OTLP_*`` variables.

Exporter objects may be passed to ``configure(exporters=[...])`` too: a
subclass of :class:`Exporter`, or an OpenTelemetry ``SpanExporter`` or
``MetricExporter``.
"""

from __future__ import annotations

from typing import Any

from tracedsync.exporters.base import Exporter, ExportError, LogEvent, SpanData

__all__ = ["ExportError", "Exporter", "LogEvent", "SpanData", "create_exporters"]


def create_exporters(config: Any, resource: Any, scope: Any) -> list[Exporter]:
    """The exporter objects for ``config.exporters`` (names or objects)."""
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from tracedsync.exporters.sdk import MetricExporterAdapter, SpanExporterAdapter

    out: list[Exporter] = []
    for item in config.exporters:
        if item == "console":
            from tracedsync.exporters.console import ConsoleExporter

            out.append(ConsoleExporter())
        elif item == "jsonfile":
            from tracedsync.exporters.jsonfile import JsonFileExporter

            out.append(JsonFileExporter.from_config(config, resource, scope))
        elif item == "otlp":
            from tracedsync.exporters.otlp import create_otlp_exporters

            out.extend(create_otlp_exporters(config, resource, scope))
        elif isinstance(item, Exporter):
            out.append(item)
        elif isinstance(item, SpanExporter):
            out.append(SpanExporterAdapter(item, resource, scope))
        elif isinstance(item, MetricExporter):
            out.append(MetricExporterAdapter(item))
        else:
            raise TypeError(
                f"exporters must be names or Exporter, SpanExporter or MetricExporter "
                f"objects, got {type(item).__name__}"
            )
    return out
