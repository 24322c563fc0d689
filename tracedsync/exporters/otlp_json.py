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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tracedsync.exporters.base import SharedAttributes, SpanData, SpanEvent
from tracedsync.exporters.model import Gauge, Histogram, Sum

_V = TypeVar("_V")

SPAN_KIND_INTERNAL = 1

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
#: What ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)``
#: does, without building an encoder per call.
_dumps_log = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


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


# -- the fast path: JSON text built directly ------------------------------------
#
# The pipeline encodes every span it exports; building dicts for the json
# module cost more than everything else it does. Here each span is written
# as text, with the ``{"key":...,"value":...}`` fragments of str, int and bool
# attributes (kind, name, thread, site: a handful of distinct values) cached.
# Every fragment is produced by the encoder ``span_json`` output goes through,
# so the output is what encoding ``span_json`` dicts would give (the tests
# compare both byte for byte); anything unusual takes the ``span_json`` path.

_encode_str = json.encoder.encode_basestring  # what _dumps uses (ensure_ascii=False)
_CACHEABLE = (str, int, bool)
_kv_cache: dict[tuple[Any, type, Any], str] = {}
#: Cache sizes (emptied when full): primitives made per request give every
#: span a new sync.id, so these must stay small (a few hundred KB at most).
_KV_CACHE_LIMIT = 4096
_ATTRS_CACHE_LIMIT = 512
#: id(resource), id(scope) -> (resource, scope, JSON text up to the spans list)
_head_cache: dict[tuple[int, int], tuple[Any, Any, str]] = {}


def _remember(cache: dict[Any, _V], key: Any, value: _V, limit: int) -> _V:
    """Store ``value`` under ``key`` (the cache is emptied when full) and return it."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def _by_identity(
    cache: dict[int, tuple[SharedAttributes, str]],
    attrs: SharedAttributes,
    make: Callable[[dict[str, Any]], str],
) -> str:
    """``make(dict(attrs))``, made once per ``SharedAttributes`` (never changed,
    so found by identity; the cache holds it, so its id is not reused)."""
    hit = cache.get(id(attrs))
    if hit is not None and hit[0] is attrs:
        return hit[1]
    return _remember(cache, id(attrs), (attrs, make(dict(attrs))), _ATTRS_CACHE_LIMIT)[1]


def _kv_json(key: Any, value: Any) -> str:
    t = type(value)
    if t in _CACHEABLE:
        ck = (key, t, value)
        frag = _kv_cache.get(ck)
        if frag is None:
            frag = str(_dumps({"key": str(key), "value": any_value(value)}))
            _remember(_kv_cache, ck, frag, _KV_CACHE_LIMIT)
        return frag
    return str(_dumps({"key": str(key), "value": any_value(value)}))


#: A span's whole attribute list, for the attribute sets of str/int/bool values
#: that repeat (same primitive, thread and call site).
_attrs_cache: dict[tuple[tuple[Any, ...], tuple[type, ...]], str] = {}
_CACHEABLE_TYPES = frozenset(_CACHEABLE)


#: id(SharedAttributes) -> (it, its text): the pipeline's attribute dicts are
#: shared by many spans and never change, so their text is found by identity
#: (holding the dict keeps its id from being reused).
_shared_text: dict[int, tuple[SharedAttributes, str]] = {}


def _attributes_text(attrs: Mapping[str, Any] | None) -> str:
    if not attrs:
        return "[]"
    if type(attrs) is SharedAttributes:
        return _by_identity(_shared_text, attrs, _attributes_text)
    types = tuple(map(type, attrs.values()))
    if not _CACHEABLE_TYPES.issuperset(types):
        return "[" + ",".join([_kv_json(k, v) for k, v in attrs.items()]) + "]"
    key = (tuple(attrs.items()), types)
    text = _attrs_cache.get(key)
    if text is None:
        text = "[" + ",".join([_kv_json(k, v) for k, v in attrs.items()]) + "]"
        _remember(_attrs_cache, key, text, _ATTRS_CACHE_LIMIT)
    return text


def _span_text(span: SpanData) -> str:
    if type(span.name) is not str or type(span.status_code) is not int:
        return str(_dumps(span_json(span)))
    status = f'{{"code":{span.status_code}}}' if span.status_code else "{}"
    text = (
        f'{{"traceId":"{span.trace_id:032x}","spanId":"{span.span_id:016x}",'
        f'"name":{_encode_str(span.name)},"kind":{SPAN_KIND_INTERNAL},'
        f'"startTimeUnixNano":"{span.start_ns!s}","endTimeUnixNano":"{span.end_ns!s}",'
        f'"attributes":{_attributes_text(span.attributes)},"status":{status}'
    )
    if span.parent_span_id:
        text += f',"parentSpanId":"{span.parent_span_id:016x}"'
    if span.links:
        links = ",".join(
            [
                f'{{"traceId":"{trace_id:032x}","spanId":"{span_id:016x}",'
                f'"attributes":{_attributes_text(attrs)}}}'
                for trace_id, span_id, attrs in span.links
            ]
        )
        text += f',"links":[{links}]'
    return text + "}"


def _head(resource: Any, scope: Any) -> str:
    key = (id(resource), id(scope))
    hit = _head_cache.get(key)
    if hit is not None and hit[0] is resource and hit[1] is scope:
        return hit[2]
    marker = "\x00spans\x00"
    whole = str(
        _dumps(
            {
                "resourceSpans": [
                    {
                        "resource": resource_json(resource),
                        "scopeSpans": [{"scope": scope_json(scope), "spans": marker}],
                    }
                ]
            }
        )
    )
    head = whole[: whole.index(_encode_str(marker))]
    if len(_head_cache) > 64:
        _head_cache.clear()
    _head_cache[key] = (resource, scope, head)
    return head


def encode_spans(spans: Sequence[SpanData], resource: Any, scope: Any) -> str:
    """One ``ExportTraceServiceRequest`` as a JSON line (no newline).

    The text one ``json`` call on ``resource_json``/``scope_json``/``span_json``
    dicts would give, several times faster.
    """
    return _head(resource, scope) + "[" + ",".join([_span_text(s) for s in spans]) + "]}]}]}"


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
    examples = getattr(point, "exemplars", None)
    if examples:
        out["exemplars"] = [_exemplar(e) for e in examples]
    return out


def _exemplar(exemplar: Any) -> dict[str, Any]:
    """An ``Exemplar`` in JSON form: ids as hex, as in spans."""
    out: dict[str, Any] = {
        "filteredAttributes": attributes(exemplar.filtered_attributes),
        "timeUnixNano": str(exemplar.time_unix_nano),
    }
    value = exemplar.value
    if isinstance(value, int) and not isinstance(value, bool):
        out["asInt"] = str(value)
    else:
        out["asDouble"] = float(value)
    if exemplar.span_id and exemplar.trace_id:
        out["spanId"] = f"{exemplar.span_id:016x}"
        out["traceId"] = f"{exemplar.trace_id:032x}"
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
    """One ``ExportMetricsServiceRequest`` (from a ``tracedsync.exporters.model.MetricsData``)
    as a JSON line."""
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


#: Keys a log line starts with, in this order; the rest follow in the event's
#: own order (DESIGN §4: timestamp, level, event, trace_id, span_id, attributes).
_LOG_HEAD = ("timestamp", "level", "event", "trace_id", "span_id", "duration_ms")
_LOG_HEAD_PREFIX = {k: _encode_str(k) + ":" for k in _LOG_HEAD}
_STR_ONLY = frozenset((str,))
_INF = (float("inf"), float("-inf"))
#: The text of the rest of an event (its attributes: a handful of distinct
#: primitive / thread / call-site sets), keyed by its items and their types.
_log_rest_cache: dict[tuple[tuple[Any, ...], tuple[type, ...]], str] = {}


def encode_log(event: Mapping[str, Any]) -> str:
    """One structlog event as a JSON line: the ``_LOG_HEAD`` keys first, then
    the rest in order; values that are not JSON become strings.

    The same text as ``_dumps_log`` of the reordered dict; the rest's text is
    cached, as a wait or hold event repeats its primitive's attributes.
    """
    if type(event) is SpanEvent:
        text = _span_event_text(event)
        if text is not None:
            return text
    rest = dict(event)
    parts = []
    for key in _LOG_HEAD:
        value = rest.pop(key, rest)  # the dict itself: absent
        if value is rest:
            continue
        t = type(value)
        if t is str:
            parts.append(_LOG_HEAD_PREFIX[key] + _encode_str(value))
        elif t is float and value == value and value not in _INF:
            parts.append(_LOG_HEAD_PREFIX[key] + float.__repr__(value))
        else:
            parts.append(str(_dumps_log({key: value}))[1:-1])
    if rest:
        types = tuple(map(type, rest.values()))
        if _CACHEABLE_TYPES.issuperset(types) and _STR_ONLY.issuperset(map(type, rest)):
            cache_key = (tuple(rest.items()), types)
            text = _log_rest_cache.get(cache_key)
            if text is None:
                text = str(_dumps_log(rest))[1:-1]
                _remember(_log_rest_cache, cache_key, text, _ATTRS_CACHE_LIMIT)
        else:
            text = str(_dumps_log(rest))[1:-1]
        parts.append(text)
    return "{" + ",".join(parts) + "}"


#: id(SharedAttributes) -> (it, its text as the tail of a log line).
_shared_log_text: dict[int, tuple[SharedAttributes, str]] = {}


def _log_tail(attrs: dict[str, Any]) -> str:
    """``attrs`` as the end of a log line: ``encode_log`` without its braces."""
    return encode_log(attrs)[1:-1]


def _span_event_text(event: SpanEvent) -> str | None:
    """``encode_log`` of a wait or hold event, its head written directly and
    the span's attributes' text found by identity; None for anything unusual
    (the general path then encodes it, to the same text)."""
    attrs = event.span.attributes
    if type(attrs) is not SharedAttributes or not attrs or len(event) != len(attrs) + 6:
        return None
    get = event.get
    ts, level, name = get("timestamp"), get("level"), get("event")
    trace_id, span_id, duration = get("trace_id"), get("span_id"), get("duration_ms")
    if (
        type(ts) is not str
        or type(level) is not str
        or type(name) is not str
        or type(trace_id) is not str
        or type(span_id) is not str
        or type(duration) is not float
        or duration != duration
        or duration in _INF
    ):
        return None
    tail = _by_identity(_shared_log_text, attrs, _log_tail)
    return (
        f'{{"timestamp":{_encode_str(ts)},"level":{_encode_str(level)},'
        f'"event":{_encode_str(name)},"trace_id":{_encode_str(trace_id)},'
        f'"span_id":{_encode_str(span_id)},"duration_ms":{float.__repr__(duration)},{tail}}}'
    )


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
