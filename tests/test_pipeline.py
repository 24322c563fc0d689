"""The pipeline: records become spans and log events, nothing is lost silently."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tests import helpers
from tests.helpers import HOLDER_SITES, Contention
from tests.telemetry_counts import counted
from tracedsync import _threads, lifecycle, records
from tracedsync.exporters import Exporter, lanes
from tracedsync.exporters.console import ConsoleExporter
from tracedsync.testing import LogCollector, blocked_on, run_threads, wait_until

HERE = os.path.abspath(__file__)


def by_name(exporter: InMemorySpanExporter, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_wait_span_is_child_of_callers_span_with_given_provider() -> None:
    """With tracer_provider=, the wait span goes there, parented to the app's span."""
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracedsync.configure(tracer_provider=provider)
    tracer = provider.get_tracer("app")
    lock = tracedsync.Lock()

    def in_request(fn: Callable[[], None]) -> None:
        with tracer.start_as_current_span("request"):
            fn()

    Contention(lock).run(in_request)
    assert tracedsync.flush(10)
    (request,) = by_name(mem, "request")
    (wait,) = by_name(mem, "lock.wait")
    assert wait.parent is not None
    assert wait.parent.span_id == request.context.span_id
    assert wait.context.trace_id == request.context.trace_id
    assert wait.instrumentation_scope.name == "tracedsync"


def test_wait_span_joins_app_trace_with_own_provider(spans: InMemorySpanExporter) -> None:
    """tracedsync's own provider: the app's span is still the parent (shared context),
    and the app's spans never reach tracedsync's exporters."""
    app_mem = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_mem))
    tracer = app_provider.get_tracer("app")
    tracedsync.configure(exporters=[spans])
    lock = tracedsync.Lock()

    def in_request(fn: Callable[[], None]) -> None:
        with tracer.start_as_current_span("request"):
            fn()

    Contention(lock).run(in_request)
    assert tracedsync.flush(10)
    (request,) = by_name(app_mem, "request")
    (wait,) = by_name(spans, "lock.wait")
    assert wait.parent.span_id == request.context.span_id
    assert wait.context.trace_id == request.context.trace_id
    assert not by_name(spans, "request")
    assert not [s for s in app_mem.get_finished_spans() if s.name.startswith("lock.")]


def test_wait_span_attributes_and_link_to_hold(spans: InMemorySpanExporter) -> None:
    """A wait span names the lock, thread, call site and holder, and links to the
    holder's hold span, which is emitted although under the hold threshold."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=60_000)
    pool_lock = tracedsync.Lock()
    c = Contention(pool_lock)
    c.run()
    assert tracedsync.flush(10)
    (wait,) = by_name(spans, "lock.wait")
    (hold,) = by_name(spans, "lock.hold")
    a = wait.attributes
    assert a["sync.kind"] == "lock"
    assert a["sync.name"] == pool_lock.name
    assert a["sync.id"] == pool_lock.id
    assert a["sync.outcome"] == "acquired"
    assert a["thread.name"] == "waiter"
    assert a["code.function.name"] == "acquire"
    assert a["code.file.path"] == helpers.__file__
    assert a["code.line.number"] == c.acquire_line
    assert a["sync.holder.thread.name"] == "holder"
    assert a["sync.holder.site"] in HOLDER_SITES
    assert [link.context.span_id for link in wait.links] == [hold.context.span_id]
    assert wait.links[0].context.trace_id == hold.context.trace_id
    assert hold.attributes["thread.name"] == "holder"
    assert hold.attributes["code.function.name"] == "holder"


def test_wait_duration_matches_the_real_wait(spans: InMemorySpanExporter) -> None:
    """The span's start and end times bracket the wait the app really had."""
    tracedsync.configure(exporters=[spans])
    c = Contention(tracedsync.Lock(), extra_hold=0.05)
    c.run()
    assert tracedsync.flush(10)
    (wait,) = by_name(spans, "lock.wait")
    span_ns = wait.end_time - wait.start_time
    assert span_ns >= 45_000_000
    assert abs(span_ns - c.measured_ns) < 5_000_000


@pytest.mark.parametrize(
    "make",
    [
        tracedsync.Lock,
        tracedsync.RLock,
        lambda: tracedsync.Semaphore(1),
        lambda: tracedsync.BoundedSemaphore(1),
    ],
    ids=["Lock", "RLock", "Semaphore", "BoundedSemaphore"],
)
def test_a_hold_starts_where_the_wait_that_led_to_it_ends(
    spans: InMemorySpanExporter, make: Any
) -> None:
    """The waiter's hold span starts at its wait span's end, to the nanosecond
    (one clock reading): in a timeline the hold never starts before the wait
    ends on the same thread."""
    tracedsync.configure(exporters=[spans], wait_threshold_ms=0, hold_threshold_ms=0)
    prim = make()
    prim.acquire()

    def waiter() -> None:
        with prim:
            pass

    t = threading.Thread(target=waiter, name="waiter")
    t.start()
    wait_until(blocked_on(prim))
    prim.release()
    t.join(10)
    assert not t.is_alive()
    assert tracedsync.flush(10)
    mine = [s for s in spans.get_finished_spans() if s.attributes["thread.name"] == "waiter"]
    (wait,) = [s for s in mine if s.name.endswith(".wait")]
    (hold,) = [s for s in mine if s.name.endswith(".hold")]
    assert hold.start_time == wait.end_time


def test_huge_names_are_cut_to_1_kib_and_marked(spans: InMemorySpanExporter) -> None:
    """A 100,000-character lock name or thread name reaches spans cut to
    1,024 characters, with how much was cut."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0)
    lock = tracedsync.Lock(name="L" * 100_000)

    def hold() -> None:
        with lock:
            pass

    run_threads(hold, names=["T" * 100_000])
    assert tracedsync.flush(10)
    (hold_span,) = by_name(spans, "lock.hold")
    for key, letter in (("sync.name", "L"), ("thread.name", "T")):
        value = hold_span.attributes[key]
        assert value.startswith(letter * 1024) and value[1024:] == "…[98,976 more characters cut]"


@pytest.mark.parametrize(
    "make",
    [tracedsync.Lock, tracedsync.RLock, lambda: tracedsync.Semaphore(1)],
    ids=["Lock", "RLock", "Semaphore"],
)
def test_timeout_span_outcome(spans: InMemorySpanExporter, make: Any) -> None:
    """A timed-out acquire gives a wait span with outcome timeout."""
    tracedsync.configure(exporters=[spans])
    prim = make()
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with prim:
            held.set()
            done.wait(10)

    t = threading.Thread(target=hold, name="holder")
    t.start()
    assert held.wait(10)
    assert prim.acquire(timeout=0.05) is False
    done.set()
    t.join(10)
    assert tracedsync.flush(10)
    kind = prim.kind
    (wait,) = by_name(spans, f"{kind}.wait")
    assert wait.attributes["sync.outcome"] == "timeout"
    assert wait.end_time - wait.start_time >= 45_000_000
    assert wait.attributes["sync.holder.thread.name"] == "holder"


def test_idle_wait_spans_and_outcomes(spans: InMemorySpanExporter) -> None:
    """Event, Condition and Barrier waits become spans with their outcomes."""
    tracedsync.configure(exporters=[spans])
    ev = tracedsync.Event()
    ev.wait(0.01)
    cond = tracedsync.Condition()
    with cond:
        cond.wait(0.01)
    barrier = tracedsync.Barrier(2)
    with pytest.raises(tracedsync.BrokenBarrierError):
        barrier.wait(0.01)
    setter_ready = threading.Event()

    def setter() -> None:
        setter_ready.wait(10)
        time.sleep(0.01)
        ev.set()

    def waiter() -> None:
        setter_ready.set()
        ev.wait(10)

    ev.clear()
    run_threads(setter, waiter)
    assert tracedsync.flush(10)
    outcomes = sorted(
        (s.name, s.attributes["sync.outcome"])
        for s in spans.get_finished_spans()
        if s.name.endswith(".wait")
    )
    assert outcomes == [
        ("barrier.wait", "timeout"),
        ("condition.wait", "timeout"),
        ("event.wait", "set"),
        ("event.wait", "timeout"),
    ]


def test_uncontended_operations_record_nothing(spans: InMemorySpanExporter) -> None:
    """Fast paths below the thresholds produce no record and no span."""
    # A hold threshold no hold can reach: on a loaded machine a thread
    # descheduled inside `with` holds for more than the default 10 ms.
    tracedsync.configure(exporters=[spans], hold_threshold_ms=60_000)
    lock, rlock, sem = tracedsync.Lock(), tracedsync.RLock(), tracedsync.Semaphore(2)
    produced = records.accounting.produced
    for _ in range(2000):
        with lock, rlock, rlock, sem:
            pass
    assert lock.acquire(False)
    lock.release()
    assert tracedsync.flush(10)
    assert records.accounting.produced == produced
    assert spans.get_finished_spans() == ()


def test_hold_span_above_threshold(spans: InMemorySpanExporter) -> None:
    """A hold at or above hold_threshold_ms becomes a span; shorter ones do not."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=20)
    lock = tracedsync.Lock()
    with lock:
        pass
    with lock:
        time.sleep(0.03)
    assert tracedsync.flush(10)
    (hold,) = by_name(spans, "lock.hold")
    assert hold.end_time - hold.start_time >= 20_000_000
    assert "sync.outcome" not in hold.attributes


def test_flush_exports_everything_and_accounts_exactly(spans: InMemorySpanExporter) -> None:
    """With thresholds at 0, every record reaches the exporter: per exporter,
    offered = produced - dropped = exported + lane_dropped + failed."""
    tracedsync.configure(
        exporters=[spans], wait_threshold_ms=0, hold_threshold_ms=0, max_spans_per_second=0
    )
    lock = tracedsync.Lock()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(300):
            with lock:
                pass

    with counted() as out:
        run_threads(*[work] * 4)
        assert tracedsync.flush(10)
    (c,) = out
    c.assert_exact()
    assert c.dropped == 0
    assert c.of("InMemorySpanExporter") == {
        "offered": c.produced,
        "exported": c.produced,
        "lane_dropped": 0,
        "failed": 0,
    }
    assert len(spans.get_finished_spans()) == c.produced
    assert c.produced >= 1200  # every hold, plus every contended wait


class _GatedExporter(Exporter):
    """A span exporter that blocks until ``gate`` is set."""

    name = "gated"
    wants_spans = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.count = 0

    def export_spans(self, spans: Any) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.count += len(spans)


class _PipelineGate:
    """Extra work that holds the pipeline thread itself (so the shared buffer
    fills): ``entered`` once it holds it, until ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self) -> None:
        if not self.gate.is_set():
            self.entered.set()
            self.gate.wait(30)

    def install(self) -> None:
        pipe = lifecycle.pipeline()
        assert pipe is not None
        pipe.extra_work.append(self)
        pipe.wakeup()
        assert self.entered.wait(10)


def test_full_buffer_drops_are_counted_and_reported(logs: LogCollector) -> None:
    """When the app outruns the pipeline, records are dropped at the shared buffer,
    counted there (no exporter attribute) and reported once."""
    tracedsync.configure(exporters=[logs], hold_threshold_ms=0, buffer_size=16)
    held = _PipelineGate()
    lock = tracedsync.Lock()
    with counted() as out:
        held.install()
        for _ in range(100):
            with lock:
                pass
        held.gate.set()
        assert tracedsync.flush(10)
    (c,) = out
    c.assert_exact()
    assert c.produced == 100
    assert c.dropped == 100 - 16
    assert c.of("collector") == {"offered": 16, "exported": 16, "lane_dropped": 0, "failed": 0}
    (event,) = logs.named("telemetry_dropped")
    assert event["dropped"] == c.dropped
    assert event["level"] == "warning"
    assert "exporter" not in event


def test_drops_are_reported_by_the_configuration_they_happened_in(
    logs: LogCollector,
) -> None:
    """Drops counted under one configuration are not reported again by the next one's
    pipeline (the record counts are per process, the reports per pipeline)."""
    tracedsync.configure(
        exporters=[_Taking(spans=True, logs=False)], hold_threshold_ms=0, buffer_size=16
    )
    held = _PipelineGate()
    dropped_before = records.accounting.dropped
    lock = tracedsync.Lock()
    held.install()
    for _ in range(40):
        with lock:
            pass
    held.gate.set()
    assert tracedsync.flush(10)
    assert records.accounting.dropped > dropped_before
    tracedsync.shutdown()

    tracedsync.configure(exporters=[logs], hold_threshold_ms=0)
    with lock:
        pass
    assert tracedsync.flush(10)
    assert logs.named("long_hold")
    assert logs.named("telemetry_dropped") == []


def test_a_full_lane_drops_only_its_own_records(
    logs: LogCollector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exporter that falls behind fills its own lane: its oldest batches are
    dropped and counted as its lane_dropped (reported once, naming it), while
    another exporter gets every record."""
    monkeypatch.setattr(lanes, "LANE_RECORDS", 8)
    gated = _GatedExporter()
    tracedsync.configure(exporters=[gated, logs], hold_threshold_ms=0, max_spans_per_second=0)
    lock = tracedsync.Lock(name="lane_filler")
    try:
        with counted() as out:
            with lock:
                pass
            tracedsync.flush(0.01)  # the gated lane takes that one record and blocks
            assert gated.entered.wait(10)
            for _ in range(5):
                for _ in range(4):
                    with lock:
                        pass
                tracedsync.flush(0.01)  # four records a batch: five batches, room for two
            assert not tracedsync.flush(0.5)  # the gated lane is still busy
            gated.gate.set()
            assert tracedsync.flush(10)
    finally:
        gated.gate.set()
    (c,) = out
    c.assert_exact()
    assert c.produced == 21
    assert c.of("gated") == {"offered": 21, "exported": 9, "lane_dropped": 12, "failed": 0}
    assert gated.count == 9
    assert c.of("collector")["exported"] == 21
    assert len([e for e in logs.named("long_hold") if e["sync.name"] == "lane_filler"]) == 21
    dropped = [e for e in logs.named("telemetry_dropped") if e.get("exporter") == "gated"]
    assert sum(e["dropped"] for e in dropped) == 12
    assert capsys.readouterr().err.count("exporter gated is falling behind") == 1


class _FailingExporter(Exporter):
    name = "failing"
    wants_spans = True

    def __init__(self) -> None:
        self.calls = 0

    def export_spans(self, spans: Any) -> None:
        self.calls += 1
        raise OSError(28, "No space left on device")


def test_failing_exporter_is_counted_and_reported_once(
    logs: LogCollector, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exporter raising on every call changes nothing for the app nor for the
    other exporters; its records are counted failed and exporter_failed is logged
    once, with the exception's own words."""
    failing = _FailingExporter()
    tracedsync.configure(exporters=[failing, logs], hold_threshold_ms=0)
    lock = tracedsync.Lock()
    with counted() as out:
        for _ in range(3):
            with lock:
                pass
            assert tracedsync.flush(10)
    (c,) = out
    c.assert_exact()
    assert failing.calls == 3
    assert c.of("failing") == {"offered": 3, "exported": 0, "lane_dropped": 0, "failed": 3}
    assert c.of("collector")["exported"] == 3
    events = logs.named("exporter_failed")
    assert len(events) == 1
    assert events[0]["exporter"] == "failing" and events[0]["error"] == "OSError"
    assert events[0]["detail"] == "[Errno 28] No space left on device"
    assert capsys.readouterr().err.count("exporter failing failed: OSError") == 1


class _HangingExporter(_GatedExporter):
    """A gated exporter whose ``abort`` opens the gate, or is ignored."""

    def __init__(self, honours_abort: bool) -> None:
        super().__init__()
        self.honours_abort = honours_abort
        self.aborted = threading.Event()

    def abort(self) -> None:
        self.aborted.set()
        if self.honours_abort:
            self.gate.set()


def _lane_thread(name: str) -> threading.Thread:
    pipe = lifecycle.pipeline()
    assert pipe is not None
    (lane,) = [lane for lane in pipe.lanes if lane.name == name]
    assert lane.thread is not None
    return lane.thread


def test_shutdown_aborts_a_hanging_export_within_the_timeout() -> None:
    """An export still running when the shutdown timeout runs out is aborted: every
    thread ends in time, the call's batch counts as its outcome says, what was still
    queued behind it counts failed."""
    hanging = _HangingExporter(honours_abort=True)
    tracedsync.configure(exporters=[hanging], hold_threshold_ms=0, shutdown_timeout_ms=1000)
    lock = tracedsync.Lock()
    with counted() as out:
        with lock:
            pass
        tracedsync.flush(0.01)
        assert hanging.entered.wait(10)
        with lock:  # a second record, still in the buffer
            pass
        pipe = lifecycle.pipeline()
        assert pipe is not None and pipe.thread is not None
        threads = [pipe.thread, _lane_thread("gated")]
        t0 = time.monotonic()
        tracedsync.shutdown()
        took = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads)
    assert took < 1.0 + 1.0  # the timeout, plus scheduling on a loaded machine
    assert hanging.aborted.is_set()
    assert hanging.count == 1
    (c,) = out
    c.assert_exact()
    assert c.of("gated") == {"offered": 2, "exported": 1, "lane_dropped": 0, "failed": 1}


def test_a_lane_stuck_past_shutdown_is_abandoned_and_its_records_counted_failed(
    spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exporter that ignores abort: shutdown still returns in time, the lane's
    records (in flight and queued) count failed, a line names the exporter; when
    the call finally returns, nothing more is counted or called, and the next
    configuration's exporters get everything."""
    stuck = _HangingExporter(honours_abort=False)
    tracedsync.configure(exporters=[stuck], hold_threshold_ms=0, shutdown_timeout_ms=300)
    lock = tracedsync.Lock()
    try:
        with counted() as out:
            with lock:
                pass
            tracedsync.flush(0.01)
            assert stuck.entered.wait(10)
            with lock:
                pass
            old_lane = _lane_thread("gated")
            tracedsync.shutdown()
            assert old_lane.is_alive() and stuck.aborted.is_set()
        (c,) = out
        c.assert_exact()
        assert c.of("gated") == {"offered": 2, "exported": 0, "lane_dropped": 0, "failed": 2}
        err = capsys.readouterr().err
        assert "exporter gated did not finish within the shutdown timeout of 0.3 s" in err
        assert "2 records it held count as failed" in err
        gated_after_shutdown = lanes.record_totals()["gated"]

        tracedsync.configure(exporters=[spans], hold_threshold_ms=0)
        for _ in range(5):
            with lock:
                pass
        stuck.gate.set()  # the old call returns: nothing is counted for it
        old_lane.join(10)
        assert not old_lane.is_alive()
        assert tracedsync.flush(10)
    finally:
        stuck.gate.set()
    assert stuck.count == 1
    assert len(spans.get_finished_spans()) == 5
    assert lanes.record_totals()["gated"] == gated_after_shutdown


def test_a_hung_exporter_holds_up_no_other_exporter_nor_the_metrics(
    logs: LogCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One exporter blocks forever: the others get every record as the records
    come, metrics keep being exported on their schedule, flush() says it could
    not finish, and shutdown ends within its timeout."""
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
    stuck = _HangingExporter(honours_abort=False)
    metrics = _MetricsTaker()
    tracedsync.configure(
        exporters=[stuck, logs, metrics], hold_threshold_ms=0, shutdown_timeout_ms=500
    )
    lock = tracedsync.Lock(name="beside_a_hung_one")
    try:
        with lock:
            pass
        assert stuck.entered.wait(10)
        for _ in range(50):
            with lock:
                pass
        assert not tracedsync.flush(0.5)
        held = [e for e in logs.named("long_hold") if e["sync.name"] == "beside_a_hung_one"]
        assert len(held) == 51
        seen = metrics.exports
        assert metrics.more_than(seen + 2, timeout=10)
        t0 = time.monotonic()
        tracedsync.shutdown()
        assert time.monotonic() - t0 < 0.5 + 1.0
    finally:
        stuck.gate.set()


class _MetricsTaker(Exporter):
    """Counts the metric exports it gets."""

    name = "metrics-taker"
    wants_metrics = True

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.exports = 0

    def export_metrics(self, metrics: Any) -> None:
        with self._cond:
            self.exports += 1
            self._cond.notify_all()

    def more_than(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.exports > n, timeout)


def test_lanes_start_with_the_pipeline_marked_internal() -> None:
    """Each exporter's lane thread exists from configure() on (never started by a
    traced operation), is named after its exporter and is marked internal: what it
    does with traced primitives is not recorded; Exporter.start() runs once, on the
    configuring thread."""
    inner = tracedsync.Lock(name="used-on-a-lane")
    started: list[int] = []

    class UsesALock(Exporter):
        name = "uses-a-lock"
        wants_logs = True

        def start(self) -> None:
            started.append(threading.get_ident())

        def export_logs(self, events: Any) -> None:
            recorded.append(_threads.is_internal())
            with inner:
                pass

    recorded: list[bool] = []
    before = {t.name for t in threading.enumerate()}
    tracedsync.configure(exporters=[UsesALock()], hold_threshold_ms=0)
    after = {t.name for t in threading.enumerate()}
    assert "tracedsync-lane-uses-a-lock" in after - before
    assert started == [threading.get_ident()]
    lock = tracedsync.Lock()
    with counted() as out:
        with lock:
            pass
        assert tracedsync.flush(10)
        assert tracedsync.flush(10)
    assert recorded and all(recorded)
    # hold_threshold_ms=0: on any other thread, each hold of `inner` would be a record.
    assert inner.statistics().acquisitions >= 1
    assert out[0].produced == 1


def test_rate_limit_suppresses_and_counts(spans: InMemorySpanExporter) -> None:
    """max_spans_per_second caps one primitive's spans; the rest are counted."""
    tracedsync.configure(exporters=[spans], hold_threshold_ms=0, max_spans_per_second=5)
    lock = tracedsync.Lock()
    for _ in range(50):
        with lock:
            pass
    assert tracedsync.flush(10)
    emitted = len(by_name(spans, "lock.hold"))
    assert 5 <= emitted <= 10
    assert lock.statistics().spans_suppressed == 50 - emitted


class _LockingExporter(Exporter):
    """An exporter whose export blocks on a traced lock held by another thread."""

    name = "locking"
    wants_spans = True

    def __init__(self, lock: Any, busy: threading.Event) -> None:
        self.lock = lock
        self.busy = busy

    def export_spans(self, spans: Any) -> None:
        if self.busy.is_set():
            with self.lock:
                pass


def test_pipeline_thread_is_never_traced(spans: InMemorySpanExporter) -> None:
    """Waits on the pipeline thread (inside an exporter) are not recorded."""
    inner = tracedsync.Lock(name="exporter-internal")
    busy = threading.Event()
    tracedsync.configure(exporters=[spans, _LockingExporter(inner, busy)], hold_threshold_ms=0)
    trigger = tracedsync.Lock(name="trigger")
    with inner:
        busy.set()
        with trigger:
            pass
        tracedsync.flush(0.1)  # the exporter now blocks on `inner` for a while
        time.sleep(0.05)
    assert tracedsync.flush(10)
    names = {s.attributes["sync.name"] for s in spans.get_finished_spans()}
    assert "trigger" in names
    wait_names = {
        s.attributes["sync.name"] for s in spans.get_finished_spans() if s.name == "lock.wait"
    }
    assert "exporter-internal" not in wait_names
    assert inner.statistics().contentions == 1  # counted, never a span


def test_console_exporter_line(logs: LogCollector) -> None:
    """The console shows who waited how long for what, and who held it where."""
    out = io.StringIO()
    tracedsync.configure(exporters=[ConsoleExporter(stream=out), logs])
    pool_lock = tracedsync.Lock()
    c = Contention(pool_lock)
    c.run()
    assert tracedsync.flush(10)
    lines = [line for line in out.getvalue().splitlines() if "waited" in line]
    assert len(lines) == 1
    line = lines[0]
    assert " waiter waited " in line
    assert f" ms for {pool_lock.name}, held by holder at " in line
    assert line.rsplit(" at ", 1)[1] in HOLDER_SITES


def test_console_escapes_control_characters() -> None:
    """Names with newlines or ANSI escapes cannot forge console lines."""
    from tracedsync.exporters.console import render

    line = render(
        {
            "event": "long_wait",
            "timestamp": "2026-01-01T00:00:00.000000Z",
            "thread.name": "evil\n\x1b[31mred",
            "sync.name": "lock\r",
            "sync.kind": "lock",
            "duration_ms": 5.0,
        }
    )
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert "evil\\x0a\\x1b[31mred" in line


def test_log_events_carry_span_ids(spans: InMemorySpanExporter, logs: LogCollector) -> None:
    """long_wait and long_hold events carry their span's trace and span ids."""
    tracedsync.configure(exporters=[spans, logs])
    Contention(tracedsync.Lock(), extra_hold=0.02).run()
    assert tracedsync.flush(10)
    (wait_event,) = logs.named("long_wait")
    (wait,) = by_name(spans, "lock.wait")
    assert wait_event["trace_id"] == f"{wait.context.trace_id:032x}"
    assert wait_event["span_id"] == f"{wait.context.span_id:016x}"
    assert wait_event["thread.name"] == "waiter"
    assert wait_event["duration_ms"] > 0


def test_structlog_global_configuration_untouched(logs: LogCollector) -> None:
    """tracedsync's events never go through, nor change, the app's structlog setup."""
    app_events: list[dict[str, Any]] = []

    def capture(logger: Any, method: str, event_dict: dict[str, Any]) -> Any:
        app_events.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(processors=[capture])
    try:
        before = structlog.get_config()
        tracedsync.configure(exporters=[logs])
        Contention(tracedsync.Lock()).run()
        structlog.get_logger().info("app_event")
        assert tracedsync.flush(10)
        assert structlog.get_config() == before
        assert [e["event"] for e in app_events] == ["app_event"]
        assert logs.named("long_wait")
    finally:
        structlog.reset_defaults()


def test_records_are_flushed_at_exit(tmp_path: Any) -> None:
    """A program that never calls flush() still exports everything on normal exit."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import time, tracedsync
            tracedsync.configure(exporters=["console"], hold_threshold_ms=1)
            slow_lock = tracedsync.Lock()
            for _ in range(3):
                with slow_lock:
                    time.sleep(0.005)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("held slow_lock (app.py:4) for") == 3


def test_meter_provider_observes_the_counters() -> None:
    """configure(meter_provider=...) reports the counters through that provider's
    reader as observable counters, and stops when tracedsync shuts down."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracedsync.configure(meter_provider=provider)
    lock = tracedsync.Lock(name="observed")
    for _ in range(5):
        with lock:
            pass

    def value(metric_name: str) -> float | None:
        data = reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != metric_name:
                        continue
                    for point in metric.data.data_points:
                        if point.attributes.get("sync.name") == "observed":
                            return float(point.value)
        return None

    assert value("tracedsync.acquisitions") == 5
    assert value("tracedsync.hold.time") == pytest.approx(lock.statistics().hold_total)
    tracedsync.shutdown()
    with lock:
        pass
    assert value("tracedsync.acquisitions") is None  # no longer observed
    provider.shutdown()


def test_context_getter_reads_the_current_context() -> None:
    """The recorder's fast getter sees exactly what get_current() sees, in
    this thread and in spans started in it."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk.trace import TracerProvider

    from tracedsync.pipeline import context_getter

    get = context_getter()
    assert get() is otel_context.get_current()
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("outer") as outer:
        ctx = get()
        assert ctx is otel_context.get_current()
        assert otel_trace.get_current_span(ctx) is outer
    assert otel_trace.get_current_span(get()) is not outer


class _Taking(Exporter):
    def __init__(self, spans: bool, logs: bool) -> None:
        self.wants_spans = spans
        self.wants_logs = logs
        self.spans: list[Any] = []
        self.logs: list[Any] = []

    def export_spans(self, spans: Any) -> None:
        self.spans.extend(spans)

    def export_logs(self, events: Any) -> None:
        self.logs.extend(events)


class _CountingLogger:
    """Wraps the pipeline's logger: the names of the info events it made."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.made: list[str] = []

    def info(self, event: str, **fields: Any) -> None:
        self.made.append(event)
        self.real.info(event, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_wait_and_hold_events_are_made_only_for_an_exporter_that_takes_logs() -> None:
    """With span exporters only, no long_hold event is built; add one that takes
    logs and every hold span gets its event."""
    for with_logs in (False, True):
        spans_only = _Taking(spans=True, logs=False)
        sinks: list[Exporter] = [spans_only]
        logs = _Taking(spans=False, logs=True)
        if with_logs:
            sinks.append(logs)
        tracedsync.configure(exporters=sinks, hold_threshold_ms=0, max_spans_per_second=0)
        try:
            pipe = lifecycle.pipeline()
            assert pipe is not None
            counting = _CountingLogger(pipe._log)
            made = counting.made
            pipe._log = pipe._spans._log = counting
            lock = tracedsync.Lock(name="events_or_not")
            for _ in range(5):
                with lock:
                    pass
            assert tracedsync.flush(10)
            holds = [s for s in spans_only.spans if s.attributes["sync.name"] == "events_or_not"]
            assert len(holds) == 5
            events = [e for e in logs.logs if e.get("sync.name") == "events_or_not"]
            assert len(events) == (5 if with_logs else 0)
            assert made.count("long_hold") == (5 if with_logs else 0)
        finally:
            tracedsync.shutdown()


def test_records_are_delivered_in_batches_of_at_most_batch_records() -> None:
    """A full buffer goes out in exporter calls of at most BATCH_RECORDS spans,
    in order, every record accounted for."""
    from tracedsync.pipeline import BATCH_RECORDS

    sink = _Taking(spans=True, logs=True)
    calls: list[int] = []
    export = sink.export_spans

    def counting(spans: Any) -> None:
        calls.append(len(spans))
        export(spans)

    sink.export_spans = counting  # type: ignore[method-assign]
    n = 2 * BATCH_RECORDS + 100
    tracedsync.configure(
        exporters=[sink], hold_threshold_ms=0, max_spans_per_second=0, buffer_size=4 * n
    )
    try:
        lock = tracedsync.Lock(name="batched")
        with counted() as out:
            for _ in range(n):
                with lock:
                    pass
            assert tracedsync.flush(30)
        (c,) = out
        c.assert_exact()
        assert c.produced == n
        assert c.of("_Taking")["exported"] == n
        assert max(calls) <= BATCH_RECORDS and sum(calls) == n
        holds = [s for s in sink.spans if s.attributes["sync.name"] == "batched"]
        assert len(holds) == n
        assert [s.start_ns for s in holds] == sorted(s.start_ns for s in holds)
        assert len([e for e in sink.logs if e.get("sync.name") == "batched"]) == n
    finally:
        tracedsync.shutdown()


def test_spans_of_one_primitive_thread_and_site_share_their_attributes() -> None:
    """Spans with the same primitive, thread, call site and outcome share one
    SharedAttributes; a renamed thread's next span gets its new name."""
    from tracedsync.exporters.base import SharedAttributes

    sink = _Taking(spans=True, logs=True)
    tracedsync.configure(exporters=[sink], hold_threshold_ms=0, max_spans_per_second=0)
    try:
        lock = tracedsync.Lock(name="shared_attrs")
        me = threading.current_thread()
        old_name = me.name
        for _ in range(3):
            with lock:
                pass
        assert tracedsync.flush(10)
        me.name = "renamed-for-test"
        try:
            with lock:
                pass
            assert tracedsync.flush(10)
        finally:
            me.name = old_name
        holds = [s for s in sink.spans if s.attributes["sync.name"] == "shared_attrs"]
        assert len(holds) == 4
        first, *same, renamed = holds
        assert type(first.attributes) is SharedAttributes
        assert all(s.attributes is first.attributes for s in same)
        assert first.attributes["thread.name"] == old_name
        assert renamed.attributes["thread.name"] == "renamed-for-test"
        assert renamed.attributes is not first.attributes
        events = [e for e in sink.logs if e.get("sync.name") == "shared_attrs"]
        assert [e["thread.name"] for e in events] == [old_name] * 3 + ["renamed-for-test"]
    finally:
        tracedsync.shutdown()
