"""The fast OTLP JSON encoders give exactly the text of the obvious ones."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

import tracedsync
from tests.otlp_proto import parse_metrics_line, parse_trace_line
from tracedsync.describe import iso_timestamp
from tracedsync.events import SPAN_FIELD as _SPAN_FIELD
from tracedsync.events import _span_fields
from tracedsync.exporters import otlp_json
from tracedsync.exporters.base import SharedAttributes, SpanData
from tracedsync.exporters.exemplars import Exemplars
from tracedsync.exporters.sdk import sdk_metrics_data
from tracedsync.pipeline import build_metrics_data, build_resource, scope


def encode_spans_reference(spans: list[SpanData], resource: Any, scope: Any) -> str:
    """What ``otlp_json.encode_spans`` must write, built the obvious way:
    dicts, then one ``json`` call."""
    request = {
        "resourceSpans": [
            {
                "resource": otlp_json.resource_json(resource),
                "scopeSpans": [
                    {
                        "scope": otlp_json.scope_json(scope),
                        "spans": [otlp_json.span_json(s) for s in spans],
                    }
                ],
            }
        ]
    }
    return json.dumps(request, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


RESOURCE = Resource.create({"service.name": "svc", "process.pid": 42, "x.ratio": 0.5})
SCOPE = InstrumentationScope("tracedsync", "0.1.0")

attribute_values = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8),
    st.lists(st.one_of(st.text(max_size=5), st.integers(0, 9)), max_size=3),
)
attributes = st.dictionaries(st.text(max_size=12), attribute_values, max_size=8)
ids = st.integers(min_value=0, max_value=2**64 - 1)
spans = st.builds(
    SpanData,
    name=st.text(max_size=20),
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=ids,
    parent_span_id=ids,
    start_ns=st.integers(min_value=0, max_value=2**63),
    end_ns=st.integers(min_value=0, max_value=2**63),
    attributes=attributes,
    links=st.lists(st.tuples(ids, ids, attributes), max_size=2),
    status_code=st.sampled_from([0, 1, 2]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(spans, max_size=4))
def test_encode_spans_is_byte_identical_to_the_reference(batch: list[SpanData]) -> None:
    """encode_spans (text built directly, cached fragments) == the dict-and-json reference."""
    fast = otlp_json.encode_spans(batch, RESOURCE, SCOPE)
    assert fast == encode_spans_reference(batch, RESOURCE, SCOPE)
    # and twice in a row (the caches hold)
    assert otlp_json.encode_spans(batch, RESOURCE, SCOPE) == fast


def test_encoded_tracedsync_spans_parse_as_otlp() -> None:
    """A typical batch (the pipeline's attributes, a link) still parses as OTLP protobuf JSON."""
    attrs: dict[str, Any] = {
        "sync.kind": "lock",
        "sync.name": "pool_lock (app/db.py:41)",
        "sync.id": 7,
        "sync.outcome": "acquired",
        "thread.id": 140000000000001,
        "thread.name": "worker-1",
        "code.function.name": "get",
        "code.file.path": "/srv/app/db.py",
        "code.line.number": 57,
    }
    batch = [
        SpanData("lock.wait", 2**100 + 5, 11, 0, 1, 2, dict(attrs), [(2**90, 12, {})]),
        SpanData("lock.hold", 2**100 + 5, 12, 99, 1, 3, dict(attrs), status_code=2),
    ]
    line = otlp_json.encode_spans(batch, RESOURCE, SCOPE)
    request = parse_trace_line(line)
    got = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in got] == ["lock.wait", "lock.hold"]
    assert (
        json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["links"][0]["spanId"]
        == f"{12:016x}"
    )


log_values = st.one_of(
    st.text(),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.builds(object),
)
log_keys = st.one_of(
    st.sampled_from(
        ["timestamp", "level", "event", "trace_id", "span_id", "sync.name", "duration_ms"]
    ),
    st.text(max_size=8),
)


def _log_as_before(event: dict[str, Any]) -> str:
    head = ("timestamp", "level", "event", "trace_id", "span_id", "duration_ms")
    ordered = {k: event[k] for k in head if k in event}
    ordered.update((k, v) for k, v in event.items() if k not in ordered)
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":"), default=str)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(log_keys, log_values, max_size=10))
def test_encode_log_is_byte_identical_to_before(event: dict[str, Any]) -> None:
    """encode_log (one shared encoder, dict.update ordering) == the original formulation."""
    assert otlp_json.encode_log(event) == _log_as_before(event)


@settings(max_examples=200, deadline=None)
@given(st.lists(spans, min_size=1, max_size=3))
def test_shared_attributes_encode_like_a_plain_dict(batch: list[SpanData]) -> None:
    """A span whose attributes are the pipeline's SharedAttributes (text cached
    by identity) encodes to the same text, the first time and the next."""
    for span in batch:
        span.attributes = SharedAttributes(span.attributes)
    reference = encode_spans_reference(batch, RESOURCE, SCOPE)
    assert otlp_json.encode_spans(batch, RESOURCE, SCOPE) == reference
    assert otlp_json.encode_spans(batch, RESOURCE, SCOPE) == reference


def _span_event(span: SpanData, **extra: Any) -> Any:
    """The long_hold event the pipeline's processors make for ``span``."""
    fields = {"event": "long_hold", "level": "info", _SPAN_FIELD: span, **extra}
    return _span_fields(None, "info", fields)


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        SpanData,
        name=st.just("lock.hold"),
        trace_id=st.integers(min_value=1, max_value=2**128 - 1),
        span_id=ids,
        parent_span_id=ids,
        start_ns=st.integers(min_value=0, max_value=2**62),
        end_ns=st.integers(min_value=2**62, max_value=2**63),
        attributes=st.dictionaries(log_keys, log_values, min_size=1, max_size=8),
    ),
    st.sampled_from(["as made", "extra field", "key changed", "odd duration"]),
)
def test_span_events_encode_like_any_event(span: SpanData, change: str) -> None:
    """A wait or hold event (a SpanEvent: head written directly, attribute text
    found by identity) encodes like the same fields in a plain dict, also
    after an exporter changed it."""
    span.attributes = SharedAttributes(span.attributes)
    event = _span_event(span, request="r1") if change == "extra field" else _span_event(span)
    if change == "key changed":
        del event["level"]
        event["severity"] = "info"
    if change == "odd duration":
        event["duration_ms"] = float("inf")
    for _ in range(2):
        assert otlp_json.encode_log(event) == _log_as_before(dict(event))


def test_encode_log_cache_tells_equal_values_of_other_types_apart() -> None:
    """1, True and 1.0 are equal dict keys; the cached attribute text must not mix them."""
    for value in (1, True, 1.0, 1, True):
        event = {"event": "long_hold", "sync.id": value}
        assert otlp_json.encode_log(event) == _log_as_before(event)
    for key in (1, 1.0, True):
        event = {"event": "long_hold", key: "x"}
        assert otlp_json.encode_log(event) == _log_as_before(event)


def test_encode_log_keeps_head_keys_first() -> None:
    """timestamp, level, event, ids and duration lead; the rest keep their
    order; odd values become strings."""
    event = {
        "a": 1,
        "span_id": "00f0",
        "duration_ms": 1.5,
        "event": "long_hold",
        "b": object,
        "level": "info",
        "trace_id": "0ff0",
        "timestamp": "t",
    }
    line = otlp_json.encode_log(event)
    assert list(json.loads(line)) == [
        "timestamp",
        "level",
        "event",
        "trace_id",
        "span_id",
        "duration_ms",
        "a",
        "b",
    ]
    assert json.loads(line)["b"] == str(object)


def _reference_timestamp(epoch_ns: int) -> str:
    whole_us, rest_ns = divmod(epoch_ns, 1000)
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(
        microseconds=whole_us + (rest_ns >= 500)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def test_iso_timestamp_rounds_to_the_nearest_microsecond() -> None:
    """The cached formatter gives datetime's text of the exact nanoseconds,
    rounded half up to microseconds, second edges included (no float: at
    today's epoch a float second is only good to ~0.2 us)."""
    rng = random.Random(7)
    base = 1_700_000_000_000_000_000
    values = [rng.randrange(0, 4 * 10**18) for _ in range(20_000)]
    values += [base + 999_999_000 + d for d in range(-1500, 1500)]
    values += [base + k * 1000 + d for k in range(0, 200_000, 97) for d in (-1, 0, 499, 500, 501)]
    for value in values:
        assert iso_timestamp(value) == _reference_timestamp(value), value
    assert iso_timestamp(1_928_478_689_004_316_506) == "2031-02-10T08:31:29.004317Z"


def test_cached_fragments_tell_equal_values_of_other_types_apart() -> None:
    """1, True and "1" are different attribute values even though 1 == True."""
    lines = [
        otlp_json.encode_spans([SpanData("s", 1, 2, 0, 1, 2, {"a": value})], RESOURCE, SCOPE)
        for value in (1, True, "1", 1)
    ]
    values = [json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0] for line in lines]
    assert [v["attributes"][0]["value"] for v in values] == [
        {"intValue": "1"},
        {"boolValue": True},
        {"stringValue": "1"},
        {"intValue": "1"},
    ]


def test_caches_stay_small_when_every_span_is_new() -> None:
    """Per-request primitives give every span a new sync.id: the caches stay bounded."""
    for i in range(20_000):
        span = SpanData("lock.hold", 1, 2, 0, 1, 2, {"sync.id": i, "sync.name": f"n{i}"})
        otlp_json.encode_spans([span], RESOURCE, SCOPE)
    assert len(otlp_json._kv_cache) <= otlp_json._KV_CACHE_LIMIT
    assert len(otlp_json._attrs_cache) <= otlp_json._ATTRS_CACHE_LIMIT
    for i in range(2_000):
        shared = SharedAttributes({"sync.id": i})
        span = SpanData("lock.hold", 1, 2, 0, 1, 2, shared)
        otlp_json.encode_spans([span], RESOURCE, SCOPE)
        otlp_json.encode_log(_span_event(span))
    assert len(otlp_json._shared_text) <= otlp_json._ATTRS_CACHE_LIMIT
    assert len(otlp_json._shared_log_text) <= otlp_json._ATTRS_CACHE_LIMIT


def test_encoded_metrics_are_what_the_official_encoder_makes_of_the_sdk_data() -> None:
    """The pipeline's metric data (exemplars included) written by the jsonfile
    encoder, and the same data converted to the SDK's classes
    (``exporters.sdk.sdk_metrics_data``, what the otlp exporter sends) encoded
    by OpenTelemetry's own OTLP encoder: the same message, but for the SDK's
    ``telemetry.sdk.*`` resource attributes."""
    lock = tracedsync.Lock()
    with lock:
        pass
    exemplars = Exemplars()
    exemplars.offer(
        SpanData(
            "lock.wait",
            0xABC,
            0xDEF,
            0,
            1_000,
            2_001_000,
            {"sync.kind": "lock", "sync.name": lock.name, "thread.name": "waiter"},
        )
    )
    data = build_metrics_data(build_resource("r1"), scope("0.1.0"), 1, exemplars)
    ours = parse_metrics_line(otlp_json.encode_metrics(data))
    official = encode_metrics(sdk_metrics_data(data))
    assert len(ours.resource_metrics) == len(official.resource_metrics) == 1
    assert ours.resource_metrics[0].scope_metrics == official.resource_metrics[0].scope_metrics
    exemplar_points = [
        p
        for m in ours.resource_metrics[0].scope_metrics[0].metrics
        for p in m.histogram.data_points
        if p.exemplars
    ]
    assert exemplar_points and exemplar_points[0].exemplars[0].span_id == (0xDEF).to_bytes(8, "big")
    sdk_attrs = {kv.key: kv.value for kv in official.resource_metrics[0].resource.attributes}
    our_attrs = {kv.key: kv.value for kv in ours.resource_metrics[0].resource.attributes}
    assert {k: v for k, v in sdk_attrs.items() if k in our_attrs} == our_attrs
    assert "telemetry.sdk.language" in sdk_attrs
