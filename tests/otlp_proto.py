"""Check OTLP JSON lines against the protobuf schema of ``opentelemetry-proto``."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids_to_base64(node: Any) -> Any:
    # OTLP JSON writes ids as hex; protobuf's JSON mapping expects base64.
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                out[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ""
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def parse_trace_line(line: str) -> ExportTraceServiceRequest:
    """Parse one spans line strictly (unknown fields are errors)."""
    return json_format.ParseDict(_hex_ids_to_base64(json.loads(line)), ExportTraceServiceRequest())


def parse_metrics_line(line: str) -> ExportMetricsServiceRequest:
    """Parse one metrics line strictly (unknown fields are errors)."""
    return json_format.ParseDict(
        _hex_ids_to_base64(json.loads(line)), ExportMetricsServiceRequest()
    )
