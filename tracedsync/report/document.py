"""The report as a document: the model's plain-data form.

:func:`build_document` turns an :class:`~tracedsync.report.model.Analysis`
into plain data with stable keys (``--format json`` is it, as is); every
other format renders that document. Durations in the document are seconds
(floats), times ISO 8601 UTC.

Two sections: ``primitives`` ranks lock-like primitives (lock, rlock,
semaphore, bounded_semaphore: a condition's lock is one of these) by time
waited on contention; ``idle_waits`` lists waits for work or a signal
(event, condition -- ``Queue.get`` is one -- and barrier) with their own
totals. Waits still blocked at the end are in their section's numbers and
listed in ``still_blocked``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from tracedsync.kinds import LOCK_KINDS
from tracedsync.report.metrics import Hist
from tracedsync.report.model import Analysis, PrimAgg, Sketch, ThreadAgg, Unfinished

FORMAT_VERSION = "tracedsync-report/1"
SITES_PER_PRIMITIVE = 3
HOLDERS_PER_SITE = 3
#: A lock is flagged "wait far exceeds holds: CPU/GIL-bound, not this lock"
#: when, over at least HANDOFF_MIN_WAITS of its wait spans that carry
#: sync.wait.handoff, the hand-off (from the holder's release to the
#: waiter's return: the time the waiter needed the CPU or the GIL, not the
#: lock) is at least HANDOFF_SHARE of the time waited.
HANDOFF_SHARE = 0.5
HANDOFF_MIN_WAITS = 3
SCHEDULING_BOUND = "wait far exceeds holds: CPU/GIL-bound, not this lock"
#: A thread name ending in a number (``worker-3``, ``Thread-7 (serve)``,
#: ``ThreadPoolExecutor-0_3``): threads whose names differ only there are
#: one row.
_NUMBERED = re.compile(r"^(.*?)(\d+)((?: \([^()]*\))?)$")


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


def _stats(
    hist: Hist | None,
    total: float | None,
    exact: list[float] | None,
    unfinished: Sequence[Unfinished],
) -> dict[str, Any] | None:
    """count/total/p50/p95/p99/max from the metrics histogram plus the waits
    still blocked (``exact``: the sorted observations, when all are known)."""
    if hist is None:
        return None
    if unfinished:
        hist = hist.copy()
        for u in unfinished:
            hist.add_sample(u.waited_ns / 1e9)
        total = (total if total is not None else 0.0) + sum(u.waited_ns for u in unfinished) / 1e9
    return {
        "count": hist.count,
        "total": _round(total if total is not None else hist.sum),
        "p50": _round(hist.quantile(0.50, exact)),
        "p95": _round(hist.quantile(0.95, exact)),
        "p99": _round(hist.quantile(0.99, exact)),
        "max": _round(hist.max if hist.count else 0.0),
    }


def _span_stats(
    sketch: Sketch, count: int, total: int, mx: int, exact: list[int] | None
) -> dict[str, Any]:
    """The same from spans alone (no metrics for the primitive)."""

    def q(p: float) -> float | None:
        if exact is not None and len(exact) == count:
            return _s(exact[max(1, math.ceil(p * count - 1e-9)) - 1]) if count else None
        return _s(sketch.quantile(p))

    return {
        "count": count,
        "total": _s(total),
        "p50": q(0.50),
        "p95": q(0.95),
        "p99": q(0.99),
        "max": _s(mx),
    }


def _exact(spans: list[int] | None, unfinished: Sequence[Unfinished]) -> list[float] | None:
    if spans is None:
        return None
    return sorted([ns / 1e9 for ns in spans] + [u.waited_ns / 1e9 for u in unfinished])


def _still_blocked(p: PrimAgg) -> dict[str, Any]:
    return {
        "count": len(p.unfinished),
        "longest": _s(max((u.waited_ns for u in p.unfinished), default=0))
        if p.unfinished
        else None,
    }


def _sites(p: PrimAgg, name: Callable[[str], str]) -> list[dict[str, Any]]:
    sites = sorted(p.sites.items(), key=lambda kv: (-kv[1].total, kv[0]))
    out = []
    for raw, agg in sites[:SITES_PER_PRIMITIVE]:
        site = name(raw)
        holders = sorted(agg.holders.items(), key=lambda kv: (-kv[1].total, kv[0]))
        out.append(
            {
                "site": site,
                "function": agg.function,
                "waits": agg.count,
                "still_blocked": agg.blocked,
                "released_before_wait": agg.released_before,
                "timeouts": agg.timeouts,
                "total": _s(agg.total),
                "p50": _s(agg.sketch.quantile(0.5)),
                "p95": _s(agg.sketch.quantile(0.95)),
                "max": _s(agg.max),
                "holders": [
                    {
                        "site": hsite,
                        "acquired_at": sorted(h.acquired_at, key=lambda a: (-h.acquired_at[a], a)),
                        "waits": h.count,
                        "total": _s(h.total),
                        "threads": sorted(h.threads, key=lambda t: (-h.threads[t], t)),
                    }
                    for hsite, h in holders[:HOLDERS_PER_SITE]
                ],
                "holders_total": len(holders),
            }
        )
    return out


def _primitive(p: PrimAgg, exact_ok: bool, name: Callable[[str], str]) -> dict[str, Any]:
    """A lock-like primitive: contention."""
    m = p.metrics
    blocked = len(p.unfinished)
    wait_exact = _exact(p.wait_exact, p.unfinished) if exact_ok else None
    hold_exact = sorted(ns / 1e9 for ns in p.hold_exact) if exact_ok and p.hold_exact else None
    if m is not None:
        wait = _stats(m.wait_hist, m.wait_time, wait_exact, p.unfinished)
        hold = _stats(m.hold_hist, m.hold_time, hold_exact, ())
        # A timed-out acquire is a contention. Files written before the
        # counters said so have more timeouts than contentions.
        contended = m.contentions + (m.timeouts if m.timeouts > m.contentions else 0)
        contentions: int | None = contended + blocked
        timeouts: int | None = m.timeouts
        acquisitions: int | None = m.acquisitions
        # Calls: acquisitions, acquires that timed out, and waits still blocked.
        calls: int | None = (m.acquisitions or 0) + m.timeouts + blocked
        rate = _round(contended_rate(contentions, calls))
        if wait is None:
            wait = _span_stats(p.wait_sketch, p.wait_spans, p.wait_total, p.wait_max, p.wait_exact)
            wait["total"] = _round(m.wait_time)
        source = "metrics"
    else:
        wait = _span_stats(p.wait_sketch, p.wait_spans, p.wait_total, p.wait_max, p.wait_exact)
        hold = _span_stats(p.hold_sketch, p.hold_spans, p.hold_total, p.hold_max, p.hold_exact)
        acquisitions = contentions = timeouts = calls = None
        rate = None
        source = "spans"
        if blocked:
            wait = _with_unfinished(wait, p.unfinished)
    return {
        "kind": p.kind,
        "name": p.name,
        "source": source,
        "acquisitions": acquisitions,
        "calls": calls,
        "contentions": contentions,
        "contention_rate": rate,
        "timeouts": timeouts,
        "wait": wait,
        "hold": hold,
        "still_blocked": _still_blocked(p),
        "released_before_wait": p.released_before,
        "handoff": handoff(p),
        "spans": {
            "waits": p.wait_spans,
            "wait_total": _s(p.wait_total),
            "holds": p.hold_spans,
            "hold_total": _s(p.hold_total),
        },
        "sites": _sites(p, name),
        "sites_total": len(p.sites),
    }


def handoff(p: PrimAgg) -> dict[str, Any]:
    """The hand-off share of a primitive's waits, and whether it is
    scheduling-bound (see HANDOFF_SHARE)."""
    share = p.handoff_total / p.handoff_wait_total if p.handoff_wait_total else None
    return {
        "waits": p.handoff_waits,
        "total": _s(p.handoff_total),
        "wait_total": _s(p.handoff_wait_total),
        "share": _round(share),
        "scheduling_bound": bool(
            share is not None and p.handoff_waits >= HANDOFF_MIN_WAITS and share >= HANDOFF_SHARE
        ),
    }


def contended_rate(contentions: int | None, calls: int | None) -> float:
    """Contentions per call (0 without calls)."""
    return min(1.0, contentions / calls) if calls and contentions is not None else 0.0


def _with_unfinished(wait: dict[str, Any], unfinished: Sequence[Unfinished]) -> dict[str, Any]:
    longest = max(u.waited_ns for u in unfinished) / 1e9
    out = dict(wait)
    out["count"] = (wait["count"] or 0) + len(unfinished)
    out["total"] = _round((wait["total"] or 0.0) + sum(u.waited_ns for u in unfinished) / 1e9)
    out["max"] = _round(max(wait["max"] or 0.0, longest))
    return out


def _idle_wait(p: PrimAgg, exact_ok: bool, name: Callable[[str], str]) -> dict[str, Any]:
    """An event, condition or barrier: waits for work or a signal."""
    m = p.metrics
    blocked = len(p.unfinished)
    wait_exact = _exact(p.wait_exact, p.unfinished) if exact_ok else None
    if m is not None and m.wait_hist is not None:
        wait = _stats(m.wait_hist, m.wait_time, wait_exact, p.unfinished)
        assert wait is not None
        waits: int | None = wait["count"]
        contended: int | None = m.contentions + blocked
        timeouts: int | None = m.timeouts
        source = "metrics"
    else:
        wait = _span_stats(p.wait_sketch, p.wait_spans, p.wait_total, p.wait_max, p.wait_exact)
        if blocked:
            wait = _with_unfinished(wait, p.unfinished)
        waits = contended = timeouts = None
        if m is not None:
            contended, timeouts = m.contentions + blocked, m.timeouts
            wait["total"] = _round(m.wait_time)
        source = "metrics" if m is not None else "spans"
    return {
        "kind": p.kind,
        "name": p.name,
        "source": source,
        "waits": waits,
        "blocked": contended,
        "timeouts": timeouts,
        "wait": wait,
        "still_blocked": _still_blocked(p),
        "spans": {"waits": p.wait_spans, "wait_total": _s(p.wait_total)},
        "sites": _sites(p, name),
        "sites_total": len(p.sites),
    }


def _unused(doc: dict[str, Any]) -> bool:
    """Created but never used: no acquisition, no wait, no span."""
    calls = doc.get("acquisitions") if "acquisitions" in doc else doc.get("waits")
    spans = doc["spans"]["waits"] + doc["spans"].get("holds", 0)
    return (
        not calls
        and not doc.get("contentions", doc.get("blocked"))
        and not doc["timeouts"]
        and not spans
        and not doc["still_blocked"]["count"]
    )


def thread_rows(threads: Sequence[ThreadAgg]) -> list[dict[str, Any]]:
    """Threads as rows: those whose names differ only in a number (per
    process) are one row with a count; the others keep their names."""
    groups: dict[tuple[Any, str], list[ThreadAgg]] = {}
    for t in threads:
        match = _NUMBERED.match(t.name)
        key = (t.pid, f"{match.group(1)}*{match.group(3)}") if match else (t.pid, t.name)
        groups.setdefault(key, []).append(t)
    rows: list[dict[str, Any]] = []
    for (pid, pattern), members in groups.items():
        if len(members) == 1 or not _NUMBERED.match(members[0].name):
            rows.extend(_thread_row([t], t.name, pid) for t in members)
        else:
            rows.append(_thread_row(members, pattern, pid))
    rows.sort(
        key=lambda r: (
            -r["wait_total"],
            -r["idle_total"],
            -r["hold_total"],
            r["name"],
            r["pid"] or 0,
        )
    )
    return rows


def _thread_row(members: list[ThreadAgg], name: str, pid: Any) -> dict[str, Any]:
    by_prim: dict[tuple[str, str], int] = {}
    for t in members:
        for key, ns in t.by_prim.items():
            by_prim[key] = by_prim.get(key, 0) + ns
    lock_like = {k: v for k, v in by_prim.items() if k[0] in LOCK_KINDS}
    most = max((lock_like or by_prim).items(), key=lambda kv: (kv[1], kv[0]), default=None)
    return {
        "name": name,
        "threads": len(members),
        "id": members[0].tid if len(members) == 1 else None,
        "pid": pid,
        "waits": sum(t.waits for t in members),
        "wait_total": _s(sum(t.wait_total for t in members)) or 0.0,
        "wait_max": _s(max(t.wait_max for t in members)),
        "idle_waits": sum(t.idle_waits for t in members),
        "idle_total": _s(sum(t.idle_total for t in members)) or 0.0,
        "holds": sum(t.holds for t in members),
        "hold_total": _s(sum(t.hold_total for t in members)) or 0.0,
        "most_waited_on": (
            {"kind": most[0][0], "name": most[0][1], "wait_total": _s(most[1])}
            if most is not None
            else None
        ),
    }


def _still_blocked_list(analysis: Analysis, name: Callable[[str], str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in analysis.prims.values():
        for u in p.unfinished:
            out.append(
                {
                    "section": "idle_waits" if p.idle else "primitives",
                    "kind": u.kind,
                    "name": u.name,
                    "instance": u.instance,
                    "thread": u.thread,
                    "pid": u.pid,
                    "site": name(u.site),
                    "since": iso(u.end_ns - u.waited_ns) if u.end_ns else None,
                    "waited": _s(u.waited_ns),
                    "holder": u.holder,
                    "holder_site": u.holder_site,
                    "source": u.source,
                }
            )
    out.sort(key=lambda d: (d["section"] != "primitives", -(d["waited"] or 0.0), d["thread"]))
    return out


def build_document(analysis: Analysis, *, top: int | None = None) -> dict[str, Any]:
    """The whole report as plain data; ``top`` limits each section and the threads."""
    f = analysis.filters
    exact_ok = f.since_ns is None and f.until_ns is None
    name = analysis.site_namer()
    every = [
        _idle_wait(p, exact_ok, name) if p.idle else _primitive(p, exact_ok, name)
        for p in analysis.prims.values()
    ]
    used = [d for d in every if not _unused(d)]
    prims = [d for d in used if d["kind"] in LOCK_KINDS]
    idle = [d for d in used if d["kind"] not in LOCK_KINDS]
    for section in (prims, idle):
        section.sort(key=lambda d: (-(d["wait"]["total"] or 0.0), d["kind"], d["name"]))
    threads = thread_rows(list(analysis.threads.values()))
    findings = [
        {
            "event": x.event,
            "level": x.level,
            "timestamp": x.timestamp,
            "message": x.message,
            "thread": x.thread,
            "primitive": x.primitive,
            "source": x.source,
            "fields": x.fields,
        }
        for x in sorted(
            analysis.findings, key=lambda x: (x.time_ns if x.time_ns is not None else 0, x.source)
        )
    ]
    counts = dict(sorted(analysis.finding_counts.items()))
    still = _still_blocked_list(analysis, name)
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
            "since": iso(f.since_ns),
            "until": iso(f.until_ns),
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
        "primitives_idle": sum(1 for d in every if _unused(d)),
        "idle_waits": idle[:top] if top is not None else idle,
        "idle_waits_total": len(idle),
        "still_blocked": still,
        "still_blocked_total": {
            "primitives": sum(1 for d in still if d["section"] == "primitives"),
            "idle_waits": sum(1 for d in still if d["section"] == "idle_waits"),
        },
        "threads": threads[:top] if top is not None else threads,
        "threads_total": len(threads),
        "findings": findings,
        "findings_total": sum(counts.values()),
        "findings_by_event": counts,
        "telemetry": _telemetry(analysis),
        "warnings": list(analysis.warnings),
    }


def _telemetry(analysis: Analysis) -> dict[str, Any]:
    """The shared buffer's counters, and each exporter's lane."""
    t = analysis.telemetry
    lanes = {
        name: {k: int(lane.get(k, 0)) for k in ("offered", "exported", "lane_dropped", "failed")}
        for name, lane in sorted(analysis.exporters.items())
    }
    return {
        "produced": int(t.get("produced", 0)),
        "exported": int(t.get("exported", 0)) + sum(lane["exported"] for lane in lanes.values()),
        "dropped": int(t.get("dropped", 0)),
        "failed": int(t.get("failed", 0)) + sum(lane["failed"] for lane in lanes.values()),
        "suppressed": int(t.get("suppressed", 0)),
        "exporters": lanes,
    }
