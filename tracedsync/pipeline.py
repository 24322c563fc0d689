"""The pipeline thread: records in, spans, log events and metrics out.

One internal daemon thread per process drains the recorder's buffer, turns
records into spans (explicit start and end times, parent = the context that
was current in the app thread) and structlog events, builds metrics directly
from the primitives' counters, and calls every exporter itself. Every lock
that exporting touches is therefore taken on this thread, which is marked
internal: nothing it does is recorded.
"""

from __future__ import annotations

import contextvars
import importlib.metadata  # noqa: F401 - see below
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
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

from tracedsync import _settings, _stdlib, _threads, budget, records, registry
from tracedsync.counters import HISTOGRAM_BOUNDS, fold_histogram
from tracedsync.describe import iso_timestamp
from tracedsync.events import Collector, make_logger
from tracedsync.exporters.base import Exporter, LogEvent, SpanData
from tracedsync.spans import SCOPE_NAME, SpanBuilder, blocked_gauges

# structlog's module __getattr__ imports importlib.metadata on any unknown
# attribute (hasattr(structlog, "x") included): imported here, it cannot
# change sys.modules later under a program that iterates it (CPython's
# regrtest does, checking __warningregistry__ on every module).

#: What ``stop`` keeps of its timeout to abort a hanging export and join.
_ABORT_RESERVE_S = 0.5


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


class Pipeline:
    """Drains the recorder's buffer on an internal thread and exports."""

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
        from tracedsync.exporters.sdk import to_readable_span

        span = SpanData("warm-up", 1, 1, 0, 1, 2, {"k": 1, "f": 1.0}, [(1, 1, {})])
        otlp_json.encode_spans([span], self.resource, self.scope)
        to_readable_span(span, self.resource, self.scope)
        otlp_json.encode_metrics(build_metrics_data(self.resource, self.scope, self._start_ns))
        self._log.info("warm-up", timestamp=iso_timestamp(time.time_ns()))
        otlp_json.encode_log(self._collector.events.pop())
        self._spans.parent(otel_context.get_current())

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
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
        """Export everything recorded so far; False if that took too long."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        if threading.get_ident() == thread.ident:
            return False
        done = _stdlib.Event()
        self._flush_requests.append(done)
        self._wake.set()
        return bool(done.wait(timeout_s))

    def stop(self, timeout_s: float) -> bool:
        """Flush, shut the exporters down and end the thread (bounded).

        An export still running when the timeout is about to run out (an
        OTLP exporter retrying against a collector that is down) is aborted,
        so its records are counted failed and the thread ends in time. A
        thread that outlives even that is abandoned: it never takes another
        record from the buffer, which the next pipeline owns, and what it
        still exports is not counted (``config`` counts it lost).
        """
        _settings.update(recording=False)
        thread = self._thread
        if thread is None:
            return True
        self._stopping = True
        self._wake.set()
        if threading.get_ident() != thread.ident:
            reserve = min(_ABORT_RESERVE_S, timeout_s / 4)
            thread.join(timeout_s - reserve)
            if thread.is_alive():
                for sink in self.sinks:
                    try:
                        sink.abort()
                    except Exception:
                        pass
                thread.join(reserve)
        if thread.is_alive():
            # An exporter is stuck: leave the (daemon) thread behind; what it
            # still exports is no longer counted (the caller counts it lost),
            # and it takes no more records (the next pipeline's).
            self._abandoned = True
            return False
        return True

    # -- the loop ------------------------------------------------------------

    def _run(self) -> None:
        _threads.mark_internal()
        try:
            while True:
                self._wake.wait(self.poll_interval_s)
                self._wake.clear()
                requests = []
                while self._flush_requests:
                    requests.append(self._flush_requests.popleft())
                stopping = self._stopping
                final = stopping or bool(requests)
                self._guarded(self._cycle, final)
                for work in self.extra_work:
                    self._guarded(work)
                now = time.monotonic()
                if self.metrics_enabled and (
                    final or now - self._last_metrics >= self.metric_interval_s
                ):
                    self._last_metrics = now
                    self._guarded(self.export_metrics)
                if final:
                    for sink in self.sinks:
                        self._call(sink, "flush", sink.flush, 1.0)
                for done in requests:
                    done.set()
                if stopping:
                    break
        finally:
            # Failures noticed in the last cycle still deserve their event.
            if self._collector.events:
                late, self._collector.events = self._collector.events, []
                self._guarded(self._deliver, [], late)
            # Exporters made from names are ours to shut down; objects the user
            # passed in stay theirs (they may hand them to configure() again).
            for sink in self.sinks:
                if sink.owned:
                    self._call(sink, "shutdown", sink.shutdown, 2.0)
                else:
                    self._call(sink, "flush", sink.flush, 2.0)
            while self._flush_requests:
                self._flush_requests.popleft().set()
            _threads.unmark_internal()

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a bug of ours must not stop the thread
            self._note_failure("pipeline", exc)

    def _cycle(self, final: bool) -> None:
        with registry.stats_lock:
            budget.close_expired(time.monotonic_ns())
        registry.fold_collected()
        taken = [] if self._abandoned else records.take_all()
        offset = time.time_ns() - time.monotonic_ns()
        for start in range(0, len(taken), BATCH_RECORDS):
            self._batch(taken[start : start + BATCH_RECORDS], offset, [])
        # Waits whose hold never came, drop reports, failure events: last.
        spans = self._spans.due_pending(final)
        if final:
            self._guarded(self._spans.unfinished, offset, spans if self._stopping else None)
        self._batch([], offset, spans)
        # Failure events found while delivering go out with the next cycle.

    def _batch(self, batch: list[records.Record], offset: int, spans: list[SpanData]) -> None:
        """Turn ``batch`` into spans and events and deliver them with ``spans``."""
        build = self._spans.build
        for rec in batch:
            try:
                build(rec, offset, spans)
            except Exception as exc:
                self._note_failure("pipeline", exc)
        logs: list[LogEvent] = self._collector.events
        self._collector.events = []
        self._report_drops(logs)
        ok = self._deliver(spans, logs)
        if batch and not self._abandoned:
            if ok:
                records.accounting.exported += len(batch)
            else:
                records.accounting.failed += len(batch)

    def _deliver(self, spans: list[SpanData], logs: list[LogEvent]) -> bool:
        ok = True
        if spans:
            for sink in self._span_sinks:
                ok = self._call(sink, "spans", sink.export_spans, spans) and ok
        if logs:
            for sink in self._log_sinks:
                ok = self._call(sink, "logs", sink.export_logs, logs) and ok
        return ok

    def _call(self, sink: Exporter, what: str, fn: Callable[..., None], arg: Any) -> bool:
        try:
            fn(arg)
            return True
        except Exception as exc:
            self._note_failure(sink.name, exc)
            return False

    def _note_failure(self, who: str, exc: BaseException) -> None:
        kind = type(exc).__name__
        self._failure_counts[who] = self._failure_counts.get(who, 0) + 1
        key = (who, kind)
        if key in self._failures_seen:
            return
        self._failures_seen.add(key)
        detail = _clean(str(exc))[:300]
        try:
            sys.stderr.write(
                f"tracedsync: exporter {who} failed: {kind}: {detail} "
                "(further failures of this kind are counted, not shown)\n"
            )
        except Exception:
            pass
        self._log.error(
            "exporter_failed",
            exporter=who,
            error=kind,
            detail=detail,
            timestamp=iso_timestamp(time.time_ns()),
        )

    @property
    def failure_counts(self) -> dict[str, int]:
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
            logs.extend(self._collector.events)
            self._collector.events = []

    # -- metrics ---------------------------------------------------------------

    def export_metrics(self) -> None:
        if not self._metric_sinks:
            return
        data = build_metrics_data(self.resource, self.scope, self._start_ns)
        for sink in self._metric_sinks:
            self._call(sink, "metrics", sink.export_metrics, data)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


# -- metrics ------------------------------------------------------------------

_LOCK_KINDS = registry.LOCK_KINDS


def _hist_min(buckets: Sequence[int]) -> float:
    """The lower bound of the first non-empty bucket (0 for the first)."""
    for i, count in enumerate(buckets):
        if count:
            return 0.0 if i == 0 else HISTOGRAM_BOUNDS[i - 1]
    return 0.0


def build_metrics_data(resource: Resource, scope_: InstrumentationScope, start_ns: int) -> Any:
    """Cumulative metrics of every primitive, straight from the counters.

    Sums ``tracedsync.acquisitions``, ``.contentions``, ``.timeouts``,
    ``.wait.time``, ``.hold.time`` and histograms ``tracedsync.wait.duration``,
    ``.hold.duration`` (seconds), each point with ``sync.kind`` and
    ``sync.name``; plus the pipeline's own record accounting.
    """

    now = time.time_ns()
    cumulative = AggregationTemporality.CUMULATIVE
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
        metric: str, attrs: dict[str, Any], raw: list[int], total_ns: int, max_ns: int
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
            )
        )

    for (kind, name), c in sorted(registry.aggregated_counters().items()):
        attrs = {"sync.kind": kind, "sync.name": name}
        lock_like = kind in _LOCK_KINDS
        if lock_like:
            add("tracedsync.acquisitions", attrs, c.acquisitions)
        add("tracedsync.contentions", attrs, c.contentions)
        add("tracedsync.timeouts", attrs, c.timeouts)
        add("tracedsync.wait.time", attrs, c.wait_sum / 1e9)
        hist("tracedsync.wait.duration", attrs, c.wait_hist, c.wait_sum, c.wait_max)
        if lock_like:
            add("tracedsync.hold.time", attrs, c.hold_sum / 1e9)
            hist("tracedsync.hold.duration", attrs, c.hold_hist, c.hold_sum, c.hold_max)
    acc = records.accounting
    for (kind, name), (count, age) in sorted(blocked_gauges().items()):
        gauges.setdefault("tracedsync.waits.blocked", []).append(
            NumberDataPoint(
                attributes={"sync.kind": kind, "sync.name": name},
                start_time_unix_nano=start_ns,
                time_unix_nano=now,
                value=count,
            )
        )
        gauges.setdefault("tracedsync.waits.blocked.age", []).append(
            NumberDataPoint(
                attributes={"sync.kind": kind, "sync.name": name},
                start_time_unix_nano=start_ns,
                time_unix_nano=now,
                value=age,
            )
        )
    suppressed = sum(c.suppressed for c in registry.aggregated_counters().values())
    for metric, value in (
        ("tracedsync.telemetry.produced", acc.produced),
        ("tracedsync.telemetry.exported", acc.exported),
        ("tracedsync.telemetry.dropped", acc.dropped),
        ("tracedsync.telemetry.failed", acc.failed),
        ("tracedsync.telemetry.suppressed", suppressed),
    ):
        add(metric, {}, value)

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
        "tracedsync.telemetry.exported": "Records exported",
        "tracedsync.telemetry.dropped": "Records dropped because the buffer was full",
        "tracedsync.telemetry.failed": "Records whose export failed",
        "tracedsync.telemetry.suppressed": "Spans kept out by the per-second span budget",
        "tracedsync.waits.blocked": "Waits still blocked now (never in the sums)",
        "tracedsync.waits.blocked.age": "How long the oldest wait still blocked has waited",
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

    For ``configure(meter_provider=...)`` (and ``opentelemetry-instrument``):
    the provider's own reader polls ``tracedsync.acquisitions``,
    ``.contentions``, ``.timeouts``, ``.wait.time`` and ``.hold.time``, by
    ``sync.kind`` and ``sync.name``. Histograms cannot be observed through
    the metrics API; they go to tracedsync's own metric exporters. Returns a
    function that stops the reporting (instruments cannot be unregistered).
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
