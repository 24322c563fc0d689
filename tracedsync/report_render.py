"""The report as a document (``--format json``) and as a terminal table (internal).

:func:`build_document` turns an :class:`~tracedsync.report_model.Analysis`
into plain data with stable keys; every other format renders that document.
Durations in the document are seconds (floats), times ISO 8601 UTC.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tracedsync._format import clean, duration
from tracedsync.report_model import LOCK_KINDS, Analysis, Hist, PrimAgg, Sketch

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


# -- JSON -------------------------------------------------------------------------------

_HTML_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


_UNSAFE = re.compile("[<>&\u2028\u2029]")
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON that is also safe inside HTML ``<script>`` (``<``, ``>``, ``&`` escaped)."""
    if indent is None:
        text = _ENCODER.encode(value)
    else:
        text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False, default=str)
    return text.translate(_HTML_SAFE) if _UNSAFE.search(text) else text


def render_json(doc: dict[str, Any]) -> str:
    return dumps(doc, indent=2) + "\n"


# -- table --------------------------------------------------------------------------------


@dataclass
class Column:
    title: str
    align: str = ">"
    #: Higher is kept longer when the terminal is narrow.
    priority: int = 5
    group: str = ""
    flex: bool = False
    min_width: int = 12


def _ellipsize(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def format_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """Rows aligned in columns, dropping low-priority columns and shrinking the
    flexible one until the table fits ``width``."""
    keep = list(range(len(columns)))
    widths = [max([len(columns[i].title), *(len(r[i]) for r in rows)]) for i in range(len(columns))]

    def total(idx: list[int]) -> int:
        return sum(widths[i] for i in idx) + 2 * (len(idx) - 1)

    def shrink_flex(floor: int) -> None:
        for i in keep:
            if columns[i].flex and total(keep) > width:
                target = max(min(widths[i], floor), widths[i] - (total(keep) - width))
                widths[i] = max(target, min(widths[i], floor))

    def drop(max_priority: int) -> None:
        while total(keep) > width:
            droppable = [
                i for i in keep if not columns[i].flex and columns[i].priority <= max_priority
            ]
            if not droppable or len(keep) <= 2:
                return
            keep.remove(min(droppable, key=lambda i: (columns[i].priority, -i)))

    # Names first keep a comfortable width, then the least useful columns go,
    # then names shrink to their minimum, then anything but the first goes.
    drop(3)
    shrink_flex(40)
    drop(6)
    shrink_flex(24)
    drop(7)
    for i in keep:
        if columns[i].flex:
            shrink_flex(columns[i].min_width)
    drop(8)
    lines = []
    if any(columns[i].group for i in keep):
        parts = []
        j = 0
        while j < len(keep):
            group = columns[keep[j]].group
            k = j
            while k + 1 < len(keep) and columns[keep[k + 1]].group == group:
                k += 1
            span = sum(widths[keep[x]] for x in range(j, k + 1)) + 2 * (k - j)
            if group:
                label = f" {group} "
                if span >= len(label) + 2:
                    parts.append(label.center(span, "─"))
                else:
                    parts.append(group[:span].center(span))
            else:
                parts.append(" " * span)
            j = k + 1
        lines.append("  ".join(parts).rstrip())

    def fmt(cells: Sequence[str]) -> str:
        out = []
        for i in keep:
            col, w = columns[i], widths[i]
            text = _ellipsize(cells[i], w) if col.flex else cells[i]
            out.append(text.ljust(w) if col.align == "<" else text.rjust(w))
        return "  ".join(out).rstrip()

    lines.append(fmt([c.title for c in columns]))
    lines.extend(fmt(r) for r in rows)
    return lines


def _d(seconds: float | None) -> str:
    return "-" if seconds is None else duration(seconds)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _clock(iso_text: str | None) -> str:
    if not iso_text:
        return "?"
    # 2026-01-02T12:00:01.234567Z -> 12:00:01.234
    return iso_text[11:23] if len(iso_text) >= 23 else iso_text


PRIMITIVE_COLUMNS = [
    Column("KIND", "<", 9),
    Column("NAME", "<", 10, flex=True, min_width=16),
    Column("CALLS", ">", 8),
    Column("CONT", ">", 7),
    Column("RATE", ">", 8),
    Column("total", ">", 10, "wait"),
    Column("p50", ">", 3, "wait"),
    Column("p95", ">", 5, "wait"),
    Column("p99", ">", 7, "wait"),
    Column("max", ">", 7, "wait"),
    Column("total", ">", 9, "hold"),
    Column("p50", ">", 2, "hold"),
    Column("p95", ">", 4, "hold"),
    Column("p99", ">", 6, "hold"),
    Column("max", ">", 6, "hold"),
]

THREAD_COLUMNS = [
    Column("THREAD", "<", 10, flex=True, min_width=12),
    Column("PID", ">", 3),
    Column("WAITS", ">", 8),
    Column("WAITED", ">", 10),
    Column("MAX", ">", 7),
    Column("HELD", ">", 5),
    Column("MOST WAITED ON", "<", 6, flex=True, min_width=16),
]


def render_table(doc: dict[str, Any], width: int) -> str:
    """The report for a terminal: primitives, threads, findings."""
    width = max(40, width)
    out: list[str] = []
    out.extend(_header(doc, width))
    prims = doc["primitives"]
    out.append("")
    shown = len(prims)
    total = doc["primitives_total"]
    more = f", top {shown} of {total}" if shown < total else ""
    out.append(
        _cut(f"PRIMITIVES by total wait{more} (percentiles: metrics, every acquisition)", width)
    )
    if not prims:
        out.append("  (none)")
    rows = []
    for p in prims:
        calls = p["acquisitions"] if p["acquisitions"] is not None else p["waits"]
        hold = p["hold"] or {}
        name = clean(p["name"]) + (" *" if p["source"] == "spans" else "")
        rows.append(
            [
                p["kind"],
                name,
                _n(calls),
                _n(p["contentions"]),
                _rate(p["contention_rate"]),
                _d(p["wait"]["total"]),
                _d(p["wait"]["p50"]),
                _d(p["wait"]["p95"]),
                _d(p["wait"]["p99"]),
                _d(p["wait"]["max"]),
                _d(hold.get("total")),
                _d(hold.get("p50")),
                _d(hold.get("p95")),
                _d(hold.get("p99")),
                _d(hold.get("max")),
            ]
        )
    if prims:
        table = format_table(PRIMITIVE_COLUMNS, rows, width)
        prefix = common_directory(s["site"] for p in prims for s in p["sites"])
        heading = len(table) - len(rows)
        out.extend(table[:heading])
        body = table[heading:]
        for p, line in zip(prims, body, strict=True):
            out.append(line)
            out.extend(_site_lines(p, width, prefix))
        if any(p["source"] == "spans" for p in prims):
            out.append(
                _cut(
                    "  * no metrics for this primitive: numbers from spans only "
                    "(waits and holds above the thresholds)",
                    width,
                )
            )
    out.append("")
    threads = doc["threads"]
    more = (
        f", top {len(threads)} of {doc['threads_total']}"
        if len(threads) < doc["threads_total"]
        else ""
    )
    out.append(_cut(f"THREADS by time waiting{more} (from wait spans above the threshold)", width))
    if not threads:
        out.append("  (no wait or hold spans)")
    else:
        pids = {t["pid"] for t in threads}
        rows = []
        for t in threads:
            most = t["most_waited_on"]
            rows.append(
                [
                    clean(t["name"]),
                    str(t["pid"]) if t["pid"] is not None else "-",
                    _n(t["waits"]),
                    _d(t["wait_total"]),
                    _d(t["wait_max"]),
                    _d(t["hold_total"]),
                    clean(most["name"]) if most else "-",
                ]
            )
        cols = list(THREAD_COLUMNS)
        if len(pids) <= 1:
            cols[1] = Column("PID", ">", 0)
            cols_idx = [i for i in range(len(cols)) if i != 1]
            cols = [cols[i] for i in cols_idx]
            rows = [[r[i] for i in cols_idx] for r in rows]
        out.extend(format_table(cols, rows, width))
    out.append("")
    out.extend(_findings(doc, width))
    return "\n".join(out) + "\n"


def _header(doc: dict[str, Any], width: int) -> list[str]:
    runs = doc["runs"]
    if len(runs) == 1:
        n = len(runs[0]["pids"])
        what = f"run {clean(runs[0]['run_id'])} ({n} process{'es' if n != 1 else ''})"
    elif runs:
        what = f"{len(runs)} runs ({', '.join(clean(r['run_id']) for r in runs)})"
    else:
        what = "files without a run id"
    t = doc["time"]
    when = ""
    start = t["run_start"] or t["first_span"]
    if start:
        when = f", started {start[:10]} {start[11:19]} UTC"
    lines = [_cut(f"tracedsync report: {what}{when}", width)]
    spans = doc["spans"]
    parts = [f"{len(doc['files'])} files", f"{spans['analysed']:,} spans analysed"]
    if spans["filtered_out"]:
        parts.append(f"{spans['filtered_out']:,} filtered out")
    if spans["foreign_skipped"]:
        scopes = ", ".join(clean(s) for s in spans["foreign_scopes"])
        parts.append(f"{spans['foreign_skipped']:,} spans of other scopes skipped ({scopes})")
    other = sum(spans["other_tracedsync"].values())
    if other:
        parts.append(f"{other:,} other tracedsync spans")
    lines.append(_cut("  " + "; ".join(parts), width))
    if t["since"] or t["until"]:
        lines.append(
            _cut(
                f"  window: {t['since'] or 'start'} .. {t['until'] or 'end'} "
                "(metrics: difference of the snapshots around it)",
                width,
            )
        )
    for w in doc["warnings"]:
        lines.append(_cut(f"  warning: {clean(w)}", width))
    return lines


def common_directory(sites: Iterable[str]) -> str:
    """The directory all absolute call-site paths share (``""`` if none), so the
    table can show ``app/db.py:41`` rather than ``/srv/project/app/db.py:41``."""
    dirs = []
    for site in sites:
        path = site.rsplit(":", 1)[0]
        if not path.startswith("/"):
            return ""
        dirs.append(posixpath.dirname(path))
    if not dirs:
        return ""
    common = posixpath.commonpath(dirs)
    return common if common not in ("", "/") else ""


def _library_roots() -> tuple[str, ...]:
    """Directories whose files read better relative: the current directory and
    this interpreter's stdlib and site-packages (longest first)."""
    import os
    import sysconfig

    roots = {os.getcwd()}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(sysconfig.get_paths()[key])
        except KeyError:
            pass
    return tuple(sorted((r.rstrip("/") for r in roots if r and r != "/"), key=len, reverse=True))


_ROOTS: tuple[str, ...] | None = None


def short_site(site: str, prefix: str) -> str:
    """``app/db.py:41`` for ``/srv/project/app/db.py:41``: the shared directory,
    else the current directory or a library directory, is left out."""
    global _ROOTS
    if prefix and site.startswith(prefix + "/"):
        return site[len(prefix) + 1 :]
    if _ROOTS is None:
        _ROOTS = _library_roots()
    for root in _ROOTS:
        if site.startswith(root + "/"):
            return site[len(root) + 1 :]
    return site


def _site_lines(p: dict[str, Any], width: int, prefix: str = "") -> list[str]:
    lines = []
    for s in p["sites"]:
        fn = f" in {clean(s['function'])}" if s["function"] else ""
        timeouts = f", {s['timeouts']:,} timed out" if s["timeouts"] else ""
        lines.append(
            _cut(
                f"    waited at {clean(short_site(s['site'], prefix))}{fn}: {s['waits']:,} waits, "
                f"{_d(s['total'])}, p95 {_d(s['p95'])}, max {_d(s['max'])}{timeouts}",
                width,
            )
        )
        for h in s["holders"]:
            who = ", ".join(clean(t) for t in h["threads"][:3])
            if len(h["threads"]) > 3:
                who += ", …"
            by = f" by {who}" if who else ""
            lines.append(
                _cut(
                    f"      ← held at {clean(h['site'])}{by}: {h['waits']:,} waits, "
                    f"{_d(h['total'])}",
                    width,
                )
            )
    hidden = p["sites_total"] - len(p["sites"])
    if hidden > 0:
        lines.append(_cut(f"    … {hidden} more waiting sites", width))
    return lines


def _findings(doc: dict[str, Any], width: int) -> list[str]:
    lines = ["FINDINGS"]
    tel = doc["telemetry"]
    if tel["dropped"] or tel["failed"]:
        lines.append(
            _cut(
                f"  telemetry: {tel['dropped']:,} records dropped (buffer full) and "
                f"{tel['failed']:,} failed to export, of {tel['produced']:,} produced",
                width,
            )
        )
    if tel["suppressed"]:
        lines.append(
            _cut(
                f"  telemetry: {tel['suppressed']:,} spans suppressed by max_spans_per_second "
                "(site and thread numbers are a sample)",
                width,
            )
        )
    findings = doc["findings"]
    if not findings and len(lines) == 1:
        lines.append("  none")
        return lines
    if doc["findings_by_event"]:
        counts = ", ".join(f"{clean(k)} {v}" for k, v in doc["findings_by_event"].items())
        lines.append(_cut(f"  {doc['findings_total']:,} events: {counts}", width))
    shown = findings[:50]
    for f in shown:
        who = []
        if f["thread"]:
            who.append(clean(f["thread"]))
        if f["primitive"]:
            who.append(clean(f["primitive"]))
        subject = f" [{' · '.join(who)}]" if who else ""
        message = f": {clean(f['message'])}" if f["message"] else ""
        lines.append(
            _cut(
                f"  {_clock(f['timestamp'])} {clean(f['level'])} {clean(f['event'])}"
                f"{subject}{message}",
                width,
            )
        )
    hidden = doc["findings_total"] - len(shown)
    if hidden > 0:
        lines.append(_cut(f"  … {hidden:,} more (see --format json)", width))
    return lines
