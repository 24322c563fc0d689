"""Delivery lanes: a bounded queue and an internal thread per exporter.

The pipeline thread turns records into batches (spans and log events) and
metric data, and hands them to every exporter's :class:`Lane`. Handing over
never blocks: a lane that is full makes room by dropping its own oldest
batch. Each lane's thread makes the exporter's calls, one at a time, so an
exporter that hangs (an OTLP collector that accepts connections and never
answers), is slow or fails holds up and loses only its own data: the
other lanes, the pipeline and the program go on.

Counting, per exporter, in records (what the recorder put in the shared
buffer): a batch made from N records counts N for every lane that takes
records (an exporter of spans or log events), whatever share of the batch
that exporter consumes. Once a lane has nothing queued,

    offered == exported + lane_dropped + failed

exactly, where ``exported`` means every call the batch needed returned,
``lane_dropped`` that the lane was full (its exporter was behind),
``failed`` that a call raised, or that shutdown gave up on the lane while it
still held the batch. Records taken from the buffer are offered to every
record lane, so per lane ``offered`` equals the records the pipeline took.
Metric exports (one ``MetricsData`` per interval, cumulative) are counted
apart, in exports: ``metric_exported``, ``metric_dropped`` (a newer export
replaced one still queued), ``metric_failed``.

The counts are per process and per exporter name (:func:`totals`), so they
keep adding up across ``configure()`` calls; a fork child starts at zero, as
the shared buffer's counts do.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from tracedsync import _stdlib, _threads
from tracedsync.exporters.base import Exporter, LogEvent, SpanData

#: Records a lane holds at most (queued, not yet handed to its exporter):
#: 32 pipeline batches. Spans and events are shared between lanes (the same
#: objects), so memory is bounded by the fullest lane, not by their sum.
LANE_RECORDS = 16_384
#: Queue entries a lane holds at most (batches of events only count 0 records).
LANE_ITEMS = 256
#: exporter_failed events a lane keeps for its exporter's next batch when it
#: could not deliver them.
CARRIED_EVENTS = 16
#: Records one call delivers at most when a lane merges queued batches (the
#: pipeline's own batch size, and the OpenTelemetry SDK's export batch size).
EXPORT_RECORDS = 512


@dataclass
class LaneCounts:
    """One exporter's counts (records, then metric exports); see the module doc."""

    offered: int = 0
    exported: int = 0
    lane_dropped: int = 0
    failed: int = 0
    metric_exported: int = 0
    metric_dropped: int = 0
    metric_failed: int = 0
    #: Whether a lane of this name took records (an exporter of spans or events).
    takes_records: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in _COUNTERS}


#: The record counts, as the summary file and the telemetry metrics give them.
RECORD_COUNTERS = ("offered", "exported", "lane_dropped", "failed")
_COUNTERS = (*RECORD_COUNTERS, "metric_exported", "metric_dropped", "metric_failed")


#: exporter name -> its counts in this process.
_totals: dict[str, LaneCounts] = {}
_totals_lock = _stdlib.allocate_lock()
_totals_pid = os.getpid()


def _this_process() -> None:
    """A fork child's counts start at zero (checked on use: at-fork hooks run
    in registration order, and the child's new pipeline may count first)."""
    global _totals_lock, _totals_pid
    if _totals_pid != os.getpid():
        _totals_lock = _stdlib.allocate_lock()  # the parent's may have been held
        _totals.clear()
        _totals_pid = os.getpid()


def totals(name: str) -> LaneCounts:
    """The process-wide counts of exporter ``name`` (made on first use)."""
    _this_process()
    with _totals_lock:
        counts = _totals.get(name)
        if counts is None:
            counts = _totals[name] = LaneCounts()
        return counts


def totals_snapshot() -> dict[str, dict[str, int]]:
    """Every exporter's counts now, metric exports included:
    ``{name: {"offered": ..., "metric_failed": ...}}``."""
    _this_process()
    with _totals_lock:
        return {name: c.as_dict() for name, c in _totals.items()}


def record_totals() -> dict[str, dict[str, int]]:
    """The record counts of every exporter that takes records:
    ``{name: {"offered", "exported", "lane_dropped", "failed"}}``."""
    _this_process()
    with _totals_lock:
        return {
            name: {k: getattr(c, k) for k in RECORD_COUNTERS}
            for name, c in _totals.items()
            if c.takes_records
        }


class Batch(NamedTuple):
    """What the pipeline made of ``records`` records taken from the buffer."""

    records: int
    spans: Sequence[SpanData]
    logs: Sequence[LogEvent]


class FlushRequest:
    """Done when every lane it was given to has passed it."""

    def __init__(self, lanes: int) -> None:
        self._left = lanes
        self._lock = _stdlib.allocate_lock()
        self.done = _stdlib.Event()
        if lanes <= 0:
            self.done.set()

    def lane_done(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


#: What a lane reports a failed call with: (lane, exception, seconds the call took).
FailureReport = Callable[["Lane", BaseException, float], None]

_RECORDS, _METRICS, _FLUSH, _STOP = range(4)


class Lane:
    """One exporter's queue and thread. The pipeline side (``offer*``,
    ``request_flush``, ``close``) never blocks; the thread makes every call
    on the exporter but :meth:`Exporter.abort`."""

    def __init__(
        self,
        exporter: Exporter,
        name: str,
        report_failure: FailureReport,
        capacity: int = LANE_RECORDS,
    ) -> None:
        self.exporter = exporter
        self.name = name
        self.capacity = capacity
        self.takes_records = bool(exporter.wants_spans or exporter.wants_logs)
        self.takes_metrics = bool(exporter.wants_metrics)
        self.counts = totals(name)
        if self.takes_records:
            self.counts.takes_records = True
        #: Records offered to this lane (this pipeline's, not the process's).
        self.offered_here = 0
        self._report_failure = report_failure
        self._cond = _stdlib.Condition(_stdlib.Lock())
        self._queue: deque[tuple[int, Any]] = deque()
        self._queued_records = 0
        #: Records of the call running now (0 when idle or exporting metrics).
        self._in_flight = 0
        #: 1 while a metric export runs.
        self._metrics_in_flight = 0
        #: exporter_failed events this exporter could not deliver: retried first.
        self._carried: list[LogEvent] = []
        #: Builds the metric data now: exported once more when the lane closes.
        self.final_metrics: Callable[[], Any] | None = None
        #: monotonic start of the call running now, 0 when idle.
        self.call_started = 0.0
        self._closed = False
        self._aborting = False
        self._abandoned = False
        #: True once the first batch was dropped (one stderr line per lane).
        self.dropped_once = False
        self.thread: threading.Thread | None = None

    # -- the pipeline's side -------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._run, name=f"tracedsync-lane-{self.name}", daemon=True
        )
        self.thread.start()

    def offer(self, batch: Batch) -> None:
        """Queue ``batch`` (the share this exporter takes); never blocks."""
        spans = batch.spans if self.exporter.wants_spans else ()
        logs = batch.logs if self.exporter.wants_logs else ()
        n = batch.records
        with self._cond:
            if self._closed:
                return  # shutdown counted what never arrived
            self.offered_here += n
            self.counts.offered += n
            if not spans and not logs:
                self.counts.exported += n  # nothing in it for this exporter
                return
            while self._queue and (
                self._queued_records + n > self.capacity or len(self._queue) >= LANE_ITEMS
            ):
                if not self._drop_oldest():
                    break
            if self._queued_records + n > self.capacity or len(self._queue) >= LANE_ITEMS:
                self.counts.lane_dropped += n
                self._note_drop()
                return
            self._queue.append((_RECORDS, Batch(n, spans, logs)))
            self._queued_records += n
            self._cond.notify()

    def offer_metrics(self, data: Any) -> None:
        """Queue a metric export, replacing one still queued (both are cumulative)."""
        with self._cond:
            if self._closed:
                return
            for i, (kind, _) in enumerate(self._queue):
                if kind == _METRICS:
                    self._queue[i] = (_METRICS, data)
                    self.counts.metric_dropped += 1
                    return
            self._queue.append((_METRICS, data))
            self._cond.notify()

    def request_flush(self, request: FlushRequest) -> None:
        """Have the exporter flush once everything queued before is delivered."""
        with self._cond:
            if self._closed:
                request.lane_done()
                return
            self._queue.append((_FLUSH, request))
            self._cond.notify()

    def close(self, deadline: float) -> None:
        """Deliver what is queued, export the metrics once more (a lane that
        takes them), then shut the exporter down (or flush one the caller
        owns) and end; ``deadline`` is a ``time.monotonic()``."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.append((_STOP, deadline))
            self._cond.notify()

    def close_missing(self, taken: int) -> int:
        """Close the lane for a pipeline thread that will not offer again:
        records it took and never offered here count offered and failed."""
        with self._cond:
            self._closed = True
            missing = max(0, taken - self.offered_here) if self.takes_records else 0
            self.offered_here += missing
            self.counts.offered += missing
            self.counts.failed += missing
            return missing

    def abort(self) -> None:
        """Shutdown is running out of time: make the call running now give up
        (``Exporter.abort``) and fail whatever is still queued."""
        with self._cond:
            self._aborting = True
            self._cond.notify()
        try:
            self.exporter.abort()
        except Exception:
            pass

    def abandon(self) -> str:
        """Give up on a lane whose call never returned: what it holds counts
        failed now (the call's outcome, if it ever comes, is not counted).
        Returns what was lost, in words."""
        with self._cond:
            if self._abandoned:
                return "nothing"
            self._abandoned = True
            lost = self._queued_records + self._in_flight
            self.counts.failed += lost
            exports = self._metrics_in_flight + sum(1 for k, _ in self._queue if k == _METRICS)
            self.counts.metric_failed += exports
            self._queued_records = self._in_flight = self._metrics_in_flight = 0
            self._release_waiters()
            self._queue.clear()
        parts = []
        if lost or self.takes_records:
            parts.append(f"{lost} records it held count as failed")
        if exports:
            parts.append(f"{exports} metric export{'s' if exports > 1 else ''} failed")
        return ", ".join(parts) or "it held nothing"

    @property
    def aborting(self) -> bool:
        """True once shutdown gave up waiting for this lane."""
        return self._aborting

    # -- the lane's thread -----------------------------------------------------

    def _run(self) -> None:
        _threads.mark_internal()
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._aborting:
                        self._cond.wait()
                    if self._abandoned:
                        return
                    if self._aborting:
                        self._fail_queued()
                        return
                    kind, payload = self._queue.popleft()
                    if kind == _RECORDS:
                        payload = self._merge_following(payload)
                        self._queued_records -= payload.records
                        self._in_flight = payload.records
                    elif kind == _METRICS:
                        self._metrics_in_flight = 1
                    self.call_started = time.monotonic()
                try:
                    if kind == _RECORDS:
                        self._deliver(payload)
                    elif kind == _METRICS:
                        self._export_metrics(payload)
                    elif kind == _FLUSH:
                        try:
                            self._call(self.exporter.flush, 1.0)
                        finally:
                            payload.lane_done()
                    else:
                        self._finish(payload)
                        return
                finally:
                    with self._cond:
                        self.call_started = 0.0
        finally:
            _threads.unmark_internal()

    def _merge_following(self, batch: Batch) -> Batch:
        """Under the lock: ``batch`` and the record batches queued right after
        it, up to :data:`EXPORT_RECORDS` records, as one: an exporter that fell
        behind catches up in fewer calls (a collector that times out costs a
        timeout per call)."""
        queue = self._queue
        if not queue or queue[0][0] != _RECORDS:
            return batch
        records, spans, logs = batch.records, list(batch.spans), list(batch.logs)
        while queue and queue[0][0] == _RECORDS:
            following = queue[0][1]
            if records + following.records > EXPORT_RECORDS:
                break
            queue.popleft()
            records += following.records
            spans.extend(following.spans)
            logs.extend(following.logs)
        return Batch(records, spans, logs)

    def _call(self, fn: Callable[[Any], None], arg: Any) -> bool:
        started = time.monotonic()
        try:
            fn(arg)
            return True
        except Exception as exc:
            if not self._abandoned:
                self._report_failure(self, exc, time.monotonic() - started)
            return False

    def _deliver(self, batch: Batch) -> None:
        ok = True
        if batch.spans:
            ok = self._call(self.exporter.export_spans, batch.spans)
        logs = batch.logs
        if self._carried:
            logs, self._carried = [*self._carried, *logs], []
        if logs and not self._call(self.exporter.export_logs, logs):
            ok = False
            # The events saying an exporter failed are kept for this exporter's
            # next batch: when it is the one failing (a full disk), that is
            # when it can write them.
            self._carried = [e for e in logs if e.get("event") == "exporter_failed"][
                :CARRIED_EVENTS
            ]
        with self._cond:
            if self._abandoned:
                return  # counted failed when it was abandoned
            self._in_flight = 0
            if ok:
                self.counts.exported += batch.records
            else:
                self.counts.failed += batch.records

    def _export_metrics(self, data: Any) -> None:
        ok = self._call(self.exporter.export_metrics, data)
        with self._cond:
            if self._abandoned:
                return
            self._metrics_in_flight = 0
            if ok:
                self.counts.metric_exported += 1
            else:
                self.counts.metric_failed += 1

    def _finish(self, deadline: float) -> None:
        if self.takes_metrics and self.final_metrics is not None:
            # Everything queued is delivered: the metrics built now carry this
            # exporter's final counts.
            try:
                data = self.final_metrics()
            except Exception as exc:
                self._report_failure(self, exc, 0.0)
            else:
                self._export_metrics(data)
        remaining = max(0.05, deadline - time.monotonic())
        if self.exporter.owned:
            self._call(self.exporter.shutdown, remaining)
        else:
            # Objects the user passed in stay theirs (they may hand them to
            # configure() again): flushed, not shut down.
            self._call(self.exporter.flush, remaining)

    def _fail_queued(self) -> None:
        """Under the lock: everything queued counts failed (aborted shutdown)."""
        for kind, payload in self._queue:
            if kind == _RECORDS:
                self.counts.failed += payload.records
            elif kind == _METRICS:
                self.counts.metric_failed += 1
        self._queued_records = 0
        self._release_waiters()
        self._queue.clear()

    def _release_waiters(self) -> None:
        for kind, payload in self._queue:
            if kind == _FLUSH:
                payload.lane_done()

    def _drop_oldest(self) -> bool:
        """Under the lock: drop the oldest queued batch of records; False if none."""
        for i, (kind, payload) in enumerate(self._queue):
            if kind == _RECORDS:
                del self._queue[i]
                self._queued_records -= payload.records
                self.counts.lane_dropped += payload.records
                self._note_drop()
                return True
        return False

    def _note_drop(self) -> None:
        if self.dropped_once:
            return
        self.dropped_once = True
        try:
            sys.stderr.write(
                f"tracedsync: exporter {self.name} is falling behind: its lane of "
                f"{self.capacity} records is full and drops its oldest batches "
                "(counted as lane_dropped; other exporters are not affected)\n"
            )
        except Exception:
            pass


def unique_names(exporters: Sequence[Exporter]) -> list[str]:
    """Each exporter's name (its class name when it kept the default), with
    ``-2``, ``-3``... added to repeats."""
    seen: dict[str, int] = {}
    out = []
    for exporter in exporters:
        base = str(getattr(exporter, "name", "") or "")
        if not base or base == Exporter.name:
            base = type(exporter).__name__
        n = seen.get(base, 0) + 1
        seen[base] = n
        out.append(base if n == 1 else f"{base}-{n}")
    return out
