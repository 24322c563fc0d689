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
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tracedsync import _settings, _stdlib, _threads, budget, records, registry, summary
from tracedsync._format import clean
from tracedsync.counters import HISTOGRAM_BOUNDS, fold_histogram
from tracedsync.describe import iso_timestamp
from tracedsync.events import Collector, make_logger
from tracedsync.exporters import lanes as lanes_module
from tracedsync.exporters.base import (
    Exporter,
    LogEvent,
    SpanData,
    describe_failure,
)
from tracedsync.exporters.exemplars import Exemplars
from tracedsync.exporters.lanes import Batch, FlushRequest, Lane
from tracedsync.exporters.model import (
    AGGREGATION_TEMPORALITY_CUMULATIVE,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Resource,
    ResourceMetrics,
    Scope,
    ScopeMetrics,
    Sum,
)
from tracedsync.kinds import LOCK_KINDS
from tracedsync.spans import SCOPE_NAME, SpanBuilder, blocked_gauges

#: Set (to 1) by ``tracedsync run`` unless ``--quiet``.
ALERTS_VARIABLE = "TRACEDSYNC_ALERTS"
#: What ``stop`` keeps of its timeout to abort a hanging export and join.
_ABORT_RESERVE_S = 0.5
#: What the pipeline thread leaves ``stop`` to close the lanes after draining.
_DRAIN_MARGIN_S = 0.05


def scope(version: str) -> Scope:
    return Scope(SCOPE_NAME, version)


#: The OpenTelemetry API modules whose current context is read, and the
#: contextvars runtime's; tracedsync never imports them itself (an app
#: that never imported OpenTelemetry has no current span to parent to).
_OTEL_CONTEXT = "opentelemetry.context"
_OTEL_CONTEXTVARS = "opentelemetry.context.contextvars_context"


def context_getter() -> Callable[[], Any]:
    """What the recorder calls for the app thread's current context.

    Until the program has imported ``opentelemetry.context`` there is no
    context to read: :func:`_until_imported` looks for the module in
    ``sys.modules`` (one ``in`` test, no import) and returns None. Once the
    module is there (imported before or after tracedsync was configured),
    it is read with :func:`_reader_of`, which ``_until_imported`` also plugs
    into the recorder (``records.replace_context``), so the test stops.
    """
    otel = sys.modules.get(_OTEL_CONTEXT)
    if otel is not None and _loaded(otel):
        return _reader_of(otel)
    return _until_imported


_modules = sys.modules


def _until_imported() -> Any:
    # On the record path (every threshold crossing): the test costs about
    # what the ContextVar.get it stands in for does.
    if "opentelemetry.context" not in _modules:
        return None
    otel = _modules.get(_OTEL_CONTEXT)
    if otel is None or not _loaded(otel):
        return None
    reader = _reader_of(otel)
    records.replace_context(_until_imported, reader)
    return reader()


def _loaded(otel_context: Any) -> bool:
    """``opentelemetry.context`` has finished importing (another thread may
    be in the middle of its import: the import system's own test)."""
    initializing = getattr(getattr(otel_context, "__spec__", None), "_initializing", False)
    return not initializing and hasattr(otel_context, "get_current")


def _reader_of(otel_context: Any) -> Callable[[], Any]:
    """``opentelemetry.context.get_current``, or, when OpenTelemetry runs its
    default contextvars runtime, the ``ContextVar.get`` that it ends in (two
    Python calls fewer on every recorded event)."""
    try:
        contextvars_module = sys.modules.get(_OTEL_CONTEXTVARS)
        runtime_type = getattr(contextvars_module, "ContextVarsRuntimeContext", None)
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        var = getattr(runtime, "_current_context", None)
        if (
            runtime_type is not None
            and type(runtime) is runtime_type
            and isinstance(var, contextvars.ContextVar)
        ):
            return var.get
    except Exception:
        pass
    get_current: Callable[[], Any] = otel_context.get_current
    return get_current


_SERVICE_NAME = "service.name"


def build_resource(run_id: str, environ: Any = None) -> Resource:
    """The resource of this process's telemetry: the attributes
    ``OTEL_RESOURCE_ATTRIBUTES`` gives (``key=value`` pairs separated by
    commas, values percent-decoded, as the OpenTelemetry SDK reads them),
    ``service.name`` from ``OTEL_SERVICE_NAME`` over them, else
    ``unknown_service:<executable>``, plus the process id and the tracedsync
    run id. The OpenTelemetry SDK is not needed for it: an SDK exporter's
    resource is made from this one (``tracedsync.exporters.sdk.sdk_resource``,
    which adds the SDK's ``telemetry.sdk.*`` and its detectors').
    """
    env = os.environ if environ is None else environ
    attrs: dict[str, Any] = {}
    for item in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            _stderr(
                f"tracedsync: OTEL_RESOURCE_ATTRIBUTES: {item.strip()!r} is not key=value; "
                "left out of the resource"
            )
            continue
        value = value.strip()
        if "%" in value:
            from urllib.parse import unquote

            value = unquote(value)
        attrs[key.strip()] = value
    service = env.get("OTEL_SERVICE_NAME")
    if service:
        attrs[_SERVICE_NAME] = service
    defaulted: frozenset[str] = frozenset()
    if not attrs.get(_SERVICE_NAME):
        executable = os.path.basename(sys.executable) if sys.executable else ""
        attrs[_SERVICE_NAME] = f"unknown_service:{executable}" if executable else "unknown_service"
        defaulted = frozenset((_SERVICE_NAME,))
    attrs["process.pid"] = os.getpid()
    attrs["tracedsync.run_id"] = run_id
    return Resource(attrs, defaulted=defaulted)


#: Records turned into spans and delivered at a time: what one exporter call
#: gets (the OpenTelemetry SDK's batch size), and few enough that a batch's
#: objects die young. Building a whole buffer of spans before exporting kept
#: them alive into the older GC generations: a third of the pipeline's time.
BATCH_RECORDS = 512


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
        self._taken_at_start = records.accounting.taken
        self._failures_lock = _stdlib.allocate_lock()
        #: (exporter, error kind, detail, epoch ns) noted by any thread, made
        #: into exporter_failed events by the pipeline thread.
        self._failure_notes: deque[tuple[str, str, str, int]] = deque()
        #: The latest wait span per primitive and wait bucket (metrics' exemplars).
        self._exemplars = Exemplars()
        #: Under ``tracedsync run`` (not ``--quiet``): a line per finding on
        #: stderr, unless the console exporter prints it already.
        self._alerts = os.environ.get(ALERTS_VARIABLE) == "1" and not any(
            sink.name == "console" for sink in self.sinks
        )
        for sink in self.sinks:
            sink.set_metrics_source(self.metrics_now)
        self._wake = _stdlib.Event()
        self._flush_requests: deque[Any] = deque()
        self._stopping = False
        self._abandoned = False
        self._thread: threading.Thread | None = None
        #: What the recorder calls for the program thread's current context.
        self.context_reader = context_getter()
        self._collector = Collector()
        self._log = make_logger(self._collector)
        self._spans = SpanBuilder(self._log, version, tracer_provider)
        self._spans.logs_wanted = bool(self._log_sinks)
        self._spans.on_wait = self._exemplars.offer
        self._failures_seen: set[tuple[str, str]] = set()
        self._failure_counts: dict[str, int] = {}
        # Accounting is per process: report only the drops from now on.
        self._dropped_reported = records.accounting.dropped
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

        span = SpanData("warm-up", 1, 1, 0, 1, 2, {"k": 1, "f": 1.0}, [(1, 1, {})])
        otlp_json.encode_spans([span], self.resource, self.scope)
        metrics = self.metrics_now()
        otlp_json.encode_metrics(metrics)
        # The SDK adapters' conversions, when an SDK exporter is configured
        # (the module is imported only then).
        sdk = sys.modules.get("tracedsync.exporters.sdk")
        if sdk is not None:
            sdk.warm_up(span, metrics, self.resource, self.scope)
        self._log.info("warm-up", timestamp=iso_timestamp(time.time_ns()))
        otlp_json.encode_log(self._collector.events.pop())
        self._spans.parent(self.context_reader())

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
        records.connect(self.wakeup, self.context_reader)
        _settings.update(recording=True)

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
        _settings.update(recording=False)
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
                taken = records.accounting.taken - self._taken_at_start
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
        _threads.mark_internal()
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
            _threads.unmark_internal()

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
        budget.close_expired(time.monotonic_ns())
        registry.fold_collected()
        taken = [] if self._abandoned else records.take_all()
        offset = time.time_ns() - time.monotonic_ns()
        for start in range(0, len(taken), BATCH_RECORDS):
            self._batch(taken[start : start + BATCH_RECORDS], offset, [])
        # Waits whose hold never came, waits still blocked, drop reports,
        # failure events: last.
        spans = self._spans.due_pending(final)
        if final:
            self._guarded(self._spans.unfinished, offset, spans if self._stopping else None)
        self._batch([], offset, spans)

    def _batch(self, batch: list[records.Record], offset: int, spans: list[SpanData]) -> None:
        """Turn ``batch`` into spans and events and offer them with ``spans``."""
        build = self._spans.build
        for rec in batch:
            try:
                build(rec, offset, spans)
            except Exception as exc:
                self._note_failure("pipeline", exc)
        logs: list[LogEvent] = self._collector.events
        self._collector.events = []
        self._take_failure_notes(logs)
        self._report_drops(logs)
        if logs:
            summary.note(logs)
            if self._alerts:
                self._alert(logs)
        if not self._abandoned:
            self._deliver(Batch(len(batch), spans, logs))

    def _alert(self, logs: list[LogEvent]) -> None:
        """Under ``tracedsync run``: one line on stderr per finding, when it
        happens (the console exporter prints them itself)."""
        for event in logs:
            if event.get("event") in summary.FINDING_EVENTS:  # a live alert
                _stderr(f"tracedsync: {clean(str(event.get('message') or event.get('event')))}")

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
        acc = records.accounting
        capacity = _settings.current.buffer_capacity
        if acc.dropped > self._dropped_reported:
            new = acc.dropped - self._dropped_reported
            self._dropped_reported = acc.dropped
            self._log.warning(
                "telemetry_dropped",
                dropped=new,
                dropped_total=acc.dropped,
                produced_total=acc.produced,
                buffer_size=capacity,
                timestamp=iso_timestamp(time.time_ns()),
                message=(
                    f"tracedsync dropped {new} records (buffer of "
                    f"{capacity} full; {acc.dropped} in all)"
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

    # -- metrics ---------------------------------------------------------------

    def metrics_now(self) -> MetricsData:
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
    acc = records.accounting
    return {
        "produced": acc.produced,
        "dropped": acc.dropped,
        "suppressed": suppressed_total(),
        "exporters": lanes_module.record_totals(),
    }


def suppressed_total() -> int:
    """Spans the budget kept out, every primitive's (live or collected) summed."""
    return sum(c.suppressed for c in registry.aggregated_counters().values())


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


def _hist_min(buckets: Sequence[int]) -> float:
    """The lower bound of the first non-empty bucket (0 for the first)."""
    for i, count in enumerate(buckets):
        if count:
            return 0.0 if i == 0 else HISTOGRAM_BOUNDS[i - 1]
    return 0.0


def build_metrics_data(
    resource: Resource,
    scope_: Scope,
    start_ns: int,
    exemplars: Exemplars | None = None,
) -> MetricsData:
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
    cumulative = AGGREGATION_TEMPORALITY_CUMULATIVE
    points: dict[str, list[Any]] = {}
    hists: dict[str, list[Any]] = {"tracedsync.wait.duration": [], "tracedsync.hold.duration": []}
    gauges: dict[str, list[Any]] = {}

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
        buckets = fold_histogram(raw)
        count = sum(buckets)
        hists[metric].append(
            HistogramDataPoint(
                attributes=attrs,
                start_time_unix_nano=start_ns,
                time_unix_nano=now,
                count=count,
                sum=total_ns / 1e9,
                bucket_counts=list(buckets),
                explicit_bounds=list(HISTOGRAM_BOUNDS),
                min=_hist_min(buckets),
                max=max_ns / 1e9,
                exemplars=examples,
            )
        )

    for (kind, name), c in sorted(registry.aggregated_counters().items()):
        attrs = {"sync.kind": kind, "sync.name": name}
        lock_like = kind in LOCK_KINDS
        if lock_like:
            add("tracedsync.acquisitions", attrs, c.acquisitions)
        add("tracedsync.contentions", attrs, c.contentions)
        add("tracedsync.timeouts", attrs, c.timeouts)
        add("tracedsync.wait.time", attrs, c.wait_sum / 1e9)
        examples = exemplars.data_exemplars(kind, name) if exemplars is not None else []
        hist("tracedsync.wait.duration", attrs, c.wait_hist, c.wait_sum, c.wait_max, examples)
        if lock_like:
            add("tracedsync.hold.time", attrs, c.hold_sum / 1e9)
            hist("tracedsync.hold.duration", attrs, c.hold_hist, c.hold_sum, c.hold_max, [])
    for (kind, name), (count, age) in sorted(blocked_gauges().items()):
        attrs = {"sync.kind": kind, "sync.name": name}
        for metric, value in (
            ("tracedsync.waits.blocked", count),
            ("tracedsync.waits.blocked.age", age),
        ):
            gauges.setdefault(metric, []).append(
                NumberDataPoint(
                    attributes=attrs,
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now,
                    value=value,
                )
            )
    acc = records.accounting
    for metric, value in (
        ("tracedsync.telemetry.produced", acc.produced),
        ("tracedsync.telemetry.dropped", acc.dropped),
        ("tracedsync.telemetry.suppressed", suppressed_total()),
    ):
        add(metric, {}, value)
    for exporter, counts in sorted(lanes_module.record_totals().items()):
        for field_name in ("offered", "exported", "lane_dropped", "failed"):
            add(f"tracedsync.telemetry.{field_name}", {"exporter": exporter}, counts[field_name])

    units = {
        "tracedsync.wait.time": "s",
        "tracedsync.hold.time": "s",
        "tracedsync.waits.blocked.age": "s",
    }
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
        "tracedsync.telemetry.suppressed": "Spans kept out by the per-second span budget",
        "tracedsync.waits.blocked": "Waits still blocked now (never in the sums)",
        "tracedsync.waits.blocked.age": "How long the oldest wait still blocked has waited",
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
    for metric, data_points in gauges.items():
        metrics.append(
            Metric(
                name=metric,
                description=descriptions[metric],
                unit=units.get(metric, "1"),
                data=Gauge(data_points=data_points),
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
            for (kind, name), c in registry.aggregated_counters().items():
                if lock_only and kind not in LOCK_KINDS:
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
