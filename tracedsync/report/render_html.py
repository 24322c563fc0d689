"""``tracedsync report --format html``: one self-contained page (internal).

A per-thread timeline of the longest waits and holds (coloured bars; wheel
or buttons zoom, drag pans, hovering shows name, duration, call site and
holder), a flame graph (icicle: the outermost frame on top) of wait time by
stack (clicking a frame zooms into it), and the report's tables. Everything
is inline: a Content Security Policy forbids any fetch. Data goes into the page as JSON in a
``<script type="application/json">`` element with ``<``, ``>`` and ``&``
escaped, and the script puts text into the page with ``textContent`` only;
the tables are rendered here with every value HTML-escaped.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Any

from tracedsync._format import clean, duration
from tracedsync.report.profile import Profile
from tracedsync.report.render_json import dumps
from tracedsync.report.render_profile import flame_data
from tracedsync.report.render_table import handoff_text
from tracedsync.report.timeline import Timeline


def timeline_data(timeline: Timeline, base_ns: int | None) -> dict[str, Any]:
    """The compact JSON the page's script draws: strings interned, times in µs."""
    bars = timeline.bars()
    if base_ns is None:
        base_ns = bars[0].start_ns if bars else 0
    strings: dict[str | None, int] = {None: -1}
    setdefault = strings.setdefault
    threads: dict[tuple[Any, Any, str], int] = {}
    out = []
    for b in bars:
        thread = (b.pid, b.thread_id, b.thread)
        t = threads.get(thread)
        if t is None:
            t = threads[thread] = len(threads)
        out.append(
            [
                t,
                round((b.start_ns - base_ns) / 1000, 3),
                round((b.end_ns - b.start_ns) / 1000, 3),
                1 if b.is_wait else 0,
                setdefault(b.kind, len(strings) - 1),
                setdefault(b.name, len(strings) - 1),
                setdefault(b.site, len(strings) - 1),
                setdefault(b.function, len(strings) - 1),
                setdefault(b.holder, len(strings) - 1),
                setdefault(b.holder_site, len(strings) - 1),
                setdefault(b.outcome, len(strings) - 1),
                setdefault(b.span_id, len(strings) - 1),
            ]
        )
    del strings[None]
    return {
        "threads": [{"name": name, "pid": pid, "id": tid} for (pid, tid, name) in threads],
        "strings": list(strings),
        "bars": out,
        "shown": len(out),
        "kept": timeline.kept,
        "seen": timeline.seen,
    }


def _e(value: Any) -> str:
    return html.escape(clean("" if value is None else value), quote=True)


def _d(seconds: float | None) -> str:
    return "-" if seconds is None else html.escape(duration(seconds))


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _sites_row(p: dict[str, Any], colspan: int) -> str:
    parts = []
    for site in p["sites"]:
        holders = "".join(
            f"<li>← held at <code>{_e(h['site'])}</code>"
            + (
                f" (taken at <code>{_e(', '.join(h['acquired_at'][:2]))}</code>)"
                if h["acquired_at"]
                else ""
            )
            + (f" by {_e(', '.join(h['threads'][:3]))}" if h["threads"] else "")
            + f": {h['waits']:,} waits, {_d(h['total'])}</li>"
            for h in site["holders"]
        )
        fn = f" in <code>{_e(site['function'])}</code>" if site["function"] else ""
        blocked = f", {site['still_blocked']:,} still blocked" if site["still_blocked"] else ""
        gone = site.get("released_before_wait")
        if gone:
            blocked += f", {gone:,} released before the waiter looked"
        parts.append(
            f'<tr class="site"><td></td><td colspan="{colspan}">waited at '
            f"<code>{_e(site['site'])}</code>{fn}: {site['waits']:,} waits, "
            f"{_d(site['total'])}, p95 {_d(site['p95'])}, max {_d(site['max'])}{blocked}"
            f"{'<ul>' + holders + '</ul>' if holders else ''}</td></tr>"
        )
    return "".join(parts)


def _share(h: dict[str, Any]) -> str:
    if h["share"] is None:
        return "-"
    flag = " !" if h["scheduling_bound"] else ""
    return f"{h['share'] * 100:.1f}%{flag}"


def _primitives(doc: dict[str, Any]) -> str:
    parts = [
        '<section id="primitives"><h2>Primitives <small>by time waited on contention '
        "(locks and semaphores)</small></h2>"
    ]
    if not doc["primitives"]:
        parts.append("<p>No lock or semaphore was waited for.</p></section>")
        return "".join(parts)
    parts.append(
        '<div class="scroll"><table class="prims"><thead><tr><th>kind</th><th>name</th>'
        "<th>calls</th><th>contentions</th><th>rate</th><th>still blocked</th>"
        '<th title="share of the time waited between the release and the waiter\'s return">'
        "hand-off</th>"
        '<th class="w">wait total</th><th class="w">p50</th><th class="w">p95</th>'
        '<th class="w">p99</th><th class="w">max</th>'
        '<th class="h">hold total</th><th class="h">p50</th><th class="h">p95</th>'
        '<th class="h">p99</th><th class="h">max</th></tr></thead><tbody>'
    )
    for p in doc["primitives"]:
        rate = p["contention_rate"]
        hold = p["hold"] or {}
        w = p["wait"]
        star = " *" if p["source"] == "spans" else ""
        parts.append(
            f'<tr class="prim" data-kind="{_e(p["kind"])}"><td>{_e(p["kind"])}</td>'
            f'<td class="name">{_e(p["name"])}{star}</td><td>{_n(p["calls"])}</td>'
            f"<td>{_n(p['contentions'])}</td>"
            f"<td>{'-' if rate is None else f'{rate * 100:.1f}%'}</td>"
            f"<td>{_n(p['still_blocked']['count'] or None)}</td>"
            f"<td>{_share(p['handoff'])}</td>"
            f"<td>{_d(w['total'])}</td><td>{_d(w['p50'])}</td><td>{_d(w['p95'])}</td>"
            f"<td>{_d(w['p99'])}</td><td>{_d(w['max'])}</td>"
            f"<td>{_d(hold.get('total'))}</td><td>{_d(hold.get('p50'))}</td>"
            f"<td>{_d(hold.get('p95'))}</td><td>{_d(hold.get('p99'))}</td>"
            f"<td>{_d(hold.get('max'))}</td></tr>"
        )
        text = handoff_text(p)
        if text and p["handoff"]["scheduling_bound"]:
            parts.append(f'<tr class="site flag"><td></td><td colspan="16">{_e(text)}</td></tr>')
        parts.append(_sites_row(p, 16))
    parts.append("</tbody></table></div>")
    if any(p["source"] == "spans" for p in doc["primitives"]):
        parts.append("<p class=note>* no metrics: numbers from spans only.</p>")
    parts.append("</section>")
    return "".join(parts)


def _idle_waits(doc: dict[str, Any]) -> str:
    parts = [
        '<section id="idle-waits"><h2>Idle waits <small>waiting for work or a signal: '
        "events, conditions (Queue.get) and barriers</small></h2>"
    ]
    if not doc["idle_waits"]:
        parts.append("<p>No idle waits.</p></section>")
        return "".join(parts)
    parts.append(
        '<div class="scroll"><table class="idle"><thead><tr><th>kind</th><th>name</th>'
        "<th>waits</th><th>blocked</th><th>timeouts</th><th>still waiting</th>"
        '<th class="w">wait total</th><th class="w">p50</th><th class="w">p95</th>'
        '<th class="w">p99</th><th class="w">max</th></tr></thead><tbody>'
    )
    for p in doc["idle_waits"]:
        w = p["wait"]
        star = " *" if p["source"] == "spans" else ""
        parts.append(
            f'<tr class="idle" data-kind="{_e(p["kind"])}"><td>{_e(p["kind"])}</td>'
            f'<td class="name">{_e(p["name"])}{star}</td><td>{_n(p["waits"])}</td>'
            f"<td>{_n(p['blocked'])}</td><td>{_n(p['timeouts'])}</td>"
            f"<td>{_n(p['still_blocked']['count'] or None)}</td>"
            f"<td>{_d(w['total'])}</td><td>{_d(w['p50'])}</td><td>{_d(w['p95'])}</td>"
            f"<td>{_d(w['p99'])}</td><td>{_d(w['max'])}</td></tr>"
        )
        parts.append(_sites_row(p, 10))
    parts.append("</tbody></table></div></section>")
    return "".join(parts)


def _still_blocked(doc: dict[str, Any]) -> str:
    if not doc["still_blocked"]:
        return ""
    items = "".join(
        f"<li>{'still blocked' if u['section'] == 'primitives' else 'still waiting'}: "
        f"<b>{_e(u['thread'])}</b> on {_e(u['kind'])} <code>{_e(u['name'])}</code> at "
        f"<code>{_e(u['site'])}</code> for {_d(u['waited'])}"
        + (f", held by {_e(u['holder'])}" if u["holder"] else "")
        + "</li>"
        for u in doc["still_blocked"]
    )
    return (
        '<section id="still-blocked"><h2>Still blocked <small>waits not over when the '
        f"program ended</small></h2><ul class=still>{items}</ul></section>"
    )


def _threads(doc: dict[str, Any]) -> str:
    parts = ["<section><h2>Threads <small>by time blocked on contention</small></h2>"]
    if not doc["threads"]:
        parts.append("<p>No wait or hold spans.</p></section>")
        return "".join(parts)
    parts.append(
        '<div class="scroll"><table class="threads"><thead><tr><th>thread</th>'
        "<th>pid</th><th>waits</th><th>blocked</th><th>max wait</th><th>idle</th>"
        "<th>held*</th><th>most waited on</th></tr></thead><tbody>"
    )
    for t in doc["threads"]:
        most = t["most_waited_on"]
        count = f" ({t['threads']} threads)" if t["threads"] > 1 else ""
        parts.append(
            f"<tr><td>{_e(t['name'])}{count}</td><td>{_e(t['pid'])}</td><td>{_n(t['waits'])}</td>"
            f"<td>{_d(t['wait_total'])}</td><td>{_d(t['wait_max'])}</td>"
            f"<td>{_d(t['idle_total'])}</td>"
            f"<td>{_d(t['hold_total'])}</td><td>{_e(most['name']) if most else '-'}</td></tr>"
        )
    parts.append(
        "</tbody></table></div><p class=note>* held: hold spans only (holds at or above "
        "hold_threshold_ms); the metrics have no per-thread hold time.</p></section>"
    )
    return "".join(parts)


def _findings(doc: dict[str, Any]) -> str:
    parts = ["<section><h2>Findings</h2>"]
    tel = doc["telemetry"]
    items = []
    if tel["dropped"] or tel["failed"]:
        items.append(
            f"<li class=warning>telemetry: {tel['dropped']:,} records dropped and "
            f"{tel['failed']:,} failed to export, of {tel['produced']:,} produced</li>"
        )
    if tel["suppressed"]:
        items.append(
            f"<li>telemetry: {tel['suppressed']:,} spans suppressed by max_spans_per_second</li>"
        )
    for f in doc["findings"]:
        who = " · ".join(_e(x) for x in (f["thread"], f["primitive"]) if x)
        items.append(
            f'<li class="{_e(f["level"])}"><time>{_e(f["timestamp"])}</time> '
            f"<b>{_e(f['event'])}</b> <i>{_e(f['level'])}</i>"
            + (f" [{who}]" if who else "")
            + (f": {_e(f['message'])}" if f["message"] else "")
            + "</li>"
        )
    hidden = doc["findings_total"] - len(doc["findings"])
    if hidden > 0:
        items.append(f"<li>… {hidden:,} more (see --format json)</li>")
    parts.append(f"<ul class=findings>{''.join(items)}</ul>" if items else "<p>None.</p>")
    parts.append("</section>")
    return "".join(parts)


def _tables(doc: dict[str, Any]) -> str:
    return (
        _primitives(doc) + _idle_waits(doc) + _still_blocked(doc) + _threads(doc) + _findings(doc)
    )


def _summary(doc: dict[str, Any], data: dict[str, Any]) -> str:
    runs = ", ".join(_e(r["run_id"]) for r in doc["runs"]) or "-"
    spans = doc["spans"]
    bits = [
        f"run {runs}",
        f"started {_e(doc['time']['run_start'] or doc['time']['first_span'] or '?')}",
        f"{spans['analysed']:,} spans analysed",
    ]
    if spans["foreign_skipped"]:
        bits.append(f"{spans['foreign_skipped']:,} spans of other scopes skipped")
    if data["kept"] < data["seen"]:
        bits.append(
            f"timeline: the {data['kept']:,} longest of {data['seen']:,} spans "
            f"({data['seen'] - data['kept']:,} left out)"
        )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in doc["warnings"])
    return f"<p class=summary>{' · '.join(bits)}</p>" + (
        f"<ul class=warnings>{warnings}</ul>" if warnings else ""
    )


def asset(name: str) -> str:
    """A file of the page (``report.css``, ``report.js``), shipped as package data."""
    return resources.files("tracedsync.report").joinpath("assets").joinpath(name).read_text("utf-8")


def render_html(
    doc: dict[str, Any], timeline: Timeline, base_ns: int | None, profile: Profile | None = None
) -> str:
    """The whole page."""
    data = timeline_data(timeline, base_ns)
    data["flame"] = flame_data(profile if profile is not None else Profile())
    return (
        _HEAD
        + "<style>\n"
        + asset("report.css")
        + "</style></head>\n"
        + "<body><header><h1>tracedsync report</h1>"
        + _summary(doc, data)
        + "</header>"
        + _TIMELINE
        + _flame(data["flame"])
        + _tables(doc)
        + '<script type="application/json" id="tracedsync-data">'
        + dumps(data)
        + "</script><script>\n"
        + asset("report.js")
        + "</script></body></html>\n"
    )


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tracedsync report</title>
"""


def _flame(flame: dict[str, Any]) -> str:
    side = {
        "waiter": "by the waiting thread's stack",
        "holder": "by the stack of the thread that released the lock to the waiter",
    }[flame["side"]]
    which = {"contention": "contention", "idle": "idle", "all": "all"}[flame["waits"]]
    notes = []
    if flame["left_out"]:
        notes.append(f"{flame['left_out']:,} frames too small to draw left out")
    if flame["unresolved"]:
        notes.append(f"{flame['unresolved']:,} waits without their holder's stack")
    note = f"<p class=note>{_e('; '.join(notes))}.</p>" if notes else ""
    return (
        '<section id="flame"><h2>Wait time by stack <small>'
        f"{_e(which)} waits, {_e(side)}; the outermost frame on top, the primitive at the "
        "bottom; click a frame to zoom in</small></h2>"
        '<div class="toolbar"><button type="button" id="flame-reset" title="show everything">'
        'reset</button><span id="flame-focus"></span></div>'
        f'<div id="flame-graph"></div>{note}</section>\n'
    )


_TIMELINE = """<section><h2>Timeline <small>per thread: waits and holds</small></h2>
<div class="toolbar"><button type="button" id="zoom-in" title="zoom in (+)">+</button>
<button type="button" id="zoom-out" title="zoom out (-)">&minus;</button>
<button type="button" id="zoom-reset" title="show everything (0)">reset</button>
<span id="range"></span>
<span class="legend"><span class="swatch" style="background:var(--wait)"></span>wait
<span class="swatch" style="background:var(--hold)"></span>hold
· wheel to zoom, drag to pan</span></div>
<div id="tl" tabindex="0"><div id="axis"></div><div id="rows"></div></div>
<div id="tip" hidden></div></section>
"""
