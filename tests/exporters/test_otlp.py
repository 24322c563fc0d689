"""The otlp exporter against real OTLP receivers (gRPC and HTTP/protobuf).

The receivers (``tests/receivers.py``) run in this process on 127.0.0.1; the
official OTLP exporters reach them over real sockets, configured only by the
standard ``OTEL_EXPORTER_OTLP_*`` variables.
"""

from __future__ import annotations

import glob
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tests.helpers import HOLDER_SITES, Contention
from tests.otlp_proto import parse_metrics_line, parse_trace_line
from tests.receivers import Receiver, iter_spans, point_otlp_at
from tests.telemetry_counts import counted
from tracedsync import lifecycle
from tracedsync.testing import LogCollector, run_threads

# --------------------------------------------------------------------------
# The workload: contention inside app spans, a timed-out wait, an idle wait
# --------------------------------------------------------------------------


@dataclass
class Run:
    """What one run of the workload created, to check the exported spans against."""

    app_spans: InMemorySpanExporter
    primitives: dict[str, Any] = field(default_factory=dict)
    thread_ids: dict[str, int] = field(default_factory=dict)


def _app_tracer() -> tuple[Any, InMemorySpanExporter]:
    """The application's own tracing: its provider, its exporter (never global)."""
    app_spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_spans))
    return provider.get_tracer("app"), app_spans


def contended_workload() -> Run:
    """Five tracedsync spans, always the same ones (no timing guesses):

    - ``pool_lock``: a holder (app span ``holder-request``) keeps it until the
      waiter (app span ``waiter-request``) is blocked: a ``lock.hold`` and a
      ``lock.wait`` (``acquired``) linking to it;
    - ``tight_lock``: a holder outside any app span keeps it until an
      impatient thread (app span ``impatient``) gave up after 50 ms: a root
      ``lock.hold`` and a ``lock.wait`` (``timeout``) linking to it;
    - ``jobs``: an Event nobody sets, waited on for 50 ms (app span
      ``poll-jobs``): an ``event.wait`` (``timeout``).
    """
    tracer, app_spans = _app_tracer()
    run = Run(app_spans)
    pool_lock = tracedsync.Lock()
    tight_lock = tracedsync.Lock()
    jobs = tracedsync.Event()
    run.primitives = {"pool_lock": pool_lock, "tight_lock": tight_lock, "jobs": jobs}
    contention = Contention(pool_lock)
    tight_held = threading.Event()
    gave_up = threading.Event()

    def in_span(name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def target() -> None:
            run.thread_ids[threading.current_thread().name] = threading.get_ident()
            if name:
                with tracer.start_as_current_span(name):
                    fn()
            else:
                fn()

        return target

    def tight_holder() -> None:
        with tight_lock:
            tight_held.set()
            assert gave_up.wait(30)

    def impatient() -> None:
        assert tight_held.wait(30)
        try:
            assert not tight_lock.acquire(timeout=0.05)
        finally:
            gave_up.set()

    def poll_jobs() -> None:
        assert not jobs.wait(0.05)

    run_threads(
        in_span("holder-request", contention.holder),
        in_span("waiter-request", contention.waiter),
        in_span("", tight_holder),
        in_span("impatient", impatient),
        in_span("poll-jobs", poll_jobs),
        names=["holder", "waiter", "tight-holder", "impatient", "poller"],
    )
    return run


# --------------------------------------------------------------------------
# Comparing what arrived: ids differ from run to run, structure must not
# --------------------------------------------------------------------------

#: Attributes whose values differ between runs; checked per run instead.
#: Attributes that differ from run to run: ids, timings, and the stack (whose
#: outer frames are the test's own lines, different for each run).
_PER_RUN = {
    "thread.id",
    "sync.id",
    "sync.instance",
    "sync.holder.thread.id",
    "sync.wait.handoff",
    "sync.stack",
}


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, which) if which else None


def _attrs(span: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in span.attributes}


def _ids(trace_id: bytes, span_id: bytes) -> tuple[int, int]:
    return int.from_bytes(trace_id, "big"), int.from_bytes(span_id, "big")


def _label(span: Any) -> str:
    return f"{span.name} {_short(_attrs(span)['sync.name'])}"


def canonical_spans(requests: list[ExportTraceServiceRequest], run: Run) -> Counter[Any]:
    """Spans as (name, attributes, parent, links), ids replaced by what they point to.

    A parent is ``app:<name>`` (a span of the application) or the label of a
    tracedsync span; a link is the label of the span it resolves to. Anything
    that does not resolve shows as ``unresolved``. Per-run values (ids) are
    checked here, against the run, and left out of the result.
    """
    spans = [span for _, _, span in iter_spans(requests)]
    ours = {_ids(s.trace_id, s.span_id): s for s in spans}
    app = {(s.context.trace_id, s.context.span_id): s for s in run.app_spans.get_finished_spans()}
    out: Counter[Any] = Counter()
    for span in spans:
        attrs = _attrs(span)
        assert attrs["sync.id"] == run.primitives[_short(attrs["sync.name"])].id
        assert attrs["thread.id"] == run.thread_ids[attrs["thread.name"]]
        if "sync.holder.thread.id" in attrs:
            holder = attrs["sync.holder.thread.name"]
            assert attrs["sync.holder.thread.id"] == run.thread_ids[holder]
        if attrs.get("sync.holder.site") in HOLDER_SITES:
            # The holder polls in wait_until: which of its lines it is on varies.
            attrs["sync.holder.site"] = "tests/helpers.py:wait_until"
        parent = ""
        if span.parent_span_id:
            key = _ids(span.trace_id, span.parent_span_id)
            if key in app:
                parent = f"app:{app[key].name}"
            elif key in ours:
                parent = _label(ours[key])
            else:
                parent = "unresolved"
        links = []
        for link in span.links:
            target = ours.get(_ids(link.trace_id, link.span_id))
            links.append(_label(target) if target is not None else "unresolved")
        kept = tuple(sorted((k, v) for k, v in attrs.items() if k not in _PER_RUN))
        out[(span.name, kept, parent, tuple(links))] += 1
    return out


def _short(name: str) -> str:
    """``pool_lock (tests/exporters/test_otlp.py:71)`` -> ``pool_lock``."""
    return name.split(" ", 1)[0]


def summary(canonical: Counter[Any]) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """(span, primitive, outcome, parent, links) of each span, sorted."""
    out = []
    for (name, attrs, parent, links), count in canonical.items():
        a = dict(attrs)
        for _ in range(count):
            out.append((name, _short(a["sync.name"]), a.get("sync.outcome", ""), parent, links))
    return sorted(out)


EXPECTED = sorted(
    [
        ("lock.hold", "pool_lock", "", "app:holder-request", ()),
        ("lock.wait", "pool_lock", "acquired", "app:waiter-request", ("lock.hold pool_lock",)),
        ("lock.hold", "tight_lock", "", "", ()),
        ("lock.wait", "tight_lock", "timeout", "app:impatient", ("lock.hold tight_lock",)),
        ("event.wait", "jobs", "timeout", "app:poll-jobs", ()),
    ]
)


def _links_share_trace_of_target(requests: list[ExportTraceServiceRequest]) -> None:
    """Every link names the trace id of the hold span it points to."""
    spans = [span for _, _, span in iter_spans(requests)]
    by_span_id = {s.span_id: s for s in spans}
    for span in spans:
        for link in span.links:
            assert link.trace_id == by_span_id[link.span_id].trace_id


def _resource_attrs(requests: list[ExportTraceServiceRequest]) -> list[dict[str, Any]]:
    return [_attrs(resource) for resource, _, _ in iter_spans(requests)]


def _scopes(requests: list[ExportTraceServiceRequest]) -> set[str]:
    return {scope.name for _, scope, _ in iter_spans(requests)}


def _file_requests(directory: Path, kind: str = "spans") -> list[ExportTraceServiceRequest]:
    out = []
    for path in sorted(glob.glob(str(directory / f"{kind}-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            out.extend(parse_trace_line(line) for line in f.read().splitlines())
    return out


# --------------------------------------------------------------------------
# Done means: the same spans in the file and at each receiver
# --------------------------------------------------------------------------


def test_same_spans_in_file_and_at_grpc_and_http_receivers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    grpc_receiver: Receiver,
    http_receiver: Receiver,
) -> None:
    """One contended workload run three times (jsonfile, otlp/grpc, otlp/http): the same
    spans, attributes, parents and links arrive everywhere, in tracedsync's scope, with
    the service name in the resource."""
    arrived: dict[str, tuple[list[ExportTraceServiceRequest], Run]] = {}

    monkeypatch.setenv("OTEL_SERVICE_NAME", "tracedsync-tests")
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(tmp_path))
    run = contended_workload()
    assert tracedsync.flush(10)
    tracedsync.shutdown()
    arrived["jsonfile"] = (_file_requests(tmp_path), run)

    for receiver in (grpc_receiver, http_receiver):
        point_otlp_at(monkeypatch, receiver)
        tracedsync.configure(exporters=["otlp"])
        run = contended_workload()
        assert tracedsync.flush(10)
        tracedsync.shutdown()
        arrived[receiver.protocol] = (list(receiver.received.traces), run)

    assert list(arrived) == ["jsonfile", "grpc", "http/protobuf"]
    canonical = {}
    for where, (requests, run) in arrived.items():
        canonical[where] = canonical_spans(requests, run)
        assert summary(canonical[where]) == EXPECTED, where
        assert _scopes(requests) == {"tracedsync"}, where
        _links_share_trace_of_target(requests)
        for attrs in _resource_attrs(requests):
            assert attrs["service.name"] == "tracedsync-tests", where
            assert attrs["process.pid"] == os.getpid()
    assert canonical["grpc"] == canonical["jsonfile"]
    assert canonical["http/protobuf"] == canonical["jsonfile"]


def test_app_spans_never_reach_tracedsync_receivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """With tracedsync's own provider, the app's spans stay in the app's exporter and
    never reach tracedsync's receiver or files, yet the wait span is the child of the
    app span current in the waiting thread (same trace id, parent span id)."""
    point_otlp_at(monkeypatch, receiver)
    tracedsync.configure(exporters=["otlp", "jsonfile"], output_dir=str(tmp_path))
    tracer, app_spans = _app_tracer()
    lock = tracedsync.Lock()

    def in_request(fn: Callable[[], None]) -> None:
        with tracer.start_as_current_span("request"):
            fn()

    Contention(lock).run(in_request)
    assert tracedsync.flush(10)
    (request,) = app_spans.get_finished_spans()
    for where, requests in (
        ("receiver", receiver.received.traces),
        ("file", _file_requests(tmp_path)),
    ):
        spans = [span for _, _, span in iter_spans(requests)]
        assert sorted(s.name for s in spans) == ["lock.hold", "lock.wait"], where
        assert _scopes(requests) == {"tracedsync"}, where
        (wait,) = [s for s in spans if s.name == "lock.wait"]
        assert _ids(wait.trace_id, wait.parent_span_id) == (
            request.context.trace_id,
            request.context.span_id,
        ), where
    # And nothing of tracedsync's went the other way.
    assert [s.name for s in app_spans.get_finished_spans()] == ["request"]


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------


def _metric_points(request: Any) -> dict[str, list[Any]]:
    """metric name -> data points of tracedsync's scope in one metrics request."""
    out: dict[str, list[Any]] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "tracedsync"
            for metric in sm.metrics:
                data = getattr(metric, metric.WhichOneof("data"))
                out.setdefault(metric.name, []).extend(data.data_points)
    return out


def _stats_by_key() -> dict[tuple[str, str], dict[str, Any]]:
    """tracedsync.stats() summed by (kind, name), as metrics report them."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for s in tracedsync.stats():
        entry = out.setdefault(
            (s.kind, s.name),
            {
                "acquisitions": 0,
                "contentions": 0,
                "timeouts": 0,
                "wait_total": 0.0,
                "hold_total": 0.0,
                "wait_histogram": [0] * len(s.wait_histogram),
                "hold_histogram": [0] * len(s.hold_histogram),
            },
        )
        for key in ("acquisitions", "contentions", "timeouts", "wait_total", "hold_total"):
            entry[key] += getattr(s, key)
        for key in ("wait_histogram", "hold_histogram"):
            entry[key] = [a + b for a, b in zip(entry[key], getattr(s, key), strict=True)]
    return out


def test_metrics_arrive_and_totals_equal_stats(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """Sums and histograms arrive with sync.kind/sync.name, cumulative, and every point
    equals tracedsync.stats() for its primitive."""
    point_otlp_at(monkeypatch, receiver)
    tracedsync.configure(exporters=["otlp"])
    run = contended_workload()
    counter_lock = tracedsync.Lock()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(500):
            with counter_lock:
                pass

    run_threads(*[work] * 4)
    assert tracedsync.flush(10)
    assert receiver.received.metrics
    request = receiver.received.metrics[-1]
    (resource_metrics,) = request.resource_metrics
    assert _attrs(resource_metrics.resource)["service.name"] == "tracedsync-tests"
    points = _metric_points(request)
    for metric in (
        "tracedsync.acquisitions",
        "tracedsync.contentions",
        "tracedsync.timeouts",
        "tracedsync.wait.time",
        "tracedsync.hold.time",
        "tracedsync.wait.duration",
        "tracedsync.hold.duration",
    ):
        assert points.get(metric), metric
    metrics = {
        m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert metrics["tracedsync.acquisitions"].sum.is_monotonic
    assert metrics["tracedsync.acquisitions"].sum.aggregation_temporality == 2  # cumulative
    assert metrics["tracedsync.hold.duration"].histogram.aggregation_temporality == 2
    assert metrics["tracedsync.wait.time"].unit == "s"

    stats = _stats_by_key()
    ours = {(p.kind, p.name) for p in [*run.primitives.values(), counter_lock]}
    seen: set[tuple[str, str]] = set()
    for metric, data_points in points.items():
        if metric.startswith("tracedsync.telemetry."):
            continue
        for p in data_points:
            attrs = _attrs(p)
            key = (attrs["sync.kind"], attrs["sync.name"])
            seen.add(key)
            s = stats[key]
            if metric == "tracedsync.acquisitions":
                assert p.as_int == s["acquisitions"], key
            elif metric == "tracedsync.contentions":
                assert p.as_int == s["contentions"], key
            elif metric == "tracedsync.timeouts":
                assert p.as_int == s["timeouts"], key
            elif metric == "tracedsync.wait.time":
                assert p.as_double == pytest.approx(s["wait_total"]), key
            elif metric == "tracedsync.hold.time":
                assert p.as_double == pytest.approx(s["hold_total"]), key
            elif metric in ("tracedsync.wait.duration", "tracedsync.hold.duration"):
                which = "wait" if metric == "tracedsync.wait.duration" else "hold"
                assert list(p.bucket_counts) == s[f"{which}_histogram"], key
                assert p.count == sum(s[f"{which}_histogram"]), key
                assert p.sum == pytest.approx(s[f"{which}_total"]), key
                assert list(p.explicit_bounds) == list(tracedsync.HISTOGRAM_BOUNDS)
            else:
                raise AssertionError(f"unexpected metric {metric}")
    assert ours <= seen
    # The workload's own numbers, so the equalities above are not vacuous.
    counter = stats[("lock", counter_lock.name)]
    assert counter["acquisitions"] == 2000
    assert sum(counter["hold_histogram"]) == 2000
    tight = stats[("lock", run.primitives["tight_lock"].name)]
    assert (tight["acquisitions"], tight["timeouts"]) == (1, 1)
    jobs = stats[("event", run.primitives["jobs"].name)]
    assert jobs["timeouts"] == 1


# --------------------------------------------------------------------------
# Several exporters, compression
# --------------------------------------------------------------------------


def test_console_jsonfile_and_otlp_all_receive(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    receiver: Receiver,
) -> None:
    """TRACEDSYNC_EXPORTERS=console,jsonfile,otlp: the console line, the spans file
    and the receiver all get the wait."""
    point_otlp_at(monkeypatch, receiver)
    monkeypatch.setenv("TRACEDSYNC_EXPORTERS", "console,jsonfile,otlp")
    monkeypatch.setenv("TRACEDSYNC_OUTPUT_DIR", str(tmp_path))
    cfg = tracedsync.configure()
    assert cfg.exporters == ("console", "jsonfile", "otlp")
    lock = tracedsync.Lock()
    Contention(lock).run()
    assert tracedsync.flush(10)
    err = capsys.readouterr().err
    assert "waiter waited" in err and lock.name in err
    for requests in (_file_requests(tmp_path), receiver.received.traces):
        names = sorted(s.name for _, _, s in iter_spans(requests))
        assert names == ["lock.hold", "lock.wait"]
    assert receiver.received.metrics
    assert glob.glob(str(tmp_path / "metrics-*.jsonl"))


def test_http_gzip_bodies_arrive(monkeypatch: pytest.MonkeyPatch, http_receiver: Receiver) -> None:
    """OTEL_EXPORTER_OTLP_COMPRESSION=gzip: protobuf bodies are gzipped and still arrive."""
    point_otlp_at(monkeypatch, http_receiver)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    tracedsync.configure(exporters=["otlp"])
    Contention(tracedsync.Lock()).run()
    assert tracedsync.flush(10)
    assert sorted(s.name for _, _, s in http_receiver.received.spans()) == [
        "lock.hold",
        "lock.wait",
    ]
    assert http_receiver.received.metrics
    requests = http_receiver.received.http_requests
    assert {path for path, _, _ in requests} == {"/v1/traces", "/v1/metrics"}
    assert {(ctype, enc) for _, ctype, enc in requests} == {("application/x-protobuf", "gzip")}


# --------------------------------------------------------------------------
# Faults: collector down, refusing, going away and coming back
# --------------------------------------------------------------------------


def _busy_workload() -> None:
    """Contention that produces records all along, plus plain lock traffic."""
    lock = tracedsync.Lock()
    for _ in range(10):
        Contention(lock, extra_hold=0.012).run()
    counter_lock = tracedsync.Lock()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(2000):
            with counter_lock:
                pass

    run_threads(*[work] * 4)


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextmanager
def _accounted(receiver: Receiver) -> Iterator[dict[str, int]]:
    """Yields a dict filled, on exit, with the record counts of the block: the
    shared buffer's ``produced`` and ``dropped``, and the OTLP span exporter's
    ``offered``, ``exported``, ``lane_dropped``, ``failed`` (checked exact: every
    exporter that takes records was offered every record taken, and accounts
    for each)."""
    out: dict[str, int] = {}
    with counted() as blocks:
        yield out
    (c,) = blocks
    c.assert_exact()
    out.update(produced=c.produced, dropped=c.dropped)
    out.update(c.of(f"otlp-traces-{receiver.protocol}"))


def _shutdown_and_check_thread() -> None:
    """Shut down; the pipeline thread must have ended within the shutdown timeout."""
    pipe = lifecycle.pipeline()
    assert pipe is not None and pipe.thread is not None
    thread = pipe.thread
    tracedsync.shutdown()
    # shutdown() joins with the shutdown timeout: alive now means it overran.
    assert not thread.is_alive(), "pipeline thread outlived tracedsync.shutdown()"


def _failure_events(logs: LogCollector) -> Counter[tuple[str, str]]:
    return Counter((e["exporter"], e["error"]) for e in logs.named("exporter_failed"))


def _expected_failing(receiver: Receiver) -> set[str]:
    return {f"otlp-traces-{receiver.protocol}", f"otlp-metrics-{receiver.protocol}"}


def _check_failed_once(
    logs: LogCollector, receiver: Receiver, err: str, caplog: pytest.LogCaptureFixture
) -> None:
    """exporter_failed once per exporter and kind, with the exporter's own reason;
    one stderr line each; none of the official exporters' per-batch log lines."""
    events = _failure_events(logs)
    assert set(events.values()) == {1}, events
    assert {exporter for exporter, _ in events} == _expected_failing(receiver)
    for event in logs.named("exporter_failed"):
        assert event["detail"].startswith(f"{event['exporter']} returned FAILURE: ")
        assert "Failed to" in event["detail"]  # the official exporter's own words
    for exporter in _expected_failing(receiver):
        assert err.count(f"tracedsync: exporter {exporter} failed") == 1, err
    leaked = [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")]
    assert not leaked


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["down", "stalled"])
def test_collector_down_or_slow_app_runs_at_full_speed_and_failures_are_counted(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    receiver: Receiver,
    fault: str,
) -> None:
    """Nothing listening, or a collector that never answers in time: the workload runs
    as fast as with no exporter at all, flush and shutdown finish within the shutdown
    timeout, every record is counted failed (produced == exported + dropped + failed)
    and exporter_failed is logged once per exporter and kind of error."""
    tracedsync.configure()  # no exporter: the baseline
    baseline = min(_timed(_busy_workload) for _ in range(2))
    tracedsync.shutdown()

    if fault == "down":
        receiver.stop()  # the collector is down from the start
    else:
        receiver.stall()  # it accepts calls and never answers within the timeout
    point_otlp_at(monkeypatch, receiver, timeout_s=1)
    monkeypatch.setenv("TRACEDSYNC_SHUTDOWN_TIMEOUT_MS", "10000")
    logs = LogCollector()
    with _accounted(receiver) as counts:
        tracedsync.configure(exporters=["otlp", logs])
        down = min(_timed(_busy_workload) for _ in range(2))
        assert tracedsync.flush(), "flush did not finish within the shutdown timeout"
        _shutdown_and_check_thread()

    # Generous: exports retry for a second each; an app waiting on them would
    # take many times longer.
    assert down < 4 * baseline, (down, baseline)
    assert counts["produced"] >= 40  # two busy runs of ten contended rounds
    assert counts["exported"] == 0
    assert counts["failed"] > 0
    assert receiver.received.traces == [] and receiver.received.metrics == []
    if fault == "stalled":
        assert receiver.received.stalled["traces"] > 0
        assert receiver.received.stalled["metrics"] > 0
    _check_failed_once(logs, receiver, capsys.readouterr().err, caplog)


@pytest.mark.slow
def test_collector_refusing_is_counted_and_reported_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    receiver: Receiver,
) -> None:
    """A collector answering UNAVAILABLE (gRPC) or 503 (HTTP) to everything: the
    exporters reach it and give up within their timeout, records are counted failed,
    exporter_failed is logged once per exporter and kind."""
    receiver.refusing = True
    point_otlp_at(monkeypatch, receiver, timeout_s=1)
    monkeypatch.setenv("TRACEDSYNC_SHUTDOWN_TIMEOUT_MS", "10000")
    logs = LogCollector()
    with _accounted(receiver) as counts:
        tracedsync.configure(exporters=["otlp", logs])
        for _ in range(3):
            Contention(tracedsync.Lock()).run()
            assert tracedsync.flush()
        _shutdown_and_check_thread()

    assert receiver.received.refused["traces"] >= 3
    assert receiver.received.refused["metrics"] >= 3
    assert receiver.received.traces == [] and receiver.received.metrics == []
    assert counts["produced"] == 6
    assert counts["failed"] == 6
    _check_failed_once(logs, receiver, capsys.readouterr().err, caplog)


@pytest.mark.slow
def test_collector_down_mid_run_then_back(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """The collector goes away mid-run: that batch is counted failed (never queued
    without bound); once it is back on the same port, later batches arrive again."""
    point_otlp_at(monkeypatch, receiver, timeout_s=2)
    logs = LogCollector()

    def batch(name: str) -> None:
        Contention(tracedsync.Lock(name=name)).run()
        assert tracedsync.flush(30)

    def arrived(name: str) -> bool:
        return any(_attrs(s)["sync.name"] == name for _, _, s in receiver.received.spans())

    with _accounted(receiver) as counts:
        tracedsync.configure(exporters=["otlp", logs])
        batch("before")
        assert arrived("before")
        metrics_before = len(receiver.received.metrics)

        receiver.stop()
        with counted() as down:
            batch("while-down")
        assert down[0].of(f"otlp-traces-{receiver.protocol}")["failed"] == 2

        receiver.restart()
        for attempt in range(5):
            batch(f"after-{attempt}")
            if arrived(f"after-{attempt}"):
                break
        else:
            raise AssertionError("no batch arrived after the collector came back")
        _shutdown_and_check_thread()

    assert not arrived("while-down")
    assert len(receiver.received.metrics) > metrics_before
    assert counts["failed"] >= 2
    assert counts["exported"] >= 4
    assert logs.named("exporter_failed")


@pytest.mark.slow
def test_shutdown_cuts_exporter_retries_short(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """OTLP timeout (30 s of retries) far above the shutdown timeout (1 s): shutdown
    still ends the pipeline thread within its timeout, and every record is accounted
    for (counted failed), none left in flight."""
    receiver.stop()
    point_otlp_at(monkeypatch, receiver, timeout_s=30)
    monkeypatch.setenv("TRACEDSYNC_SHUTDOWN_TIMEOUT_MS", "1000")
    with _accounted(receiver) as counts:
        tracedsync.configure(exporters=["otlp"])
        for _ in range(3):
            Contention(tracedsync.Lock()).run()
        # The export retries for up to 30 s: a flush cannot finish in time.
        assert not tracedsync.flush(0.5)
        Contention(tracedsync.Lock()).run()
        _shutdown_and_check_thread()
    assert counts["produced"] == 8
    assert counts["failed"] == 8


@pytest.mark.slow
def test_shutdown_returns_in_time_with_a_call_stuck_in_a_stalled_collector(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """An export call held by a collector that does not answer (30 s OTLP timeout,
    1 s shutdown timeout): shutdown() returns in time. The gRPC call is cancelled and
    the thread ends; an HTTP request in flight cannot be cancelled, so that thread
    ends when the request does, having taken nothing more; every record is accounted."""
    receiver.stall()
    point_otlp_at(monkeypatch, receiver, timeout_s=30)
    monkeypatch.setenv("TRACEDSYNC_SHUTDOWN_TIMEOUT_MS", "1000")
    with _accounted(receiver) as counts:
        tracedsync.configure(exporters=["otlp"])
        Contention(tracedsync.Lock()).run()
        assert not tracedsync.flush(0.2)
        assert receiver.received.wait_for(lambda r: r.stalled["traces"] >= 1)
        pipe = lifecycle.pipeline()
        assert pipe is not None and pipe.thread is not None
        thread = pipe.thread
        tracedsync.shutdown()
        # It returned while the collector still sits on the call.
        assert receiver.received.holding >= 1
        if receiver.protocol == "grpc":
            assert not thread.is_alive()
        receiver.resume()  # the held request is answered (refused): it ends
        thread.join(15)
        assert not thread.is_alive()
    assert counts["produced"] == 2
    assert counts["failed"] == 2
    assert receiver.received.traces == []


def test_apps_own_otlp_exporter_still_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, receiver: Receiver
) -> None:
    """tracedsync keeps only its own calls' exporter log lines out of the app's logs:
    the app's own OTLP exporter, failing on the app's thread, logs as usual."""
    receiver.refusing = True
    point_otlp_at(monkeypatch, receiver, timeout_s=0.5)
    tracedsync.configure(exporters=["otlp"])  # installs tracedsync's log filter
    if receiver.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    app_exporter = OTLPSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    with provider.get_tracer("app").start_as_current_span("request"):
        pass
    provider.shutdown()
    assert receiver.received.refused["traces"] >= 1
    assert [r for r in caplog.records if r.name.startswith("opentelemetry.exporter.otlp")]


def test_wait_histogram_carries_the_waiting_span_as_exemplar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """The wait histogram point of a contended lock carries, in the bucket the
    wait fell in, an exemplar with that wait span's trace and span id and its
    duration, over OTLP and in the jsonfile metrics line alike (hex ids there)."""
    point_otlp_at(monkeypatch, receiver)
    tracedsync.configure(exporters=["otlp", "jsonfile"], output_dir=str(tmp_path))
    pool_lock = tracedsync.Lock(name="exemplar_lock")
    Contention(pool_lock).run()
    assert tracedsync.flush(10)
    (wait,) = [
        s
        for _, _, s in receiver.received.spans()
        if s.name == "lock.wait" and _attrs(s)["sync.name"] == "exemplar_lock"
    ]
    duration = (wait.end_time_unix_nano - wait.start_time_unix_nano) / 1e9
    (point,) = [
        p
        for p in _metric_points(receiver.received.metrics[-1])["tracedsync.wait.duration"]
        if _attrs(p)["sync.name"] == "exemplar_lock"
    ]
    (exemplar,) = point.exemplars
    assert exemplar.trace_id == wait.trace_id and exemplar.span_id == wait.span_id
    assert exemplar.as_double == pytest.approx(duration, abs=1e-6)
    bucket = next(i for i, bound in enumerate(point.explicit_bounds) if duration <= bound)
    assert point.bucket_counts[bucket] >= 1
    assert bucket == 0 or duration > point.explicit_bounds[bucket - 1]

    lines = []
    for path in sorted(glob.glob(str(tmp_path / "metrics-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            lines.extend(f.read().splitlines())
    parsed = parse_metrics_line(lines[-1])  # the schema accepts it (exemplars included)
    assert parsed.resource_metrics
    request = json.loads(lines[-1])
    metrics = request["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    (hist,) = [m for m in metrics if m["name"] == "tracedsync.wait.duration"]
    (jpoint,) = [
        p
        for p in hist["histogram"]["dataPoints"]
        if {"key": "sync.name", "value": {"stringValue": "exemplar_lock"}} in p["attributes"]
    ]
    (jexemplar,) = jpoint["exemplars"]
    assert jexemplar["traceId"] == wait.trace_id.hex()
    assert jexemplar["spanId"] == wait.span_id.hex()
    assert jexemplar["asDouble"] == pytest.approx(duration, abs=1e-6)
    assert {"key": "thread.name", "value": {"stringValue": "waiter"}} in jexemplar[
        "filteredAttributes"
    ]
