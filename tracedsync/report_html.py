"""``tracedsync report --format html``: one self-contained page (internal).

A per-thread timeline of the longest waits and holds (coloured bars; wheel
or buttons zoom, drag pans, hovering shows name, duration, call site and
holder) and the report's tables. Everything is inline: a Content Security
Policy forbids any fetch. Data goes into the page as JSON in a
``<script type="application/json">`` element with ``<``, ``>`` and ``&``
escaped, and the script puts text into the page with ``textContent`` only;
the tables are rendered here with every value HTML-escaped.
"""

from __future__ import annotations

import heapq
import html
from typing import Any

from tracedsync._format import clean, duration
from tracedsync.report_model import SpanEvent, _int_or_none, site_of
from tracedsync.report_render import dumps

_Bar = tuple[
    tuple[Any, Any, str],  # thread (pid, thread id, name)
    int,  # start ns
    int,  # end ns
    bool,  # is wait
    str,  # kind
    str,  # primitive name
    str,  # call site
    str,  # function
    "str | None",  # holder thread
    "str | None",  # holder site
    "str | None",  # outcome
    str,  # span id
]


class BarCollector:
    """Keeps the ``limit`` longest waits and holds (a min-heap on duration)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0
        self._seq = 0
        self._heap: list[tuple[int, int, _Bar]] = []

    def add(self, ev: SpanEvent) -> None:
        self.seen += 1
        self._seq += 1
        dur = ev.end_ns - ev.start_ns
        heap = self._heap
        if len(heap) >= self.limit and dur <= heap[0][0]:
            return
        a = ev.attrs
        holder = a.get("sync.holder.thread.name")
        hsite = a.get("sync.holder.site")
        outcome = a.get("sync.outcome")
        bar: _Bar = (
            (ev.pid, str(a.get("thread.id")), str(a.get("thread.name") or "?")),
            ev.start_ns,
            ev.end_ns,
            ev.is_wait,
            ev.kind,
            ev.name,
            site_of(a),
            str(a.get("code.function.name") or ""),
            str(holder) if holder is not None else None,
            str(hsite) if hsite is not None else None,
            str(outcome) if outcome is not None else None,
            ev.span_id,
        )
        item = (dur, self._seq, bar)
        if len(heap) < self.limit:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)

    def items(self) -> tuple[int, list[tuple[int, int, _Bar]]]:
        """How many spans were seen and the kept entries, to merge elsewhere."""
        return self.seen, list(self._heap)

    def merge(self, items: tuple[int, list[tuple[int, int, _Bar]]]) -> None:
        """Add what another collector (a worker's) saw and kept."""
        seen, entries = items
        heap = self._heap
        for dur, _, bar in entries:
            self._seq += 1
            if len(heap) < self.limit:
                heapq.heappush(heap, (dur, self._seq, bar))
            elif dur > heap[0][0]:
                heapq.heapreplace(heap, (dur, self._seq, bar))
        self.seen += seen

    def bars(self) -> list[_Bar]:
        return sorted((b for _, _, b in self._heap), key=lambda b: (b[1], b[2]))


def timeline_data(collector: BarCollector, base_ns: int | None) -> dict[str, Any]:
    """The compact JSON the page's script draws: strings interned, times in µs."""
    bars = collector.bars()
    if base_ns is None:
        base_ns = bars[0][1] if bars else 0
    strings: dict[str, int] = {}

    def s(text: str | None) -> int:
        if text is None:
            return -1
        index = strings.get(text)
        if index is None:
            index = strings[text] = len(strings)
        return index

    threads: dict[tuple[Any, Any, str], int] = {}
    out = []
    for thread, start, end, is_wait, kind, name, site, fn, holder, hsite, outcome, span_id in bars:
        t = threads.get(thread)
        if t is None:
            t = threads[thread] = len(threads)
        out.append(
            [
                t,
                round((start - base_ns) / 1000, 3),
                round((end - start) / 1000, 3),
                1 if is_wait else 0,
                s(kind),
                s(name),
                s(site),
                s(fn),
                s(holder),
                s(hsite),
                s(outcome),
                s(span_id),
            ]
        )
    return {
        "threads": [
            {"name": name, "pid": pid, "id": _int_or_none(tid)} for (pid, tid, name) in threads
        ],
        "strings": list(strings),
        "bars": out,
        "shown": len(out),
        "seen": collector.seen,
    }


def _e(value: Any) -> str:
    return html.escape(clean("" if value is None else value), quote=True)


def _d(seconds: float | None) -> str:
    return "-" if seconds is None else html.escape(duration(seconds))


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _tables(doc: dict[str, Any]) -> str:
    parts = ["<section><h2>Primitives <small>by total wait</small></h2>"]
    if not doc["primitives"]:
        parts.append("<p>No primitives.</p>")
    else:
        parts.append(
            '<div class="scroll"><table class="prims"><thead><tr><th>kind</th><th>name</th>'
            "<th>calls</th>"
            "<th>contentions</th><th>rate</th>"
            '<th class="w">wait total</th><th class="w">p50</th><th class="w">p95</th>'
            '<th class="w">p99</th><th class="w">max</th>'
            '<th class="h">hold total</th><th class="h">p50</th><th class="h">p95</th>'
            '<th class="h">p99</th><th class="h">max</th></tr></thead><tbody>'
        )
        for p in doc["primitives"]:
            calls = p["acquisitions"] if p["acquisitions"] is not None else p["waits"]
            rate = p["contention_rate"]
            hold = p["hold"] or {}
            w = p["wait"]
            star = " *" if p["source"] == "spans" else ""
            parts.append(
                f'<tr class="prim" data-kind="{_e(p["kind"])}"><td>{_e(p["kind"])}</td>'
                f'<td class="name">{_e(p["name"])}{star}</td><td>{_n(calls)}</td>'
                f"<td>{_n(p['contentions'])}</td>"
                f"<td>{'-' if rate is None else f'{rate * 100:.1f}%'}</td>"
                f"<td>{_d(w['total'])}</td><td>{_d(w['p50'])}</td><td>{_d(w['p95'])}</td>"
                f"<td>{_d(w['p99'])}</td><td>{_d(w['max'])}</td>"
                f"<td>{_d(hold.get('total'))}</td><td>{_d(hold.get('p50'))}</td>"
                f"<td>{_d(hold.get('p95'))}</td><td>{_d(hold.get('p99'))}</td>"
                f"<td>{_d(hold.get('max'))}</td></tr>"
            )
            for site in p["sites"]:
                holders = "".join(
                    f"<li>← held at <code>{_e(h['site'])}</code>"
                    + (f" by {_e(', '.join(h['threads'][:3]))}" if h["threads"] else "")
                    + f": {h['waits']:,} waits, {_d(h['total'])}</li>"
                    for h in site["holders"]
                )
                fn = f" in <code>{_e(site['function'])}</code>" if site["function"] else ""
                parts.append(
                    f'<tr class="site"><td></td><td colspan="14">waited at '
                    f"<code>{_e(site['site'])}</code>{fn}: {site['waits']:,} waits, "
                    f"{_d(site['total'])}, p95 {_d(site['p95'])}, max {_d(site['max'])}"
                    f"{'<ul>' + holders + '</ul>' if holders else ''}</td></tr>"
                )
        parts.append("</tbody></table></div>")
        if any(p["source"] == "spans" for p in doc["primitives"]):
            parts.append("<p class=note>* no metrics: numbers from spans only.</p>")
    parts.append("</section><section><h2>Threads <small>by time waiting</small></h2>")
    if not doc["threads"]:
        parts.append("<p>No wait or hold spans.</p>")
    else:
        parts.append(
            '<div class="scroll"><table class="threads"><thead><tr><th>thread</th>'
            "<th>pid</th><th>waits</th><th>waited</th>"
            "<th>max wait</th><th>held</th><th>most waited on</th></tr></thead><tbody>"
        )
        for t in doc["threads"]:
            most = t["most_waited_on"]
            parts.append(
                f"<tr><td>{_e(t['name'])}</td><td>{_e(t['pid'])}</td><td>{_n(t['waits'])}</td>"
                f"<td>{_d(t['wait_total'])}</td><td>{_d(t['wait_max'])}</td>"
                f"<td>{_d(t['hold_total'])}</td><td>{_e(most['name']) if most else '-'}</td></tr>"
            )
        parts.append("</tbody></table></div>")
    parts.append("</section><section><h2>Findings</h2>")
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
    if data["shown"] < data["seen"]:
        bits.append(f"timeline: the {data['shown']:,} longest of {data['seen']:,} spans")
    warnings = "".join(f"<li>{_e(w)}</li>" for w in doc["warnings"])
    return f"<p class=summary>{' · '.join(bits)}</p>" + (
        f"<ul class=warnings>{warnings}</ul>" if warnings else ""
    )


def render_html(doc: dict[str, Any], collector: BarCollector, base_ns: int | None) -> str:
    """The whole page."""
    data = timeline_data(collector, base_ns)
    return (
        _HEAD
        + "<body><header><h1>tracedsync report</h1>"
        + _summary(doc, data)
        + "</header>"
        + _TIMELINE
        + _tables(doc)
        + '<script type="application/json" id="tracedsync-data">'
        + dumps(data)
        + "</script><script>"
        + _SCRIPT
        + "</script></body></html>\n"
    )


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tracedsync report</title>
<style>
:root{--wait:#d64541;--hold:#3b73c4;--bg:#fff;--fg:#1d1f21;--mute:#6b7078;--line:#e3e5e8}
*{box-sizing:border-box}
body{margin:0;padding:0 20px 40px;font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;
color:var(--fg);background:var(--bg)}
h1{font-size:20px;margin:16px 0 4px}h2{font-size:16px;margin:24px 0 8px}
h2 small{font-weight:normal;color:var(--mute)}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
.summary{color:var(--mute);margin:0}
.warnings li{color:#9a6700}
.toolbar{display:flex;gap:6px;align-items:center;margin:8px 0}
.toolbar button{font:inherit;padding:2px 10px;border:1px solid var(--line);background:#f6f7f8;
border-radius:4px;cursor:pointer}
.toolbar .legend{margin-left:auto;color:var(--mute)}
.swatch{display:inline-block;width:12px;height:10px;margin:0 4px 0 10px;vertical-align:-1px}
#range{color:var(--mute);font-variant-numeric:tabular-nums}
#tl{position:relative;border:1px solid var(--line);border-radius:4px;overflow:hidden;
user-select:none;cursor:grab;outline:none}
#tl.dragging{cursor:grabbing}
#axis{position:relative;height:22px;border-bottom:1px solid var(--line);background:#fafbfc}
.tick{position:absolute;top:0;height:22px;border-left:1px solid var(--line);padding:3px 4px;
color:var(--mute);font-size:11px;white-space:nowrap;font-variant-numeric:tabular-nums}
#rows{max-height:70vh;overflow-y:auto}
.row{display:flex;border-bottom:1px solid #f0f1f3}
.label{flex:0 0 200px;width:200px;padding:3px 8px;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;border-right:1px solid var(--line);background:#fafbfc}
.track{position:relative;flex:1 1 auto;overflow:hidden}
.bar{position:absolute;height:11px;border-radius:2px;min-width:1px;opacity:.9}
.bar.wait{background:var(--wait)}.bar.hold{background:var(--hold)}
.bar.timeout{background:repeating-linear-gradient(45deg,var(--wait),var(--wait) 3px,#8c1d18 3px,
#8c1d18 6px)}
.bar:hover{outline:2px solid #000;opacity:1;z-index:2}
#tip{position:fixed;z-index:10;pointer-events:none;background:#1d1f21;color:#fff;padding:6px 8px;
border-radius:4px;font-size:12px;max-width:520px;box-shadow:0 2px 8px rgba(0,0,0,.25)}
#tip div{white-space:pre-wrap;word-break:break-all}
#tip .t{font-weight:600}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:#fafbfc;font-weight:600}
td.name,th:nth-child(2),td:first-child,th:first-child{text-align:left}
th.w{color:var(--wait)}th.h{color:var(--hold)}
tr.site td{text-align:left;color:var(--mute);border-bottom:none;white-space:normal}
tr.site ul{margin:2px 0 4px;padding-left:20px}
.findings li.error,.findings li.critical{color:#b42318}
.findings li.warning{color:#9a6700}
.note{color:var(--mute)}
.scroll{overflow-x:auto}
table.threads td:last-child,table.threads th:last-child{text-align:left}
</style></head>
"""

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

_SCRIPT = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("tracedsync-data").textContent);
  var S = data.strings, bars = data.bars, threads = data.threads;
  var tl = document.getElementById("tl"), rowsEl = document.getElementById("rows");
  var axis = document.getElementById("axis"), tip = document.getElementById("tip");
  var rangeEl = document.getElementById("range");
  var LABEL = 200, LANE = 14;

  function fmt(us) {
    var a = Math.abs(us);
    if (a < 1) return (us * 1000).toFixed(0) + " ns";
    if (a < 1000) return us.toFixed(1) + " \u00b5s";
    if (a < 1e6) return (us / 1e3).toFixed(1) + " ms";
    if (a < 6e8) return (us / 1e6).toFixed(2) + " s";
    return (us / 6e7).toFixed(1) + " min";
  }
  function str(i) { return i >= 0 ? S[i] : null; }

  var lo = Infinity, hi = -Infinity;
  bars.forEach(function (b) { lo = Math.min(lo, b[1]); hi = Math.max(hi, b[1] + b[2]); });
  if (!bars.length) { lo = 0; hi = 1000; }
  if (hi - lo < 1) { hi = lo + 1; }
  var pad = (hi - lo) * 0.02, full0 = lo - pad, full1 = hi + pad;
  var v0 = full0, v1 = full1;

  var perThread = threads.map(function () { return []; });
  bars.forEach(function (b, i) { perThread[b[0]].push(i); });
  var els = new Array(bars.length);
  var tracks = [];
  threads.forEach(function (t, ti) {
    var row = document.createElement("div");
    row.className = "row";
    var label = document.createElement("div");
    label.className = "label";
    label.textContent = t.name;
    label.title = t.name + (t.pid != null ? "  (pid " + t.pid + ", thread " + t.id + ")" : "");
    var track = document.createElement("div");
    track.className = "track";
    var order = perThread[ti].sort(function (a, b) {
      return bars[a][1] - bars[b][1] || bars[b][2] - bars[a][2];
    });
    var laneEnds = [];
    order.forEach(function (i) {
      var b = bars[i], lane = 0;
      while (lane < laneEnds.length && laneEnds[lane] > b[1]) lane++;
      laneEnds[lane] = b[1] + b[2];
      var el = document.createElement("div");
      var wait = b[3] === 1;
      el.className = "bar " + (wait ? "wait" : "hold") +
        (str(b[10]) === "timeout" ? " timeout" : "");
      el.style.top = (3 + lane * LANE) + "px";
      el.setAttribute("data-span-id", S[b[11]]);
      el.setAttribute("data-type", wait ? "wait" : "hold");
      el.setAttribute("data-primitive", S[b[5]]);
      el.setAttribute("data-index", String(i));
      track.appendChild(el);
      els[i] = el;
    });
    track.style.height = (Math.max(1, laneEnds.length) * LANE + 6) + "px";
    row.appendChild(label);
    row.appendChild(track);
    rowsEl.appendChild(row);
    tracks.push(track);
  });
  if (!threads.length) {
    var empty = document.createElement("div");
    empty.className = "label";
    empty.textContent = "no wait or hold spans";
    rowsEl.appendChild(empty);
  }

  function width() { return Math.max(50, tl.clientWidth - LABEL); }

  function niceStep(span) {
    var raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }

  var pending = false;
  function render() {
    pending = false;
    var w = width(), k = w / (v1 - v0);
    for (var i = 0; i < bars.length; i++) {
      var b = bars[i], el = els[i];
      var x0 = (b[1] - v0) * k, x1 = (b[1] + b[2] - v0) * k;
      if (x1 < 0 || x0 > w) { el.style.display = "none"; continue; }
      el.style.display = "";
      x0 = Math.max(x0, -2);
      x1 = Math.min(x1, w + 2);
      el.style.left = x0.toFixed(1) + "px";
      el.style.width = Math.max(1, x1 - x0).toFixed(1) + "px";
    }
    while (axis.firstChild) axis.removeChild(axis.firstChild);
    var step = niceStep(v1 - v0);
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var tick = document.createElement("div");
      tick.className = "tick";
      tick.style.left = (LABEL + (t - v0) * k).toFixed(1) + "px";
      tick.textContent = (t >= 0 ? "+" : "") + fmt(t);
      axis.appendChild(tick);
    }
    rangeEl.textContent = "+" + fmt(Math.max(0, v0)) + " \u2013 +" + fmt(v1) +
      " (" + fmt(v1 - v0) + " shown)";
    tl.setAttribute("data-view", v0.toFixed(3) + " " + v1.toFixed(3));
  }
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(render); } }

  function setView(a, b) {
    var span = Math.min(Math.max(b - a, 0.01), full1 - full0);
    if (a < full0) a = full0;
    if (a + span > full1) a = full1 - span;
    v0 = a; v1 = a + span;
    schedule();
  }
  function zoom(factor, at) {
    if (at === undefined) at = (v0 + v1) / 2;
    setView(at - (at - v0) * factor, at + (v1 - at) * factor);
  }
  function timeAt(clientX) {
    var rect = tl.getBoundingClientRect();
    return v0 + (clientX - rect.left - LABEL) / width() * (v1 - v0);
  }

  tl.addEventListener("wheel", function (e) {
    e.preventDefault();
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      var d = (e.deltaX || e.deltaY) / width() * (v1 - v0);
      setView(v0 + d, v1 + d);
    } else {
      zoom(Math.exp(e.deltaY * 0.0015), timeAt(e.clientX));
    }
  }, { passive: false });

  var drag = null;
  tl.addEventListener("mousedown", function (e) {
    if (e.button !== 0) return;
    drag = { x: e.clientX, v0: v0, v1: v1 };
    tl.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (e) {
    if (!drag) return;
    var d = (drag.x - e.clientX) / width() * (drag.v1 - drag.v0);
    setView(drag.v0 + d, drag.v1 + d);
  });
  window.addEventListener("mouseup", function () {
    drag = null;
    tl.classList.remove("dragging");
  });
  tl.addEventListener("keydown", function (e) {
    var span = v1 - v0;
    if (e.key === "+" || e.key === "=") zoom(0.5);
    else if (e.key === "-") zoom(2);
    else if (e.key === "0") setView(full0, full1);
    else if (e.key === "ArrowLeft") setView(v0 - span / 10, v1 - span / 10);
    else if (e.key === "ArrowRight") setView(v0 + span / 10, v1 + span / 10);
    else return;
    e.preventDefault();
  });
  document.getElementById("zoom-in").addEventListener("click", function () { zoom(0.5); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoom(2); });
  document.getElementById("zoom-reset").addEventListener("click", function () {
    setView(full0, full1);
  });
  window.addEventListener("resize", schedule);

  function line(text, cls) {
    var d = document.createElement("div");
    if (cls) d.className = cls;
    d.textContent = text;
    tip.appendChild(d);
  }
  function showTip(i, e) {
    var b = bars[i], wait = b[3] === 1;
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    line((wait ? "wait" : "hold") + " \u00b7 " + S[b[4]] + " " + S[b[5]], "t");
    line("duration " + fmt(b[2]) + (str(b[10]) ? " \u00b7 " + str(b[10]) : ""));
    line("thread " + threads[b[0]].name);
    line("at " + S[b[6]] + (S[b[7]] ? " in " + S[b[7]] : ""));
    if (wait && (str(b[8]) || str(b[9]))) {
      line("holder " + (str(b[8]) || "?") + " at " + (str(b[9]) || "?"));
    }
    line("start +" + fmt(b[1]) + " \u00b7 span " + S[b[11]]);
    tip.hidden = false;
    moveTip(e);
  }
  function moveTip(e) {
    var x = e.clientX + 14, y = e.clientY + 14;
    var r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth) x = Math.max(0, e.clientX - r.width - 14);
    if (y + r.height > window.innerHeight) y = Math.max(0, e.clientY - r.height - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  rowsEl.addEventListener("mouseover", function (e) {
    var el = e.target.closest ? e.target.closest(".bar") : null;
    if (el) showTip(Number(el.getAttribute("data-index")), e);
  });
  rowsEl.addEventListener("mousemove", function (e) { if (!tip.hidden) moveTip(e); });
  rowsEl.addEventListener("mouseout", function (e) {
    var el = e.target.closest ? e.target.closest(".bar") : null;
    if (el) tip.hidden = true;
  });

  render();
  document.body.setAttribute("data-ready", "1");
})();
"""
