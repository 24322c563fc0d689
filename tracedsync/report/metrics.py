"""Metric snapshots: OTLP JSON metrics lines and summary files, decoded and
checked (the model layer's view of the counters).

A snapshot is one process's cumulative counters at one moment: a metrics
line, or a summary file written at exit. Numbers are checked as they are
decoded: a count that is negative, not an integer or not finite, a time or
a bound that is NaN or infinite, bounds that do not increase, are refused
with the file and line (``--fail-on`` and percentiles built on them would be
nonsense, and the files tracedsync writes never hold them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracedsync._format import cap
from tracedsync.report.errors import ReportError
from tracedsync.report.read import SCOPE, attributes, nanos, number, parse_timestamp

#: Counters of a primitive in the metrics (sums) -> MetricPoint field.
SUMS = {
    "tracedsync.acquisitions": "acquisitions",
    "tracedsync.contentions": "contentions",
    "tracedsync.timeouts": "timeouts",
    "tracedsync.wait.time": "wait_time",
    "tracedsync.hold.time": "hold_time",
}
COUNTS = frozenset({"acquisitions", "contentions", "timeouts"})
HISTS = {"tracedsync.wait.duration": "wait_hist", "tracedsync.hold.duration": "hold_hist"}
TELEMETRY_PREFIX = "tracedsync.telemetry."
#: Gauges of waits still blocked when the snapshot was taken.
BLOCKED = "tracedsync.waits.blocked"
SUMMARY_FORMAT = "tracedsync-summary/1"


class Hist:
    """An explicit-bucket histogram (seconds), as in OTLP: mergeable, subtractable."""

    __slots__ = ("bounds", "count", "counts", "max", "min", "sum")

    def __init__(
        self,
        bounds: Sequence[float],
        counts: Sequence[int],
        total: float,
        lo: float | None,
        hi: float | None,
    ) -> None:
        self.bounds = tuple(bounds)
        self.counts = list(counts)
        self.count = sum(self.counts)
        self.sum = total
        self.min = lo
        self.max = hi

    def copy(self) -> Hist:
        return Hist(self.bounds, self.counts, self.sum, self.min, self.max)

    def _aligned(self, other: Hist) -> list[int]:
        if other.bounds == self.bounds:
            return other.counts
        # Different bounds (another producer): put each bucket where its upper
        # bound falls in ours.
        out = [0] * len(self.counts)
        for i, c in enumerate(other.counts):
            upper = other.bounds[i] if i < len(other.bounds) else math.inf
            j = 0
            while j < len(self.bounds) and upper > self.bounds[j]:
                j += 1
            out[j] += c
        return out

    def add(self, other: Hist) -> None:
        for i, c in enumerate(self._aligned(other)):
            self.counts[i] += c
        self.count = sum(self.counts)
        self.sum += other.sum
        if other.min is not None:
            self.min = other.min if self.min is None else min(self.min, other.min)
        if other.max is not None:
            self.max = other.max if self.max is None else max(self.max, other.max)

    def add_sample(self, seconds: float) -> None:
        """One more observation (a wait still blocked at the end)."""
        i = 0
        while i < len(self.bounds) and seconds > self.bounds[i]:
            i += 1
        self.counts[i] += 1
        self.count += 1
        self.sum += seconds
        self.min = seconds if self.min is None else min(self.min, seconds)
        self.max = seconds if self.max is None else max(self.max, seconds)

    def subtract(self, earlier: Hist) -> None:
        """What happened after the cumulative snapshot ``earlier``."""
        for i, c in enumerate(self._aligned(earlier)):
            self.counts[i] = max(0, self.counts[i] - c)
        self.count = sum(self.counts)
        self.sum = max(0.0, self.sum - earlier.sum)
        self.min = None
        top = self._top_upper()
        if top is not None and self.max is not None:
            self.max = min(self.max, top)

    def _top_upper(self) -> float | None:
        for i in range(len(self.counts) - 1, -1, -1):
            if self.counts[i]:
                return self.bounds[i] if i < len(self.bounds) else None
        return 0.0

    def quantile(self, q: float, exact: Sequence[float] | None = None) -> float | None:
        """The ``q`` quantile (None when empty), never outside the observed
        ``[min, max]``.

        ``exact``: the sorted observations above the first bucket, when
        known (every contended wait was kept as a span); used when there are
        exactly as many as the histogram counted there. Otherwise the value
        is interpolated inside its bucket, and a bucket's only observation
        at either end of the histogram is that end (min or max). The first
        bucket (up to ~1 µs) holds the acquisitions that did not wait: a
        quantile there is its lower end, 0.
        """
        if self.count <= 0:
            return None
        rank = max(1, math.ceil(q * self.count - 1e-9))
        zero = self.counts[0]
        if exact is not None and len(exact) == self.count - zero:
            if rank <= zero:
                return self.min if self.min is not None and zero == self.count else 0.0
            return exact[rank - zero - 1]
        last = max(i for i, c in enumerate(self.counts) if c)
        first = min(i for i, c in enumerate(self.counts) if c)
        seen = 0
        for i, c in enumerate(self.counts):
            if not c:
                continue
            if seen + c >= rank:
                if i == 0:
                    return self.min or 0.0
                if i == last and c == 1 and self.max is not None:
                    return self.max
                if i == first and c == 1 and self.min is not None:
                    return self.min
                lower = self.bounds[i - 1]
                upper = self.bounds[i] if i < len(self.bounds) else (self.max or lower)
                value = lower + (upper - lower) * (rank - seen) / c
                if self.max is not None:
                    value = min(value, self.max)
                if self.min is not None:
                    value = max(value, self.min)
                return value
            seen += c
        return self.max


class MetricPoint:
    """One primitive's cumulative metrics in one snapshot."""

    __slots__ = (
        "acquisitions",
        "contentions",
        "hold_hist",
        "hold_time",
        "timeouts",
        "wait_hist",
        "wait_time",
    )

    def __init__(self) -> None:
        self.acquisitions: int | None = None
        self.contentions = 0
        self.timeouts = 0
        self.wait_time = 0.0
        self.hold_time: float | None = None
        self.wait_hist: Hist | None = None
        self.hold_hist: Hist | None = None

    def copy(self) -> MetricPoint:
        out = MetricPoint()
        out.acquisitions = self.acquisitions
        out.contentions = self.contentions
        out.timeouts = self.timeouts
        out.wait_time = self.wait_time
        out.hold_time = self.hold_time
        out.wait_hist = self.wait_hist.copy() if self.wait_hist else None
        out.hold_hist = self.hold_hist.copy() if self.hold_hist else None
        return out

    def add(self, other: MetricPoint) -> None:
        if other.acquisitions is not None:
            self.acquisitions = (self.acquisitions or 0) + other.acquisitions
        self.contentions += other.contentions
        self.timeouts += other.timeouts
        self.wait_time += other.wait_time
        if other.hold_time is not None:
            self.hold_time = (self.hold_time or 0.0) + other.hold_time
        if other.wait_hist is not None:
            if self.wait_hist is None:
                self.wait_hist = other.wait_hist.copy()
            else:
                self.wait_hist.add(other.wait_hist)
        if other.hold_hist is not None:
            if self.hold_hist is None:
                self.hold_hist = other.hold_hist.copy()
            else:
                self.hold_hist.add(other.hold_hist)

    def subtract(self, earlier: MetricPoint) -> None:
        if self.acquisitions is not None and earlier.acquisitions is not None:
            self.acquisitions = max(0, self.acquisitions - earlier.acquisitions)
        self.contentions = max(0, self.contentions - earlier.contentions)
        self.timeouts = max(0, self.timeouts - earlier.timeouts)
        self.wait_time = max(0.0, self.wait_time - earlier.wait_time)
        if self.hold_time is not None and earlier.hold_time is not None:
            self.hold_time = max(0.0, self.hold_time - earlier.hold_time)
        if self.wait_hist is not None and earlier.wait_hist is not None:
            self.wait_hist.subtract(earlier.wait_hist)
        if self.hold_hist is not None and earlier.hold_hist is not None:
            self.hold_hist.subtract(earlier.hold_hist)


@dataclass
class Snapshot:
    """One process's cumulative values at ``time_ns`` (a metrics line or a summary)."""

    time_ns: int
    start_ns: int | None
    points: dict[tuple[str, str], MetricPoint] = field(default_factory=dict)
    #: Counters of the shared record buffer (produced, dropped, suppressed, ...).
    telemetry: dict[str, float] = field(default_factory=dict)
    #: exporter -> its lane's counters (offered, exported, lane_dropped, failed).
    exporters: dict[str, dict[str, float]] = field(default_factory=dict)


# -- checked numbers -------------------------------------------------------------------


def count(value: Any, where: str, what: str) -> int:
    """A count: a non-negative integer (a JSON number or a decimal string)."""
    v = number(value)
    if v is None or not math.isfinite(v) or v < 0 or v != int(v):
        raise ReportError(f"{where}: {what} is not a count: {value!r}")
    return int(v)


def seconds(value: Any, where: str, what: str, *, optional: bool = False) -> float | None:
    """A finite, non-negative number of seconds (None if absent and ``optional``)."""
    if value is None and optional:
        return None
    v = number(value)
    if v is None or not math.isfinite(v) or v < 0:
        raise ReportError(f"{where}: {what} is not a finite duration: {value!r}")
    return float(v)


def histogram(
    counts: Any, bounds: Any, total: Any, lo: Any, hi: Any, where: str, what: str
) -> Hist:
    """A checked histogram: counts are counts, bounds finite and increasing."""
    if not isinstance(counts, list) or not isinstance(bounds, list):
        raise ReportError(f"{where}: {what} has malformed buckets")
    c = [count(x, where, f"a bucket count of {what}") for x in counts]
    b: list[float] = []
    for x in bounds:
        v = number(x)
        if v is None or not math.isfinite(v):
            raise ReportError(f"{where}: a bucket bound of {what} is not a finite number: {x!r}")
        if b and v <= b[-1]:
            raise ReportError(f"{where}: the bucket bounds of {what} do not increase")
        b.append(float(v))
    if len(c) != len(b) + 1:
        raise ReportError(f"{where}: {what} has {len(c)} bucket counts for {len(b)} bounds")
    return Hist(
        b,
        c,
        seconds(total if total is not None else 0.0, where, f"the sum of {what}") or 0.0,
        seconds(lo, where, f"the min of {what}", optional=True),
        seconds(hi, where, f"the max of {what}", optional=True),
    )


# -- OTLP metrics lines ------------------------------------------------------------------


def decode_metrics(scope_metrics: Any, where: str) -> Snapshot | None:
    """The tracedsync scope's data points of one ``resourceMetrics`` entry."""
    if not isinstance(scope_metrics, list):
        raise ReportError(f"{where}: scopeMetrics is not a list")
    snap: Snapshot | None = None
    for sm in scope_metrics:
        if not isinstance(sm, dict):
            raise ReportError(f"{where}: a scopeMetrics entry is not an object")
        scope = sm.get("scope")
        if not isinstance(scope, dict) or scope.get("name") != SCOPE:
            continue
        metrics = sm.get("metrics", [])
        if not isinstance(metrics, list):
            raise ReportError(f"{where}: metrics is not a list")
        for metric in metrics:
            if not isinstance(metric, dict):
                raise ReportError(f"{where}: a metric is not an object")
            snap = _metric(metric, snap, where)
    return snap


def _metric(metric: dict[str, Any], snap: Snapshot | None, where: str) -> Snapshot | None:
    mname = metric.get("name")
    if not isinstance(mname, str):
        return snap
    if "sum" in metric:
        body, is_hist = metric["sum"], False
    elif "histogram" in metric:
        body, is_hist = metric["histogram"], True
    elif "gauge" in metric:
        body, is_hist = metric["gauge"], False
    else:
        return snap
    points = body.get("dataPoints", []) if isinstance(body, dict) else None
    if not isinstance(points, list):
        raise ReportError(f"{where}: metric {mname!r} has no dataPoints list")
    for point in points:
        if not isinstance(point, dict):
            raise ReportError(f"{where}: a data point of {mname!r} is not an object")
        t = nanos(point.get("timeUnixNano")) or 0
        s0 = nanos(point.get("startTimeUnixNano"))
        if snap is None:
            snap = Snapshot(t, s0)
        else:
            snap.time_ns = max(snap.time_ns, t)
            if s0 is not None and (snap.start_ns is None or s0 < snap.start_ns):
                snap.start_ns = s0
        _point(snap, mname, point, is_hist, where)
    return snap


def _point(snap: Snapshot, mname: str, point: dict[str, Any], is_hist: bool, where: str) -> None:
    if mname.startswith(TELEMETRY_PREFIX):
        key = mname[len(TELEMETRY_PREFIX) :]
        value = count(point.get("asInt", point.get("asDouble")), where, f"a {mname} value")
        exporter = attributes(point.get("attributes")).get("exporter")
        if isinstance(exporter, str):
            lane = snap.exporters.setdefault(exporter, {})
            lane[key] = lane.get(key, 0) + value
        else:
            snap.telemetry[key] = snap.telemetry.get(key, 0) + value
        return
    target = HISTS.get(mname) if is_hist else SUMS.get(mname)
    if target is None:
        return
    attrs = attributes(point.get("attributes"))
    kind, name = attrs.get("sync.kind"), attrs.get("sync.name")
    if not isinstance(kind, str) or not isinstance(name, str):
        raise ReportError(f"{where}: a {mname} data point lacks sync.kind or sync.name")
    mp = snap.points.get((kind, name))
    if mp is None:
        mp = snap.points[(kind, name)] = MetricPoint()
    if is_hist:
        hist = histogram(
            point.get("bucketCounts", []),
            point.get("explicitBounds", []),
            point.get("sum"),
            point.get("min"),
            point.get("max"),
            where,
            f"a {mname} data point",
        )
        declared = point.get("count")
        if declared is not None and count(declared, where, f"the count of {mname}") != hist.count:
            raise ReportError(f"{where}: the count of a {mname} data point is not its buckets' sum")
        setattr(mp, target, hist)
        return
    raw = point.get("asInt", point.get("asDouble"))
    if raw is None:
        raise ReportError(f"{where}: a {mname} data point has no value")
    if target in COUNTS:
        current = getattr(mp, target)
        setattr(mp, target, (current or 0) + count(raw, where, f"a {mname} value"))
    else:
        current = getattr(mp, target)
        setattr(mp, target, (current or 0.0) + (seconds(raw, where, f"a {mname} value") or 0.0))


# -- summary files -----------------------------------------------------------------------


def summary_snapshot(doc: dict[str, Any], where: str) -> Snapshot:
    """The counters of a summary file (``tracedsync-summary/1``) as a snapshot."""
    end = parse_timestamp(doc.get("end")) or 0
    snap = Snapshot(end, parse_timestamp(doc.get("start")))
    bounds = doc.get("histogram_bounds", [])
    prims = doc.get("primitives", [])
    if not isinstance(prims, list):
        raise ReportError(f"{where}: primitives is not a list")
    for i, p in enumerate(prims):
        what = f"primitives[{i}]"
        if not isinstance(p, dict):
            raise ReportError(f"{where}: {what} is not an object")
        kind, name = p.get("kind"), p.get("name")
        if not isinstance(kind, str) or not isinstance(name, str):
            raise ReportError(f"{where}: {what} lacks kind or name")
        kind, name = cap(kind), cap(name)
        mp = MetricPoint()
        mp.acquisitions = count(p.get("acquisitions", 0), where, f"{what}.acquisitions")
        mp.contentions = count(p.get("contentions", 0), where, f"{what}.contentions")
        mp.timeouts = count(p.get("timeouts", 0), where, f"{what}.timeouts")
        mp.wait_time = seconds(p.get("wait_total", 0.0), where, f"{what}.wait_total") or 0.0
        mp.hold_time = seconds(p.get("hold_total", 0.0), where, f"{what}.hold_total")
        for key, total, top in (
            ("wait_histogram", "wait_total", "wait_max"),
            ("hold_histogram", "hold_total", "hold_max"),
        ):
            counts = p.get(key)
            if counts is None:
                continue
            hist = histogram(counts, bounds, p.get(total), None, p.get(top), where, f"{what}.{key}")
            setattr(mp, "wait_hist" if key == "wait_histogram" else "hold_hist", hist)
        old = snap.points.get((kind, name))
        if old is None:
            snap.points[(kind, name)] = mp
        else:
            old.add(mp)
    tel = doc.get("telemetry", {})
    if isinstance(tel, dict):
        for key in ("produced", "dropped", "suppressed"):
            if key in tel:
                snap.telemetry[key] = count(tel[key], where, f"telemetry.{key}")
        lanes = tel.get("exporters", {})
        if isinstance(lanes, dict):
            for exporter, values in lanes.items():
                if isinstance(values, dict):
                    snap.exporters[str(exporter)] = {
                        k: count(v, where, f"telemetry.exporters.{exporter}.{k}")
                        for k, v in values.items()
                    }
    return snap
