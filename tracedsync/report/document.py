"""The report as a document: the model's plain-data form.

:func:`build_document` turns an :class:`~tracedsync.report.model.Analysis`
into plain data with stable keys (``--format json`` is it, as is); every
other format renders that document. Durations in the document are seconds
(floats), times ISO 8601 UTC.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from tracedsync.report.model import LOCK_KINDS, Analysis, Hist, PrimAgg, Sketch

FORMAT_VERSION = "tracedsync-report/1"
SITES_PER_PRIMITIVE = 3
HOLDERS_PER_SITE = 3


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns % 1_000_000_000) // 1000:06d}Z"


def _s(ns: int | float | None) -> float | None:
    """Nanoseconds to seconds, rounded to the nanosecond."""
    if ns is None:
        return None
    return round(ns / 1e9, 9)


def _round(value: float | None) -> float | None:
    if value is None or value != value or math.isinf(value):
        return None
    return round(value, 9)


def _hist_stats(hist: Hist | None, total: float | None) -> dict[str, Any] | None:
    if hist is None:
        return None
    return {
        "count": hist.count,
        "total": _round(total if total is not None else hist.sum),
        "p50": _round(hist.quantile(0.50)),
        "p95": _round(hist.quantile(0.95)),
        "p99": _round(hist.quantile(0.99)),
        "max": _round(hist.max if hist.count else 0.0),
    }


def _sketch_stats(sketch: Sketch, count: int, total: int, mx: int) -> dict[str, Any]:
    return {
        "count": count,
        "total": _s(total),
        "p50": _s(sketch.quantile(0.50)),
        "p95": _s(sketch.quantile(0.95)),
        "p99": _s(sketch.quantile(0.99)),
        "max": _s(mx),
    }


def _primitive(p: PrimAgg) -> dict[str, Any]:
    m = p.metrics
    lock_like = p.kind in LOCK_KINDS
    spans = {
        "waits": p.wait_spans,
        "wait_total": _s(p.wait_total),
        "holds": p.hold_spans,
        "hold_total": _s(p.hold_total),
    }
    if m is not None:
        wait = _hist_stats(m.wait_hist, m.wait_time)
        hold = _hist_stats(m.hold_hist, m.hold_time) if lock_like else None
        waits = m.wait_hist.count if m.wait_hist is not None else None
        acquisitions = m.acquisitions if lock_like else None
        calls = acquisitions if lock_like else waits
        contentions: int | None = m.contentions
        timeouts: int | None = m.timeouts
        rate = _round(m.contentions / calls) if calls else 0.0
        if wait is None:
            wait = _sketch_stats(p.wait_sketch, p.wait_spans, p.wait_total, p.wait_max)
            wait["total"] = _round(m.wait_time)
        source = "metrics"
    else:
        wait = _sketch_stats(p.wait_sketch, p.wait_spans, p.wait_total, p.wait_max)
        hold = (
            _sketch_stats(p.hold_sketch, p.hold_spans, p.hold_total, p.hold_max)
            if lock_like
            else None
        )
        acquisitions = waits = None
        contentions = timeouts = None
        rate = None
        source = "spans"
    sites = sorted(p.sites.items(), key=lambda kv: (-kv[1].total, kv[0]))
    site_docs = []
    for site, agg in sites[:SITES_PER_PRIMITIVE]:
        holders = sorted(agg.holders.items(), key=lambda kv: (-kv[1].total, kv[0]))
        site_docs.append(
            {
                "site": site,
                "function": agg.function,
                "waits": agg.count,
                "timeouts": agg.timeouts,
                "total": _s(agg.total),
                "p50": _s(agg.sketch.quantile(0.5)),
                "p95": _s(agg.sketch.quantile(0.95)),
                "max": _s(agg.max),
                "holders": [
                    {
                        "site": hsite,
                        "waits": h.count,
                        "total": _s(h.total),
                        "threads": sorted(h.threads, key=lambda t: (-h.threads[t], t)),
                    }
                    for hsite, h in holders[:HOLDERS_PER_SITE]
                ],
                "holders_total": len(holders),
            }
        )
    return {
        "kind": p.kind,
        "name": p.name,
        "source": source,
        "acquisitions": acquisitions,
        "waits": waits,
        "contentions": contentions,
        "contention_rate": rate,
        "timeouts": timeouts,
        "wait": wait,
        "hold": hold,
        "spans": spans,
        "sites": site_docs,
        "sites_total": len(sites),
    }


def _idle(p: dict[str, Any]) -> bool:
    calls = p["acquisitions"] if p["acquisitions"] is not None else p["waits"]
    spans = p["spans"]["waits"] + p["spans"]["holds"]
    return not calls and not p["contentions"] and not p["timeouts"] and not spans


def build_document(analysis: Analysis, *, top: int | None = None) -> dict[str, Any]:
    """The whole report as plain data; ``top`` limits primitives and threads."""
    every = [_primitive(p) for p in analysis.prims.values()]
    # Created but never used (no acquisition, no wait, no span): not listed.
    prims = [p for p in every if not _idle(p)]
    prims.sort(key=lambda d: (-(d["wait"]["total"] or 0.0), d["kind"], d["name"]))
    threads = sorted(
        analysis.threads.values(),
        key=lambda t: (-t.wait_total, t.name, t.pid or 0, t.tid or 0),
    )
    thread_docs = []
    for t in threads[:top] if top is not None else threads:
        most = max(t.by_prim.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        thread_docs.append(
            {
                "name": t.name,
                "id": t.tid,
                "pid": t.pid,
                "waits": t.waits,
                "wait_total": _s(t.wait_total),
                "wait_max": _s(t.wait_max),
                "holds": t.holds,
                "hold_total": _s(t.hold_total),
                "most_waited_on": (
                    {"kind": most[0][0], "name": most[0][1], "wait_total": _s(most[1])}
                    if most is not None
                    else None
                ),
            }
        )
    findings = [
        {
            "event": f.event,
            "level": f.level,
            "timestamp": f.timestamp,
            "message": f.message,
            "thread": f.thread,
            "primitive": f.primitive,
            "source": f.source,
            "fields": f.fields,
        }
        for f in sorted(
            analysis.findings,
            key=lambda f: (f.time_ns if f.time_ns is not None else 0, f.source),
        )
    ]
    telemetry = {
        k: int(analysis.telemetry.get(k, 0))
        for k in ("produced", "exported", "dropped", "failed", "suppressed")
    }
    counts = dict(sorted(analysis.finding_counts.items()))
    return {
        "format": FORMAT_VERSION,
        "runs": [
            {"run_id": run, "pids": sorted(pids)} for run, pids in sorted(analysis.runs.items())
        ],
        "files": list(analysis.files),
        "time": {
            "run_start": iso(analysis.start_ns),
            "first_span": iso(analysis.first_ns),
            "last_span": iso(analysis.last_ns),
            "since": iso(analysis.filters.since_ns),
            "until": iso(analysis.filters.until_ns),
        },
        "spans": {
            "read": analysis.spans_read,
            "analysed": analysis.spans_used,
            "filtered_out": analysis.spans_filtered,
            "foreign_skipped": analysis.foreign_spans,
            "foreign_scopes": dict(sorted(analysis.foreign_scopes.items())),
            "other_tracedsync": dict(sorted(analysis.other_spans.items())),
        },
        "primitives": prims[:top] if top is not None else prims,
        "primitives_total": len(prims),
        "primitives_idle": len(every) - len(prims),
        "threads": thread_docs,
        "threads_total": len(threads),
        "findings": findings,
        "findings_total": sum(counts.values()),
        "findings_by_event": counts,
        "telemetry": telemetry,
        "warnings": list(analysis.warnings),
    }
