"""Exemplars for the wait histogram: which trace waited, per bucket.

The pipeline offers every wait span it builds (:meth:`Exemplars.offer`);
for each primitive (``sync.kind``, ``sync.name``) and each bucket of
``tracedsync.wait.duration``, the latest wait that fell in that bucket is
kept, as OpenTelemetry's aligned-bucket exemplar reservoir does. The metric
data built from the counters then carries them on the histogram points
(OTLP, the jsonfile encoder) and on the Prometheus buckets, so a dashboard
can jump from a p99 spike to the trace that waited. Only waits slow enough
to become spans (``wait_threshold_ms``) can be exemplars.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, NamedTuple

from tracedsync import _stdlib
from tracedsync.counters import HISTOGRAM_BOUNDS
from tracedsync.exporters import model
from tracedsync.exporters.base import SpanData

#: Upper-inclusive bucket bounds in nanoseconds (the histogram's, exactly).
_BOUNDS_NS: tuple[int, ...] = tuple(round(b * 1e9) for b in HISTOGRAM_BOUNDS)
#: Primitives (kind, name) with exemplars kept at most; forgotten all at once when full.
_KEYS_LIMIT = 10_000


class Exemplar(NamedTuple):
    """One wait: its duration (seconds), end (epoch ns), ids, thread."""

    value: float
    time_ns: int
    trace_id: int
    span_id: int
    thread_name: str


def bucket_of(duration_ns: int) -> int:
    """The index of the histogram bucket ``duration_ns`` is counted in."""
    return bisect_left(_BOUNDS_NS, duration_ns)


class Exemplars:
    """The latest wait span per primitive and wait-histogram bucket."""

    def __init__(self) -> None:
        self._lock = _stdlib.allocate_lock()
        self._by_key: dict[tuple[str, str], dict[int, Exemplar]] = {}

    def offer(self, span: SpanData) -> None:
        """Note a finished wait span (the pipeline thread calls this for every
        wait span it builds; waits still blocked, outcome ``unfinished``, are
        left out, as they are of the histogram)."""
        attrs = span.attributes
        kind = attrs.get("sync.kind")
        name = attrs.get("sync.name")
        if not isinstance(kind, str) or not isinstance(name, str) or not span.trace_id:
            return
        if attrs.get("sync.outcome") == "unfinished":
            return  # still blocked: not in the histogram, so no exemplar of it
        duration = span.end_ns - span.start_ns
        if duration < 0:
            return
        exemplar = Exemplar(
            duration / 1e9,
            span.end_ns,
            span.trace_id,
            span.span_id,
            str(attrs.get("thread.name", "")),
        )
        with self._lock:
            buckets = self._by_key.get((kind, name))
            if buckets is None:
                if len(self._by_key) >= _KEYS_LIMIT:
                    self._by_key.clear()
                buckets = self._by_key[(kind, name)] = {}
            buckets[bucket_of(duration)] = exemplar

    def of(self, kind: str, name: str) -> dict[int, Exemplar]:
        """Bucket index -> exemplar, for one primitive (a copy)."""
        with self._lock:
            return dict(self._by_key.get((kind, name), ()))

    def data_exemplars(self, kind: str, name: str) -> list[model.Exemplar]:
        """The exemplars of one primitive as ``HistogramDataPoint.exemplars``
        holds them, in bucket order."""
        out = []
        for _, e in sorted(self.of(kind, name).items()):
            attrs: dict[str, Any] = {"thread.name": e.thread_name} if e.thread_name else {}
            out.append(model.Exemplar(attrs, e.value, e.time_ns, e.span_id, e.trace_id))
        return out
