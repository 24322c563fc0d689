"""OTLP JSON encoding, straight from tracedsync's objects (no protobuf).

Follows the OpenTelemetry protocol's JSON mapping as the file exporter
specification requires: lowerCamelCase field names, trace and span ids as
hex strings (in links too), enum values as integers, 64-bit integers as
decimal strings, ``bytesValue`` as base64. One call encodes one export
request (``ExportTraceServiceRequest`` / ``ExportMetricsServiceRequest``).
The shape is checked in the tests by parsing each line back into the
``opentelemetry.proto`` messages.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum

from tracedsync.exporters.base import SpanData

SPAN_KIND_INTERNAL = 1
AGGREGATION_TEMPORALITY_CUMULATIVE = 2
AGGREGATION_TEMPORALITY_DELTA = 1

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def any_value(value: Any) -> dict[str, Any]:
    """An ``AnyValue`` in its JSON form."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"stringValue": str(value)}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": attributes(value)}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def attributes(attrs: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A list of ``KeyValue`` in JSON form."""
    if not attrs:
        return []
    return [{"key": str(k), "value": any_value(v)} for k, v in attrs.items()]


def resource_json(resource: Any) -> dict[str, Any]:
    return {"attributes": attributes(getattr(resource, "attributes", None))}


def scope_json(scope: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": scope.name}
    if getattr(scope, "version", None):
        out["version"] = scope.version
    return out


def span_json(span: SpanData) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": f"{span.trace_id:032x}",
        "spanId": f"{span.span_id:016x}",
        "name": span.name,
        "kind": SPAN_KIND_INTERNAL,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(span.end_ns),
        "attributes": attributes(span.attributes),
        "status": {"code": span.status_code} if span.status_code else {},
    }
    if span.parent_span_id:
        out["parentSpanId"] = f"{span.parent_span_id:016x}"
    if span.links:
        out["links"] = [
            {
                "traceId": f"{trace_id:032x}",
                "spanId": f"{span_id:016x}",
                "attributes": attributes(attrs),
            }
            for trace_id, span_id, attrs in span.links
        ]
    return out


def encode_spans(spans: Sequence[SpanData], resource: Any, scope: Any) -> str:
    """One ``ExportTraceServiceRequest`` as a JSON line (no newline)."""
    return str(
        _dumps(
            {
                "resourceSpans": [
                    {
                        "resource": resource_json(resource),
                        "scopeSpans": [
                            {
                                "scope": scope_json(scope),
                                "spans": [span_json(s) for s in spans],
                            }
                        ],
                    }
                ]
            }
        )
    )


def _number_point(point: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": attributes(point.attributes),
        "startTimeUnixNano": str(point.start_time_unix_nano),
        "timeUnixNano": str(point.time_unix_nano),
    }
    if isinstance(point.value, int) and not isinstance(point.value, bool):
        out["asInt"] = str(point.value)
    else:
        out["asDouble"] = float(point.value)
    return out


def _histogram_point(point: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": attributes(point.attributes),
        "startTimeUnixNano": str(point.start_time_unix_nano),
        "timeUnixNano": str(point.time_unix_nano),
        "count": str(point.count),
        "sum": float(point.sum),
        "bucketCounts": [str(c) for c in point.bucket_counts],
        "explicitBounds": [float(b) for b in point.explicit_bounds],
    }
    if point.min is not None:
        out["min"] = float(point.min)
    if point.max is not None:
        out["max"] = float(point.max)
    return out


def _metric_json(metric: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": metric.name}
    if metric.description:
        out["description"] = metric.description
    if metric.unit:
        out["unit"] = metric.unit
    data = metric.data
    if isinstance(data, Sum):
        out["sum"] = {
            "dataPoints": [_number_point(p) for p in data.data_points],
            "aggregationTemporality": int(data.aggregation_temporality),
            "isMonotonic": bool(data.is_monotonic),
        }
    elif isinstance(data, Histogram):
        out["histogram"] = {
            "dataPoints": [_histogram_point(p) for p in data.data_points],
            "aggregationTemporality": int(data.aggregation_temporality),
        }
    elif isinstance(data, Gauge):
        out["gauge"] = {"dataPoints": [_number_point(p) for p in data.data_points]}
    return out


def encode_metrics(metrics_data: Any) -> str:
    """One ``ExportMetricsServiceRequest`` (from an SDK ``MetricsData``) as a JSON line."""
    return str(
        _dumps(
            {
                "resourceMetrics": [
                    {
                        "resource": resource_json(rm.resource),
                        "scopeMetrics": [
                            {
                                "scope": scope_json(sm.scope),
                                "metrics": [_metric_json(m) for m in sm.metrics],
                            }
                            for sm in rm.scope_metrics
                        ],
                    }
                    for rm in metrics_data.resource_metrics
                ]
            }
        )
    )


_LOG_HEAD = ("timestamp", "level", "event")


def encode_log(event: Mapping[str, Any]) -> str:
    """One structlog event as a JSON line: ``timestamp``, ``level`` and ``event``
    first, then the rest; values that are not JSON become strings."""
    ordered = {k: event[k] for k in _LOG_HEAD if k in event}
    ordered.update((k, v) for k, v in event.items() if k not in ordered)
    return str(json.dumps(ordered, ensure_ascii=False, separators=(",", ":"), default=str))


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
