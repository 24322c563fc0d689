"""The pipeline thread: records in, spans, log events and metrics out.

One internal daemon thread per process drains the recorder's buffer, turns
records into spans (explicit start and end times, parent = the context that
was current in the app thread) and structlog events, builds metrics directly
from the primitives' counters, and hands all of it to every exporter's
delivery lane (``tracedsync.exporters.lanes``: a bounded queue and an
internal thread per exporter). It never calls an exporter nor waits for one:
a hung or failing exporter loses only its own records. Every thread here is
marked internal: nothing it does is recorded.
"""

from __future__ import annotations

import contextvars
import importlib.metadata  # noqa: F401 - see below
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, MutableMapping, Sequence
from datetime import datetime, timezone
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, TraceFlags

from tracedsync import _sites, _stdlib, recorder
from tracedsync.exporters import lanes as lanes_module
from tracedsync.exporters.base import (
    Exporter,
    LogEvent,
    SharedAttributes,
    SpanData,
    SpanEvent,
    describe_failure,
)
from tracedsync.exporters.exemplars import Exemplars
from tracedsync.exporters.lanes import Batch, FlushRequest, Lane

# structlog's module __getattr__ imports importlib.metadata on any unknown
# attribute (hasattr(structlog, "x") included): imported here, it cannot
# change sys.modules later under a program that iterates it (CPython's
# regrtest does, checking __warningregistry__ on every module).

SCOPE_NAME = "tracedsync"
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_IDLE_KINDS = frozenset({"event", "condition", "barrier"})
#: How long a timed-out wait span waits for the hold it links to.
_LINK_PATIENCE_NS = 5_000_000_000
#: What ``stop`` keeps of its timeout to abort a hanging export and join.
_ABORT_RESERVE_S = 0.5
#: What the pipeline thread leaves ``stop`` to close the lanes after draining.
_DRAIN_MARGIN_S = 0.05


def scope(version: str) -> InstrumentationScope:
    return InstrumentationScope(SCOPE_NAME, version)


def context_getter() -> Callable[[], Any]:
    """What the recorder calls for the app thread's current context.

    ``opentelemetry.context.get_current``, or, when OpenTelemetry runs its
    default contextvars runtime, the ``ContextVar.get`` that it ends in (two
    Python calls fewer on every recorded event).
    """
    try:
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        var = getattr(runtime, "_current_context", None)
        if type(runtime) is ContextVarsRuntimeContext and isinstance(var, contextvars.ContextVar):
            return var.get
    except Exception:
        pass
    return otel_context.get_current


def build_resource(run_id: str) -> Resource:
    """``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and the SDK's
    detectors, plus the process id and the tracedsync run id."""
    return Resource.create({"process.pid": os.getpid(), "tracedsync.run_id": run_id})


#: Records turned into spans and delivered at a time: what one exporter call
#: gets (the OpenTelemetry SDK's batch size), and few enough that a batch's
#: objects die young. Building a whole buffer of spans before exporting kept
#: them alive into the older GC generations: a third of the pipeline's time.
BATCH_RECORDS = 512

#: Distinct span attribute sets kept (``Pipeline._attrs``): primitives made per
#: request give every span a new ``sync.id``, so the cache must stay small.
_ATTRS_CACHE_LIMIT = 512


class _Collector:
    """The logger at the end of tracedsync's private structlog pipeline:
    ``_EventLogger`` appends each finished event dict to ``events``."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []


class _EventLogger(structlog.BoundLoggerBase):
    """tracedsync's bound logger (a structlog custom wrapper class): each level
    method runs the processor chain and hands the event dict to the collector,
    without the generic BoundLogger's per-call proxying (one event is made per
    exported wait or hold span)."""

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        args, _ = self._process_event(level, event, fields)
        self._logger.events.append(args[0])

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._emit("critical", event, fields)


#: The keyword a wait or hold event is logged with: the span it mirrors.
_SPAN_FIELD = "_tracedsync_span"


def _span_fields(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Processor: a wait or hold event's fields, read from the span it mirrors:
    a ``SpanEvent`` (its timestamp, level, event, ids and duration, then the
    span's attributes), or a plain dict when other fields were logged too."""
    span = event_dict.pop(_SPAN_FIELD, None)
    if span is None:
        return event_dict
    d = span.end_ns - span.start_ns
    fields = SpanEvent(
        timestamp=iso_timestamp(span.end_ns),
        level=event_dict.pop("level", None),
        event=event_dict.pop("event", None),
        trace_id=f"{span.trace_id:032x}",
        span_id=f"{span.span_id:016x}",
        # milliseconds to the nearest microsecond
        duration_ms=(d + 500) // 1000 / 1000,
    )
    fields.update(span.attributes)
    if event_dict:
        fields.update(event_dict)
        return dict(fields)
    fields.span = span
    return fields


def _to_record(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    return ((event_dict,), {})


def _make_logger(collector: _Collector) -> Any:
    # Every argument is given: whatever is left out would come from the
    # application's global structlog configuration, which is not ours.
    # bind() once: the lazy proxy wrap_logger returns would build a new bound
    # logger for every event.
    return structlog.wrap_logger(
        collector,
        processors=[structlog.processors.add_log_level, _span_fields, _to_record],
        wrapper_class=_EventLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
        logger_factory_args=(),
    ).bind()


class _ForcedIdGenerator:
    """Wraps a tracer's id generator so a reserved span id can be used once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.next_span_id = 0

    def generate_span_id(self) -> int:
        forced = self.next_span_id
        if forced:
            self.next_span_id = 0
            return forced
        return int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        return int(self.inner.generate_trace_id())

    def __getattr__(self, name: str) -> Any:  # e.g. is_trace_id_random()
        return getattr(self.inner, name)


#: (whole second, its "%Y-%m-%dT%H:%M:%S" text) of the last timestamp formatted.
_last_second: tuple[int, str] = (-1, "")


def _name_of(thread: Any, ident: int) -> str:
    """A Thread's name (hold records carry the Thread, not its name)."""
    try:
        return str(thread.name)
    except Exception:
        return f"thread-{ident}"


def iso_timestamp(epoch_ns: int) -> str:
    """``epoch_ns`` as ``2024-05-01T12:00:01.234567Z`` (UTC, to the nearest
    microsecond), with the date part formatted once per second."""
    global _last_second
    second, micro = divmod((epoch_ns + 500) // 1000, 1_000_000)
    cached = _last_second
    if cached[0] != second:
        text = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        cached = _last_second = (second, text)
    return f"{cached[1]}.{micro:06d}Z"


_span_names: dict[tuple[str, bool], str] = {}


def _span_name(kind: str, is_wait: bool) -> str:
    """``<kind>.wait`` or ``<kind>.hold`` (formatted once per kind)."""
    try:
        return _span_names[(kind, is_wait)]
    except KeyError:
        name = _span_names[(kind, is_wait)] = f"{kind}.wait" if is_wait else f"{kind}.hold"
        return name


class Pipeline:
    """Drains the recorder's buffer on an internal thread and feeds the lanes."""

    def __init__(
        self,
        sinks: Sequence[Exporter],
        resource: Resource,
        version: str,
        *,
        tracer_provider: Any = None,
        metric_interval_s: float = 10.0,
        poll_interval_s: float = 0.2,
        metrics_enabled: bool = True,
        lane_records: int | None = None,
    ) -> None:
        self.sinks = list(sinks)
        self.resource = resource
        self.scope = scope(version)
        self.metric_interval_s = metric_interval_s
        self.poll_interval_s = poll_interval_s
        self.metrics_enabled = metrics_enabled and any(s.wants_metrics for s in self.sinks)
        self._span_sinks = [s for s in self.sinks if s.wants_spans]
        self._log_sinks = [s for s in self.sinks if s.wants_logs]
        self._metric_sinks = [s for s in self.sinks if s.wants_metrics]
        # Delivery: one lane per exporter (tracedsync.exporters.lanes).
        self.lanes = [
            Lane(sink, name, self._report_failure, lane_records or lanes_module.LANE_RECORDS)
            for sink, name in zip(self.sinks, lanes_module.unique_names(self.sinks), strict=True)
        ]
        if self.metrics_enabled:
            for lane in self.lanes:
                lane.final_metrics = self.metrics_now
        self._record_lanes = [lane for lane in self.lanes if lane.takes_records]
        self._metric_lanes = [lane for lane in self.lanes if lane.takes_metrics]
        self._lane_dropped_reported = {lane.name: lane.counts.lane_dropped for lane in self.lanes}
        self._drain_until = 0.0
        self._taken_at_start = recorder.accounting.taken
        self._failures_lock = _stdlib.allocate_lock()
        #: (exporter, error kind, detail, epoch ns) noted by any thread, made
        #: into exporter_failed events by the pipeline thread.
        self._failure_notes: deque[tuple[str, str, str, int]] = deque()
        #: The latest wait span per primitive and wait bucket (metrics' exemplars).
        self._exemplars = Exemplars()
        for sink in self.sinks:
            sink.set_metrics_source(self.metrics_now)
        self._tracer = None
        self._ids: _ForcedIdGenerator | None = None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(SCOPE_NAME, version)
            inner = getattr(self._tracer, "id_generator", None)
            if inner is not None:
                self._ids = _ForcedIdGenerator(inner)
                self._tracer.id_generator = self._ids
        self._random = random.Random()
        self._wake = _stdlib.Event()
        self._flush_requests: deque[Any] = deque()
        self._stopping = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._collector = _Collector()
        self._log = _make_logger(self._collector)
        #: _build's key -> the attributes shared by the spans with that key.
        self._attrs: dict[tuple[Any, ...], SharedAttributes] = {}
        #: reserved hold span id -> trace id, for links from waits to holds.
        self._hold_traces: dict[int, int] = {}
        #: reserved hold span id -> [(deadline, span)] of waits linking to it.
        self._pending: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
        #: waits whose hold arrived: exported with the next batch.
        self._ready: list[SpanData] = []
        self._failures_seen: set[tuple[str, str]] = set()
        self._failure_counts: dict[str, int] = {}
        # Accounting is per process: report only the drops from now on.
        self._dropped_reported = recorder.accounting.dropped
        self._suppressed_reported = 0
        self._last_metrics = 0.0
        self._start_ns = time.time_ns()
        self.extra_work: list[Callable[[], None]] = []
        self._warm_up()

    def _warm_up(self) -> None:
        """Run every code path the pipeline thread uses once, on this thread.

        Anything imported lazily on the pipeline thread would change
        ``sys.modules`` under the program's feet (a program iterating it, as
        CPython's regrtest does, would break). So it all happens here, in the
        thread that called ``configure()``.
        """
        from tracedsync.exporters import otlp_json
        from tracedsync.exporters.sdk import to_readable_span

        span = SpanData("warm-up", 1, 1, 0, 1, 2, {"k": 1, "f": 1.0}, [(1, 1, {})])
        otlp_json.encode_spans([span], self.resource, self.scope)
        to_readable_span(span, self.resource, self.scope)
        otlp_json.encode_metrics(self.metrics_now())
        self._log.info("warm-up", timestamp=iso_timestamp(time.time_ns()))
        otlp_json.encode_log(self._collector.events.pop())
        self._parent(otel_context.get_current())

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start the pipeline thread and every exporter's lane (and a pull
        exporter's own server thread): all of them now, never lazily."""
        for lane in self.lanes:
            try:
                lane.exporter.start()
            except Exception as exc:
                self._report_failure(lane, exc, 0.0)
            lane.start()
        self._thread = threading.Thread(target=self._run, name="tracedsync-pipeline", daemon=True)
        self._thread.start()
        recorder.set_recording(True, context_getter(), self.wakeup)

    def wakeup(self) -> None:
        self._wake.set()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def flush(self, timeout_s: float) -> bool:
        """Offer everything recorded so far to every lane and wait until each
        exporter has delivered it; False if that took longer than ``timeout_s``.

        Failures noticed while delivering become ``exporter_failed`` events,
        delivered by a second round within the same time.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        me = threading.get_ident()
        if me == thread.ident or any(_ident(lane.thread) == me for lane in self.lanes):
            return False  # it would wait for itself
        deadline = time.monotonic() + timeout_s
        for _ in range(2):
            ask = _FlushAsk()
            self._flush_requests.append(ask)
            self._wake.set()
            if not ask.offered.wait(max(0.0, deadline - time.monotonic())):
                return False
            request = ask.request
            if request is None or not request.done.wait(max(0.0, deadline - time.monotonic())):
                return False
            if not self._failure_notes:
                break
        return True

    def stop(self, timeout_s: float) -> bool:
        """Flush, shut the exporters down and end every thread, within
        ``timeout_s`` in all.

        The pipeline thread offers the last records to every lane and waits
        while the lanes drain in parallel, turning the failures they note into
        ``exporter_failed`` events for the others; then each lane exports the
        metrics once more (its own counts final) and shuts its exporter down. A lane
        still busy when the time is about to run out is aborted (its
        exporter's ``abort()``: the official OTLP exporters stop retrying);
        one that still does not end is abandoned, and what it held is counted
        failed. Returns False only if the pipeline thread itself did not end
        (records it took and never offered are then counted failed in every
        lane, and it takes no more records: the next pipeline's).
        """
        recorder.set_recording(False)
        thread = self._thread
        if thread is None:
            return True
        deadline = time.monotonic() + timeout_s
        reserve = min(_ABORT_RESERVE_S, timeout_s / 4)
        # The pipeline thread waits for the lanes to drain (delivering the
        # failure events they note meanwhile) until a little before that.
        self._drain_until = deadline - reserve - _DRAIN_MARGIN_S
        self._stopping = True
        self._wake.set()
        ended = True
        if threading.get_ident() != thread.ident:
            thread.join(max(0.0, deadline - reserve - time.monotonic()))
            if thread.is_alive():
                ended = False
                self._abandoned = True
                taken = recorder.accounting.taken - self._taken_at_start
                for lane in self.lanes:
                    lane.close_missing(taken)
        for lane in self.lanes:
            lane.close(deadline - reserve)
        self._join_lanes(deadline - reserve)
        busy = [lane for lane in self.lanes if _alive(lane.thread)]
        for lane in busy:
            lane.abort()
        self._join_lanes(deadline)
        for lane in busy:
            if not _alive(lane.thread):
                continue
            started = lane.call_started
            lost = lane.abandon()
            where = getattr(lane.exporter, "destination", None)
            call = f"its call to {where}" if where else "its call"
            running = (
                f": {call} has run {time.monotonic() - started:.1f} s without returning"
                if started
                else ""
            )
            _stderr(
                f"tracedsync: exporter {lane.name} did not finish within the shutdown "
                f"timeout of {timeout_s:g} s{running}; {lost}"
            )
        return ended

    def _join_lanes(self, until: float) -> None:
        for lane in self.lanes:
            if lane.thread is not None:
                lane.thread.join(max(0.0, until - time.monotonic()))

    def telemetry(self) -> dict[str, Any]:
        """:func:`telemetry_counts` (the counts are per process)."""
        return telemetry_counts()

    # -- the loop ------------------------------------------------------------

    def _run(self) -> None:
        recorder.mark_internal()
        try:
            while True:
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()
                asks: list[_FlushAsk] = []
                while self._flush_requests:
                    asks.append(self._flush_requests.popleft())
                stopping = self._stopping
                final = stopping or bool(asks)
                self._guarded(self._cycle, final)
                for work in self.extra_work:
                    self._guarded(work)
                now = time.monotonic()
                # At stop each lane exports the metrics itself, once drained.
                if (
                    self.metrics_enabled
                    and not stopping
                    and (final or now - self._last_metrics >= self.metric_interval_s)
                ):
                    self._last_metrics = now
                    self._guarded(self.export_metrics)
                if final:
                    request = FlushRequest(len(self.lanes))
                    for lane in self.lanes:
                        lane.request_flush(request)
                    for ask in asks:
                        ask.request = request
                        ask.offered.set()
                    if stopping:
                        self._guarded(self._drain, request)
                if stopping:
                    break
        finally:
            while self._flush_requests:
                self._flush_requests.popleft().offered.set()
            recorder.unmark_internal()

    def _drain(self, request: FlushRequest) -> None:
        """At stop: wait until every lane has delivered what it was offered (or
        ``stop`` needs the time back), offering the failures noted meanwhile
        as ``exporter_failed`` events."""
        while True:
            done = request.done.wait(max(0.0, min(0.05, self._drain_until - time.monotonic())))
            if self._failure_notes:
                self._batch([], time.time_ns() - time.monotonic_ns(), [])
            if done or time.monotonic() >= self._drain_until:
                return

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a bug of ours must not stop the thread
            self._note_failure("pipeline", exc)

    def _cycle(self, final: bool) -> None:
        records = [] if self._abandoned else recorder.take_all()
        offset = time.time_ns() - time.monotonic_ns()
        for start in range(0, len(records), BATCH_RECORDS):
            self._batch(records[start : start + BATCH_RECORDS], offset, [])
        # Waits whose hold never came, drop reports, failure events: last.
        self._batch([], offset, self._due_pending(final))

    def _batch(self, records: list[tuple[Any, ...]], offset: int, spans: list[SpanData]) -> None:
        """Turn ``records`` into spans and events and offer them with ``spans``."""
        for rec in records:
            try:
                self._build(rec, offset, spans)
            except Exception as exc:
                self._note_failure("pipeline", exc)
        logs: list[LogEvent] = self._collector.events
        self._collector.events = []
        self._take_failure_notes(logs)
        self._report_drops(logs)
        if not self._abandoned:
            self._deliver(Batch(len(records), spans, logs))

    def _deliver(self, batch: Batch) -> None:
        """Hand ``batch`` to every lane that takes records (never blocks)."""
        if not batch.records and not batch.spans and not batch.logs:
            return
        for lane in self._record_lanes:
            lane.offer(batch)

    def _report_failure(self, lane: Lane, exc: BaseException, seconds: float) -> None:
        """A lane's call failed (called on that lane's thread)."""
        detail = describe_failure(exc, seconds, aborted=lane.aborting)
        self._note_failure(lane.name, exc, detail)

    def _note_failure(self, who: str, exc: BaseException, detail: str | None = None) -> None:
        """Count a failure; the first of each exporter and kind of error gets a
        line on stderr now and an ``exporter_failed`` event with the next batch.
        Any thread may call this."""
        kind = type(exc).__name__
        with self._failures_lock:
            self._failure_counts[who] = self._failure_counts.get(who, 0) + 1
            key = (who, kind)
            if key in self._failures_seen:
                return
            self._failures_seen.add(key)
        if detail is None:
            detail = describe_failure(exc, 0.0)
        _stderr(
            f"tracedsync: exporter {who} failed: {kind}: {detail} "
            "(further failures of this kind are counted, not shown)"
        )
        self._failure_notes.append((who, kind, detail, time.time_ns()))
        self._wake.set()

    def _take_failure_notes(self, logs: list[LogEvent]) -> None:
        """Turn the failures noted since the last batch into events (this thread
        owns the logger)."""
        while self._failure_notes:
            who, kind, detail, when = self._failure_notes.popleft()
            self._log.error(
                "exporter_failed",
                exporter=who,
                error=kind,
                detail=detail,
                timestamp=iso_timestamp(when),
                message=f"exporter {who} failed: {kind}: {detail}",
            )
        logs.extend(self._collector.events)
        self._collector.events = []

    @property
    def failure_counts(self) -> dict[str, int]:
        with self._failures_lock:
            return dict(self._failure_counts)

    def _report_drops(self, logs: list[LogEvent]) -> None:
        acc = recorder.accounting
        if acc.dropped > self._dropped_reported:
            new = acc.dropped - self._dropped_reported
            self._dropped_reported = acc.dropped
            self._log.warning(
                "telemetry_dropped",
                dropped=new,
                dropped_total=acc.dropped,
                produced_total=acc.produced,
                buffer_size=recorder.buffer_capacity,
                timestamp=iso_timestamp(time.time_ns()),
                message=(
                    f"tracedsync dropped {new} records (buffer of "
                    f"{recorder.buffer_capacity} full; {acc.dropped} in all)"
                ),
            )
        for lane in self._record_lanes:
            total = lane.counts.lane_dropped
            seen = self._lane_dropped_reported.get(lane.name, total)
            if total > seen:
                self._log.warning(
                    "telemetry_dropped",
                    exporter=lane.name,
                    dropped=total - seen,
                    dropped_total=total,
                    lane_size=lane.capacity,
                    timestamp=iso_timestamp(time.time_ns()),
                    message=(
                        f"exporter {lane.name} fell behind: {total - seen} records dropped "
                        f"from its lane of {lane.capacity} ({total} in all)"
                    ),
                )
            self._lane_dropped_reported[lane.name] = total
        logs.extend(self._collector.events)
        self._collector.events = []

    # -- records to spans and events -------------------------------------------

    def _new_id(self, bits: int) -> int:
        return self._random.getrandbits(bits) or 1

    def _parent(self, ctx: Any) -> tuple[int, int]:
        if ctx is None:
            return 0, 0
        sc = otel_trace.get_current_span(ctx).get_span_context()
        if sc.is_valid:
            return sc.trace_id, sc.span_id
        return 0, 0

    def _build(self, rec: tuple[Any, ...], offset: int, spans: list[SpanData]) -> None:
        rtype = rec[0]
        if rtype == recorder.FINDING:
            self._build_finding(rec, offset, spans)
            return
        (
            _,
            meta,
            ident,
            tname,
            t0,
            t1,
            outcome,
            ctx,
            site,
            holder,
            holder_name,
            holder_site,
            reserved,
        ) = rec
        kind = meta[2]
        if not isinstance(tname, str):
            tname = _name_of(tname, ident)
        key = (rtype, meta, ident, tname, outcome, site, holder, holder_name, holder_site)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = self._new_attributes(key)
        start, end = t0 + offset, t1 + offset
        if rtype == recorder.WAIT:
            span_name = _span_name(kind, True)
            links: list[tuple[int, int, dict[str, Any]]] = []
            if reserved:
                trace_id = self._hold_traces.get(reserved)
                if trace_id is not None:
                    links.append((trace_id, reserved, {}))
                elif outcome == "timeout":
                    # The holder may still hold: wait a little for its hold span.
                    self._pending.setdefault(reserved, []).append(
                        (
                            time.monotonic_ns() + _LINK_PATIENCE_NS,
                            (span_name, ctx, attrs, start, end),
                        )
                    )
                    return
            spans.append(self._finish_wait(span_name, ctx, attrs, start, end, links))
            return
        span = self._make_span(_span_name(kind, False), ctx, attrs, start, end, reserved, [])
        if reserved:
            self._remember_hold(reserved, span.trace_id)
        # A hold emitted only because someone waited on it is a span (the wait
        # links to it), not a long_hold event.
        if t1 - t0 >= recorder.hold_threshold_ns:
            self._event("long_hold", span)
        spans.append(span)

    def _new_attributes(self, key: tuple[Any, ...]) -> SharedAttributes:
        """The attributes of the spans of one ``_build`` key: made once, shared
        by every span with that key (a bounded cache, emptied when full)."""
        rtype, meta, ident, tname, outcome, site, holder, holder_name, holder_site = key
        prim_id, name, kind = meta
        attrs = SharedAttributes({"sync.kind": kind, "sync.name": name, "sync.id": prim_id})
        if outcome is not None:
            attrs["sync.outcome"] = outcome
        attrs["thread.id"] = ident
        attrs["thread.name"] = tname
        if site is not None:
            attrs["code.function.name"] = site[2]
            attrs["code.file.path"] = site[0]
            attrs["code.line.number"] = site[1]
        if holder_name is not None:
            attrs["sync.holder.thread.name"] = holder_name
            attrs["sync.holder.thread.id"] = holder
        if holder_site is not None:
            attrs["sync.holder.site"] = _sites.format_site(holder_site)
        if rtype == recorder.HOLD and holder:  # for a hold: an RLock's recursion depth
            attrs["sync.rlock.depth"] = holder
        if len(self._attrs) >= _ATTRS_CACHE_LIMIT:
            self._attrs.clear()
        self._attrs[key] = attrs
        return attrs

    def _finish_wait(
        self,
        name: str,
        ctx: Any,
        attrs: dict[str, Any],
        start: int,
        end: int,
        links: list[tuple[int, int, dict[str, Any]]],
    ) -> SpanData:
        span = self._make_span(name, ctx, attrs, start, end, None, links)
        self._exemplars.offer(span)
        self._event("long_wait", span)
        return span

    def _event(self, event: str, span: SpanData) -> None:
        """The structlog event mirroring a wait or hold span (not made when no
        exporter takes log events: with only ``otlp``, say)."""
        if not self._log_sinks:
            return
        self._log.info(event, **{_SPAN_FIELD: span})

    def _remember_hold(self, span_id: int, trace_id: int) -> None:
        if len(self._hold_traces) > 50_000:
            for key in list(self._hold_traces)[:25_000]:
                del self._hold_traces[key]
        self._hold_traces[span_id] = trace_id
        waiting = self._pending.pop(span_id, None)
        if waiting:
            for _, (name, ctx, attrs, start, end) in waiting:
                link: list[tuple[int, int, dict[str, Any]]] = [(trace_id, span_id, {})]
                self._ready.append(self._finish_wait(name, ctx, attrs, start, end, link))

    def _due_pending(self, final: bool) -> list[SpanData]:
        out = self._ready
        self._ready = []
        if self._pending:
            now = time.monotonic_ns()
            for key in list(self._pending):
                keep = []
                for deadline, args in self._pending[key]:
                    if final or deadline <= now:
                        name, ctx, attrs, start, end = args  # the hold never came
                        out.append(self._finish_wait(name, ctx, attrs, start, end, []))
                    else:
                        keep.append((deadline, args))
                if keep:
                    self._pending[key] = keep
                else:
                    del self._pending[key]
        return out

    def _make_span(
        self,
        name: str,
        ctx: Any,
        attrs: dict[str, Any],
        start: int,
        end: int,
        forced_span_id: int | None,
        links: list[tuple[int, int, dict[str, Any]]],
    ) -> SpanData:
        if self._tracer is not None:
            return self._make_external_span(name, ctx, attrs, start, end, forced_span_id, links)
        trace_id, parent_id = self._parent(ctx)
        if not trace_id:
            trace_id = self._new_id(128)
        span_id = forced_span_id or self._new_id(64)
        return SpanData(name, trace_id, span_id, parent_id, start, end, attrs, links)

    def _make_external_span(
        self,
        name: str,
        ctx: Any,
        attrs: dict[str, Any],
        start: int,
        end: int,
        forced_span_id: int | None,
        links: list[tuple[int, int, dict[str, Any]]],
    ) -> SpanData:
        assert self._tracer is not None
        if self._ids is not None and forced_span_id:
            self._ids.next_span_id = forced_span_id
        span = self._tracer.start_span(
            name,
            context=ctx,
            attributes=attrs,
            links=[Link(SpanContext(t, s, True, _SAMPLED), a or None) for t, s, a in links],
            start_time=start,
        )
        span.end(end_time=end)
        sc = span.get_span_context()
        parent = getattr(span, "parent", None)
        return SpanData(
            name,
            sc.trace_id,
            sc.span_id,
            parent.span_id if parent is not None else 0,
            start,
            end,
            attrs,
            links,
        )

    def _build_finding(self, rec: tuple[Any, ...], offset: int, spans: list[SpanData]) -> None:
        _, event, fields, ctx, span_request, t_now = rec
        out = dict(fields)
        out.setdefault("timestamp", iso_timestamp(t_now + offset))
        trace_id, span_id = self._parent(ctx)
        if span_request is not None:
            name, attrs, contexts, t_start = span_request
            links: list[tuple[int, int, dict[str, Any]]] = []
            for linked in contexts:
                link_trace, link_span = self._parent(linked)
                if link_trace:
                    links.append((link_trace, link_span, {}))
            span = self._make_span(
                name, None, dict(attrs), t_start + offset, t_now + offset, None, links
            )
            spans.append(span)
            trace_id, span_id = span.trace_id, span.span_id
        if trace_id:
            out["trace_id"] = f"{trace_id:032x}"
            out["span_id"] = f"{span_id:016x}"
        level = out.pop("level", "error")
        getattr(self._log, level if level in ("info", "warning", "error") else "error")(
            event, **out
        )

    # -- metrics ---------------------------------------------------------------

    def metrics_now(self) -> Any:
        """The metric data now (any thread: a pull exporter's scrape)."""
        return build_metrics_data(self.resource, self.scope, self._start_ns, self._exemplars)

    def export_metrics(self) -> None:
        """Offer the metric data now to every lane that takes metrics."""
        if not self._metric_lanes:
            return
        data = self.metrics_now()
        for lane in self._metric_lanes:
            lane.offer_metrics(data)


def telemetry_counts() -> dict[str, Any]:
    """This process's record counts now, as the exit summary gives them:
    ``produced``, ``dropped``, ``suppressed`` (the shared buffer) and
    ``exporters``: ``{name: {"offered", "exported", "lane_dropped", "failed"}}``
    for every exporter that took records (see :mod:`tracedsync.exporters.lanes`).
    Final once the pipeline has stopped."""
    acc = recorder.accounting
    return {
        "produced": acc.produced,
        "dropped": acc.dropped,
        "suppressed": acc.suppressed,
        "exporters": lanes_module.record_totals(),
    }


class _FlushAsk:
    """A ``flush()`` call waiting for the pipeline thread to offer what is
    buffered: then ``request`` is the lanes' flush to wait for."""

    def __init__(self) -> None:
        self.offered = _stdlib.Event()
        self.request: FlushRequest | None = None


def _ident(thread: threading.Thread | None) -> int | None:
    return thread.ident if thread is not None else None


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
    except Exception:
        pass


# -- metrics ------------------------------------------------------------------

_LOCK_KINDS = recorder.LOCK_KINDS


def _hist_min(buckets: Sequence[int]) -> float:
    """The lower bound of the first non-empty bucket (0 for the first)."""
    for i, count in enumerate(buckets):
        if count:
            return 0.0 if i == 0 else recorder.HISTOGRAM_BOUNDS[i - 1]
    return 0.0


def build_metrics_data(
    resource: Resource,
    scope_: InstrumentationScope,
    start_ns: int,
    exemplars: Exemplars | None = None,
) -> Any:
    """Cumulative metrics of every primitive, straight from the counters.

    Sums ``tracedsync.acquisitions``, ``.contentions``, ``.timeouts``,
    ``.wait.time``, ``.hold.time`` and histograms ``tracedsync.wait.duration``
    (with ``exemplars``' waits on its buckets), ``.hold.duration`` (seconds),
    each point with ``sync.kind`` and ``sync.name``; plus the record
    accounting: ``tracedsync.telemetry.produced``, ``.dropped``,
    ``.suppressed`` (the shared buffer) and, with an ``exporter`` attribute
    for each exporter that takes records, ``.offered``, ``.exported``,
    ``.lane_dropped``, ``.failed``.
    """

    now = time.time_ns()
    cumulative = AggregationTemporality.CUMULATIVE
    points: dict[str, list[Any]] = {}
    hists: dict[str, list[Any]] = {"tracedsync.wait.duration": [], "tracedsync.hold.duration": []}

    def add(metric: str, attrs: dict[str, Any], value: int | float) -> None:
        points.setdefault(metric, []).append(
            NumberDataPoint(
                attributes=attrs,
                start_time_unix_nano=start_ns,
                time_unix_nano=now,
                value=value,
            )
        )

    def hist(
        metric: str,
        attrs: dict[str, Any],
        raw: list[int],
        total_ns: int,
        max_ns: int,
        examples: list[Any],
    ) -> None:
        buckets = recorder.fold_histogram(raw)
        count = sum(buckets)
        hists[metric].append(
            HistogramDataPoint(
                attributes=attrs,
                start_time_unix_nano=start_ns,
                time_unix_nano=now,
                count=count,
                sum=total_ns / 1e9,
                bucket_counts=list(buckets),
                explicit_bounds=list(recorder.HISTOGRAM_BOUNDS),
                min=_hist_min(buckets),
                max=max_ns / 1e9,
                exemplars=examples,
            )
        )

    for (kind, name), c in sorted(recorder.aggregated_counters().items()):
        attrs = {"sync.kind": kind, "sync.name": name}
        lock_like = kind in _LOCK_KINDS
        if lock_like:
            add("tracedsync.acquisitions", attrs, c.acquisitions)
        add("tracedsync.contentions", attrs, c.contentions)
        add("tracedsync.timeouts", attrs, c.timeouts)
        add("tracedsync.wait.time", attrs, c.wait_sum / 1e9)
        examples = exemplars.sdk_exemplars(kind, name) if exemplars is not None else []
        hist("tracedsync.wait.duration", attrs, c.wait_hist, c.wait_sum, c.wait_max, examples)
        if lock_like:
            add("tracedsync.hold.time", attrs, c.hold_sum / 1e9)
            hist("tracedsync.hold.duration", attrs, c.hold_hist, c.hold_sum, c.hold_max, [])
    acc = recorder.accounting
    for metric, value in (
        ("tracedsync.telemetry.produced", acc.produced),
        ("tracedsync.telemetry.dropped", acc.dropped),
        ("tracedsync.telemetry.suppressed", acc.suppressed),
    ):
        add(metric, {}, value)
    for exporter, counts in sorted(lanes_module.record_totals().items()):
        for field_name in ("offered", "exported", "lane_dropped", "failed"):
            add(f"tracedsync.telemetry.{field_name}", {"exporter": exporter}, counts[field_name])

    units = {"tracedsync.wait.time": "s", "tracedsync.hold.time": "s"}
    descriptions = {
        "tracedsync.acquisitions": "Successful acquisitions (re-entries excluded)",
        "tracedsync.contentions": "Acquisitions or waits that had to block",
        "tracedsync.timeouts": "Blocking calls that timed out",
        "tracedsync.wait.time": "Time spent blocked",
        "tracedsync.hold.time": "Time held",
        "tracedsync.wait.duration": "Blocked time per acquisition or wait",
        "tracedsync.hold.duration": "Held time per acquisition",
        "tracedsync.telemetry.produced": "Records produced by the recorder",
        "tracedsync.telemetry.dropped": "Records dropped because the shared buffer was full",
        "tracedsync.telemetry.suppressed": "Spans suppressed by max_spans_per_second",
        "tracedsync.telemetry.offered": "Records offered to an exporter's lane",
        "tracedsync.telemetry.exported": "Records an exporter delivered",
        "tracedsync.telemetry.lane_dropped": "Records dropped because an exporter's lane was full",
        "tracedsync.telemetry.failed": "Records whose export failed or was given up at shutdown",
    }
    metrics = []
    for metric, data_points in points.items():
        metrics.append(
            Metric(
                name=metric,
                description=descriptions.get(metric, ""),
                unit=units.get(metric, "1"),
                data=Sum(
                    data_points=data_points,
                    aggregation_temporality=cumulative,
                    is_monotonic=True,
                ),
            )
        )
    for metric, data_points in hists.items():
        if data_points:
            metrics.append(
                Metric(
                    name=metric,
                    description=descriptions[metric],
                    unit="s",
                    data=Histogram(data_points=data_points, aggregation_temporality=cumulative),
                )
            )
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=scope_, metrics=metrics, schema_url="")],
                schema_url="",
            )
        ]
    )


# -- metrics through an application's MeterProvider -------------------------------

_observed_providers: dict[int, list[bool]] = {}


def observe_with_meter_provider(meter_provider: Any, version: str) -> Callable[[], None]:
    """Report the counters through ``meter_provider`` as observable counters.

    For ``configure(meter_provider=...)``: the provider's own reader polls
    ``tracedsync.acquisitions``, ``.contentions``, ``.timeouts``,
    ``.wait.time`` and ``.hold.time``, by ``sync.kind`` and ``sync.name``.
    The metrics API has no observable histogram, so the wait and hold
    histograms cannot go this way: they go to tracedsync's own metric
    exporters (which is how ``opentelemetry-instrument`` is served, see
    ``tracedsync.instrumentation``). Returns a function that stops the
    reporting (instruments cannot be unregistered).
    """
    from opentelemetry.metrics import CallbackOptions, Observation

    active = [True]
    meter = meter_provider.get_meter(SCOPE_NAME, version)

    def observer(field: str, scale: float, lock_only: bool) -> Callable[[CallbackOptions], Any]:
        def callback(options: CallbackOptions) -> list[Observation]:
            if not active[0]:
                return []
            out = []
            for (kind, name), c in recorder.aggregated_counters().items():
                if lock_only and kind not in _LOCK_KINDS:
                    continue
                value = getattr(c, field)
                out.append(
                    Observation(
                        value * scale if scale != 1 else value,
                        {"sync.kind": kind, "sync.name": name},
                    )
                )
            return out

        return callback

    for metric, field, scale, unit, lock_only in (
        ("tracedsync.acquisitions", "acquisitions", 1, "1", True),
        ("tracedsync.contentions", "contentions", 1, "1", False),
        ("tracedsync.timeouts", "timeouts", 1, "1", False),
        ("tracedsync.wait.time", "wait_sum", 1e-9, "s", False),
        ("tracedsync.hold.time", "hold_sum", 1e-9, "s", True),
    ):
        meter.create_observable_counter(
            metric, callbacks=[observer(field, scale, lock_only)], unit=unit
        )

    def stop() -> None:
        active[0] = False

    return stop
