"""``--format table``: the document for a terminal, and ``tracedsync run``'s summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tracedsync._format import clean, duration
from tracedsync.report.document import SCHEDULING_BOUND


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


#: The wait-time group of both tables.
_WAIT_COLUMNS = [
    Column("total", ">", 10, "wait"),
    Column("p50", ">", 3, "wait"),
    Column("p95", ">", 5, "wait"),
    Column("p99", ">", 7, "wait"),
    Column("max", ">", 7, "wait"),
]

PRIMITIVE_COLUMNS = [
    Column("KIND", "<", 9),
    Column("NAME", "<", 10, flex=True, min_width=16),
    Column("CALLS", ">", 8),
    Column("CONT", ">", 7),
    Column("RATE", ">", 8),
    *_WAIT_COLUMNS,
    Column("total", ">", 9, "hold"),
    Column("p50", ">", 2, "hold"),
    Column("p95", ">", 4, "hold"),
    Column("p99", ">", 6, "hold"),
    Column("max", ">", 6, "hold"),
]

IDLE_COLUMNS = [
    Column("KIND", "<", 9),
    Column("NAME", "<", 10, flex=True, min_width=16),
    Column("WAITS", ">", 8),
    Column("BLOCKED", ">", 6),
    Column("TIMEOUTS", ">", 5),
    *_WAIT_COLUMNS,
    Column("STILL", ">", 8),
]

THREAD_COLUMNS = [
    Column("THREAD", "<", 10, flex=True, min_width=12),
    Column("PID", ">", 3),
    Column("WAITS", ">", 8),
    Column("BLOCKED", ">", 10),
    Column("MAX", ">", 7),
    Column("IDLE", ">", 6),
    Column("HELD*", ">", 4),
    Column("MOST WAITED ON", "<", 6, flex=True, min_width=16),
]


def render_table(doc: dict[str, Any], width: int) -> str:
    """The report for a terminal: primitives, idle waits, threads, findings."""
    width = max(40, width)
    out: list[str] = []
    out.extend(_header(doc, width))
    out.append("")
    out.extend(_primitives(doc, width))
    out.append("")
    out.extend(_idle_waits(doc, width))
    out.append("")
    out.extend(_threads(doc, width))
    out.append("")
    out.extend(_findings(doc, width))
    return "\n".join(out) + "\n"


def _more(shown: int, total: int) -> str:
    return f", top {shown} of {total}" if shown < total else ""


def _primitives(doc: dict[str, Any], width: int) -> list[str]:
    prims = doc["primitives"]
    out = [
        _cut(
            "PRIMITIVES by time waited on contention"
            f"{_more(len(prims), doc['primitives_total'])} "
            "(locks and semaphores; percentiles: metrics, every acquisition)",
            width,
        )
    ]
    if not prims:
        out.append("  (none)")
        return out
    rows = []
    for p in prims:
        hold = p["hold"] or {}
        name = clean(p["name"]) + (" *" if p["source"] == "spans" else "")
        rows.append(
            [
                p["kind"],
                name,
                _n(p["calls"]),
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
    out.extend(_rows_with_sites(PRIMITIVE_COLUMNS, rows, prims, width, doc, "primitives"))
    if any(p["source"] == "spans" for p in prims):
        out.append(
            _cut(
                "  * no metrics for this primitive: numbers from spans only "
                "(waits and holds above the thresholds)",
                width,
            )
        )
    return out


def _idle_waits(doc: dict[str, Any], width: int) -> list[str]:
    idle = doc["idle_waits"]
    out = [
        _cut(
            f"IDLE WAITS by total wait{_more(len(idle), doc['idle_waits_total'])} "
            "(waiting for work or a signal: events, conditions -- Queue.get -- and barriers)",
            width,
        )
    ]
    if not idle:
        out.append("  (none)")
        return out
    rows = []
    for p in idle:
        still = p["still_blocked"]["count"]
        rows.append(
            [
                p["kind"],
                clean(p["name"]) + (" *" if p["source"] == "spans" else ""),
                _n(p["waits"]),
                _n(p["blocked"]),
                _n(p["timeouts"]),
                _d(p["wait"]["total"]),
                _d(p["wait"]["p50"]),
                _d(p["wait"]["p95"]),
                _d(p["wait"]["p99"]),
                _d(p["wait"]["max"]),
                f"{still:,}" if still else "-",
            ]
        )
    out.extend(_rows_with_sites(IDLE_COLUMNS, rows, idle, width, doc, "idle_waits"))
    if any(p["still_blocked"]["count"] for p in idle):
        out.append(_cut("  STILL: waits still blocked when the program ended", width))
    return out


def _rows_with_sites(
    columns: Sequence[Column],
    rows: list[list[str]],
    entries: list[dict[str, Any]],
    width: int,
    doc: dict[str, Any],
    section: str,
) -> list[str]:
    table = format_table(columns, rows, width)
    heading = len(table) - len(rows)
    out = table[:heading]
    for p, line in zip(entries, table[heading:], strict=True):
        out.append(line)
        out.extend(_handoff_lines(p, width))
        out.extend(_site_lines(p, width))
        out.extend(_still_lines(p, doc, width, section))
    return out


def _threads(doc: dict[str, Any], width: int) -> list[str]:
    threads = doc["threads"]
    out = [
        _cut(
            f"THREADS by time blocked on contention{_more(len(threads), doc['threads_total'])} "
            "(from wait spans above the threshold; IDLE: waits for work or a signal)",
            width,
        )
    ]
    if not threads:
        out.append("  (no wait or hold spans)")
        return out
    pids = {t["pid"] for t in threads}
    rows = []
    for t in threads:
        most = t["most_waited_on"]
        name = clean(t["name"]) + (f" ({t['threads']} threads)" if t["threads"] > 1 else "")
        rows.append(
            [
                name,
                str(t["pid"]) if t["pid"] is not None else "-",
                _n(t["waits"]),
                _d(t["wait_total"]),
                _d(t["wait_max"]),
                _d(t["idle_total"]),
                _d(t["hold_total"]),
                clean(most["name"]) if most else "-",
            ]
        )
    cols = list(THREAD_COLUMNS)
    if len(pids) <= 1:
        keep = [i for i in range(len(cols)) if i != 1]
        cols = [cols[i] for i in keep]
        rows = [[r[i] for i in keep] for r in rows]
    out.extend(format_table(cols, rows, width))
    out.append(
        _cut(
            "  * HELD: time in hold spans only (holds at or above hold_threshold_ms); "
            "the metrics have no per-thread hold time",
            width,
        )
    )
    return out


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


def handoff_text(p: dict[str, Any]) -> str | None:
    """The hand-off line of a lock-like primitive (None without hand-off data):
    its share of the time waited, flagged when the lock is not the cause."""
    h = p.get("handoff")
    if not h or not h["waits"] or h["share"] is None:
        return None
    share = (
        f"hand-off {h['share'] * 100:.1f}% of {_d(h['wait_total'])} waited, "
        f"over {h['waits']:,} waits"
    )
    if h["scheduling_bound"]:
        return f"! {SCHEDULING_BOUND} ({share})"
    return share


def _handoff_lines(p: dict[str, Any], width: int) -> list[str]:
    text = handoff_text(p)
    return [_cut(f"    {text}", width)] if text else []


def _site_lines(p: dict[str, Any], width: int) -> list[str]:
    lines = []
    for s in p["sites"]:
        fn = f" in {clean(s['function'])}" if s["function"] else ""
        timeouts = f", {s['timeouts']:,} timed out" if s["timeouts"] else ""
        blocked = f", {s['still_blocked']:,} still blocked" if s["still_blocked"] else ""
        gone = s.get("released_before_wait")
        if gone:
            blocked += f", {gone:,} released before the waiter looked"
        lines.append(
            _cut(
                f"    waited at {clean(s['site'])}{fn}: {s['waits']:,} waits, "
                f"{_d(s['total'])}, p95 {_d(s['p95'])}, max {_d(s['max'])}{timeouts}{blocked}",
                width,
            )
        )
        for h in s["holders"]:
            who = ", ".join(clean(t) for t in h["threads"][:3])
            if len(h["threads"]) > 3:
                who += ", …"
            by = f" by {who}" if who else ""
            taken = (
                f" (taken at {', '.join(clean(a) for a in h['acquired_at'][:2])})"
                if h["acquired_at"]
                else ""
            )
            lines.append(
                _cut(
                    f"      ← held at {clean(h['site'])}{taken}{by}: {h['waits']:,} waits, "
                    f"{_d(h['total'])}",
                    width,
                )
            )
    hidden = p["sites_total"] - len(p["sites"])
    if hidden > 0:
        lines.append(_cut(f"    … {hidden} more waiting sites", width))
    return lines


def _still_lines(p: dict[str, Any], doc: dict[str, Any], width: int, section: str) -> list[str]:
    """The waits on ``p`` still blocked at the end, longest first (three at most)."""
    mine = [
        u
        for u in doc["still_blocked"]
        if u["section"] == section and u["kind"] == p["kind"] and u["name"] == p["name"]
    ]
    what = "still blocked at exit" if section == "primitives" else "still waiting at exit"
    lines = []
    for u in mine[:3]:
        holder = f", held by {clean(u['holder'])}" if u["holder"] else ""
        if u["holder_site"]:
            holder += f" at {clean(u['holder_site'])}"
        lines.append(
            _cut(
                f"    {what}: {clean(u['thread'])} at {clean(u['site'])} for "
                f"{_d(u['waited'])}{holder}",
                width,
            )
        )
    if len(mine) > 3:
        lines.append(_cut(f"    … {len(mine) - 3} more {what}", width))
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
    for name, lane in tel["exporters"].items():
        if lane["lane_dropped"] or lane["failed"]:
            lines.append(
                _cut(
                    f"  exporter {clean(name)}: {lane['exported']:,} of {lane['offered']:,} "
                    f"exported, {lane['lane_dropped']:,} dropped, {lane['failed']:,} failed",
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


def render_summary(doc: dict[str, Any], where: str, width: int) -> str:
    """A few lines for ``tracedsync run``: the run, the top rows of both
    sections, waits still blocked, findings, where the files are."""
    runs = doc["runs"]
    pids = sum(len(r["pids"]) for r in runs)
    run = clean(runs[0]["run_id"]) if len(runs) == 1 else f"{len(runs)} runs"
    lines = [f"tracedsync: run {run}, {pids} process(es), files in {clean(where)}"]
    for p in doc["primitives"]:
        if not p["contentions"] and not p["wait"]["total"]:
            continue  # never waited for: not worth a line here
        calls = p["calls"]
        rate = p["contention_rate"]
        contended = (
            f", {p['contentions']:,} contended ({rate * 100:.1f}%)"
            if p["contentions"] is not None and rate is not None
            else ""
        )
        p99 = p["wait"]["p99"]
        h = p["handoff"]
        lines.append(
            f"  {p['kind']} {clean(p['name'])}: {calls or 0:,} calls{contended}, "
            f"waited {duration(p['wait']['total'] or 0.0)}"
            + (f", p99 {duration(p99)}" if p99 is not None else "")
            + (
                f", {p['still_blocked']['count']} still blocked"
                if p["still_blocked"]["count"]
                else ""
            )
            + (
                f"; CPU/GIL-bound, not this lock (hand-off {h['share'] * 100:.0f}%)"
                if h["scheduling_bound"]
                else ""
            )
        )
    for p in doc["idle_waits"][:3]:
        still = p["still_blocked"]["count"]
        lines.append(
            f"  idle: {p['kind']} {clean(p['name'])}: {p['waits'] or p['spans']['waits']:,} waits, "
            f"{duration(p['wait']['total'] or 0.0)} waiting for work or a signal"
            + (f", {still} still waiting at exit" if still else "")
        )
    if doc["findings_by_event"]:
        counts = ", ".join(f"{clean(k)} {v}" for k, v in doc["findings_by_event"].items())
        lines.append(f"  findings: {counts}")
    tel = doc["telemetry"]
    if tel["dropped"] or tel["failed"]:
        lines.append(
            f"  telemetry: {tel['dropped']:,} records dropped, {tel['failed']:,} failed to export"
        )
    lines.extend(f"  warning: {clean(w)}" for w in doc["warnings"])
    lines.append(f"  tracedsync report {clean(where)}   for the full analysis")
    return "".join(
        (line if len(line) <= width else line[: max(0, width - 1)] + "…") + "\n" for line in lines
    )
