"""``--format perfetto``: Chrome Trace Event JSON for ui.perfetto.dev and chrome://tracing.

The JSON Object Format: one process per traced process, one thread track per
thread (named with ``thread_name`` metadata events), each wait and hold the
timeline keeps a complete (``"X"``) slice, a flow arrow (``"s"`` → ``"f"``)
from the release of the hold that blocked a waiter to the end of that wait,
and each finding an instant (``"i"``) event.

The trace obeys the format's rules, which the viewers rely on: on a track,
slices are either disjoint or nested (a slice that starts inside another and
ends after it starts at that one's end instead; its real start and length
stay in its ``args``); each end of a flow lies inside a slice of its track;
flow ids are unique. Timestamps are microseconds from the run start. Thread
ids of the trace are 31-bit numbers derived from the thread (real thread ids
do not fit the 32 bits the viewers expect); the real one is in ``args``.
"""

from __future__ import annotations

import bisect
import zlib
from typing import IO, Any

from tracedsync.report.read import parse_timestamp
from tracedsync.report.render_json import dumps
from tracedsync.report.timeline import Bar, Timeline


class _Slice:
    __slots__ = ("bar", "clamped", "end", "pid", "start", "tid")

    def __init__(self, bar: Bar, pid: int, tid: int, start: int, end: int) -> None:
        self.bar = bar
        self.pid = pid
        self.tid = tid
        #: ns from the trace's zero, after nesting is made proper
        self.start = start
        self.end = end
        self.clamped = False


def _us(ns: int) -> str:
    """Nanoseconds as microseconds with three decimals (exact)."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1000}.{ns % 1000:03d}"


def _track_ids(bar: Bar) -> tuple[int, int]:
    pid = bar.pid if isinstance(bar.pid, int) and 0 < bar.pid < 1 << 31 else 1
    key = (bar.pid, str(bar.thread_id), bar.thread)
    return pid, (zlib.crc32(repr(key).encode()) & 0x7FFFFFFF) or 1


def proper_nesting(slices: list[_Slice]) -> None:
    """Make the slices of one track disjoint or nested: a slice that starts
    inside another and ends after it starts where that one ends."""
    slices.sort(key=lambda s: (s.start, -s.end))
    stack: list[_Slice] = []
    for s in slices:
        while stack and stack[-1].end <= s.start:
            stack.pop()
        while stack and s.end > stack[-1].end:
            s.start = stack.pop().end
            s.clamped = True
            while stack and stack[-1].end <= s.start:
                stack.pop()
        stack.append(s)
    slices.sort(key=lambda s: (s.start, -s.end))


def render_perfetto(
    stream: IO[str], doc: dict[str, Any], timeline: Timeline, base_ns: int | None
) -> None:
    """Write the whole trace to ``stream``."""
    bars = timeline.bars()
    if bars:
        first = bars[0].start_ns
        base_ns = first if base_ns is None else min(base_ns, first)
    base = base_ns or 0
    tracks: dict[tuple[int, int], list[_Slice]] = {}
    names: dict[tuple[int, int], Bar] = {}
    for bar in bars:
        pid, tid = _track_ids(bar)
        names.setdefault((pid, tid), bar)
        tracks.setdefault((pid, tid), []).append(
            _Slice(bar, pid, tid, bar.start_ns - base, bar.end_ns - base)
        )
    for slices in tracks.values():
        proper_nesting(slices)

    out = _Writer(stream)
    stream.write('{"displayTimeUnit":"ms","traceEvents":[\n')
    named_pids: set[int] = set()
    for (pid, tid), bar in sorted(names.items()):
        if pid not in named_pids:
            named_pids.add(pid)
            label = f"pid {bar.pid}" if bar.pid is not None else "process"
            if bar.run:
                label += f" (tracedsync run {bar.run})"
            out.event(
                {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}}
            )
        out.event(
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": bar.thread}}
        )
    by_id: dict[str, _Slice] = {}
    for slices in tracks.values():
        for s in slices:
            out.slice(s)
            by_id[s.bar.span_id] = s
    flows = _flows(tracks, by_id)
    for ident, (hold, wait) in enumerate(flows, 1):
        out.flow(ident, hold, wait)
    for f in doc.get("findings", []):
        _finding(out, f, base, named_pids)
    other = {
        "producer": "tracedsync report",
        "format": doc.get("format"),
        "runs": [r["run_id"] for r in doc.get("runs", [])],
        "time_zero": doc.get("time", {}).get("run_start"),
        "spans": doc.get("spans", {}).get("analysed"),
        "spans_shown": timeline.kept,
        "spans_left_out": timeline.seen - timeline.kept,
        "flows": len(flows),
    }
    stream.write(f'\n],"otherData":{dumps(other)}}}\n')


def _flows(
    tracks: dict[tuple[int, int], list[_Slice]], by_id: dict[str, _Slice]
) -> list[tuple[_Slice, _Slice]]:
    """(hold, wait) pairs: the hold a wait links to, else the hold of the same
    primitive by the holder thread that ended last before the wait did."""
    holds: dict[tuple[Any, Any, str, str], tuple[list[int], list[_Slice]]] = {}
    for slices in tracks.values():
        for s in slices:
            b = s.bar
            if not b.is_wait:
                entry = holds.setdefault((b.pid, b.thread_id, b.kind, b.name), ([], []))
                entry[1].append(s)
    for ends, items in holds.values():
        items.sort(key=lambda s: s.end)
        ends.extend(s.end for s in items)
    out = []
    for slices in tracks.values():
        for wait in slices:
            b = wait.bar
            if not b.is_wait:
                continue
            found = [by_id[h] for h in b.links if h in by_id and not by_id[h].bar.is_wait]
            if not found and b.holder_id is not None:
                candidates = holds.get((b.pid, b.holder_id, b.kind, b.name))
                if candidates is not None:
                    i = bisect.bisect_right(candidates[0], wait.end) - 1
                    if i >= 0 and candidates[1][i].end > wait.start:
                        found = [candidates[1][i]]
            for hold in found:
                if hold.end <= wait.end and hold.end > hold.start and wait.end > wait.start:
                    out.append((hold, wait))
    return out


def _finding(out: _Writer, f: dict[str, Any], base: int, pids: set[int]) -> None:
    ns = parse_timestamp(f.get("timestamp"))
    if ns is None:
        return
    out.event(
        {
            "ph": "i",
            "s": "g",
            "pid": min(pids) if pids else 1,
            "tid": 0,
            "ts": float(_us(ns - base)),
            "name": f"{f['event']}",
            "cat": "finding",
            "args": {
                "message": f.get("message"),
                "thread": f.get("thread"),
                "primitive": f.get("primitive"),
                "level": f.get("level"),
            },
        }
    )


class _Writer:
    """The traceEvents list, one event a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.first = True
        self._encoded: dict[Any, str] = {}

    def item(self, text: str) -> None:
        if not self.first:
            self.stream.write(",\n")
        self.first = False
        self.stream.write(text)

    def event(self, event: dict[str, Any]) -> None:
        self.item(dumps(event))

    def enc(self, value: Any) -> str:
        """``value`` as JSON, cached: names, sites and threads repeat."""
        cached = self._encoded.get(value)
        if cached is None:
            cached = dumps(value)
            if len(self._encoded) >= 50_000:
                self._encoded.clear()
            self._encoded[value] = cached
        return cached

    def slice(self, s: _Slice) -> None:
        b = s.bar
        enc = self.enc
        extra = ""
        if b.is_wait:
            extra = f',"outcome":{enc(b.outcome)}'
            if b.holder is not None:
                extra += f',"holder":{enc(b.holder)}'
            if b.holder_site is not None:
                extra += f',"holder_site":{enc(b.holder_site)}'
        if s.clamped or b.real_start_ns is not None:
            # Drawn from where the slice it overlapped ends: the real span is here.
            real_start = b.real_start_ns if b.real_start_ns is not None else b.start_ns
            extra += f',"real_ts":{_us(s.end - (b.end_ns - real_start))}'
            extra += f',"real_dur":{_us(b.end_ns - real_start)}'
        kind = "wait" if b.is_wait else "hold"
        self.item(
            f'{{"ph":"X","cat":"{kind}","name":{enc(kind + " " + b.name)},'
            f'"pid":{s.pid},"tid":{s.tid},"cname":"{"terrible" if b.is_wait else "good"}",'
            f'"ts":{_us(s.start)},"dur":{_us(s.end - s.start)},'
            f'"args":{{"primitive":{enc(b.name)},"kind":{enc(b.kind)},"site":{enc(b.site)},'
            f'"function":{enc(b.function)},"thread":{enc(b.thread)},'
            f'"thread_id":{"null" if b.thread_id is None else b.thread_id}{extra},'
            f'"span_id":{dumps(b.span_id)}}}}}'
        )

    def flow(self, ident: int, hold: _Slice, wait: _Slice) -> None:
        # One nanosecond inside each slice, so each end binds to its slice.
        self.item(
            f'{{"ph":"s","pid":{hold.pid},"tid":{hold.tid},"ts":{_us(hold.end - 1)},'
            f'"cat":"unblock","name":"released","id":{ident}}}'
        )
        self.item(
            f'{{"ph":"f","bp":"e","pid":{wait.pid},"tid":{wait.tid},"ts":{_us(wait.end - 1)},'
            f'"cat":"unblock","name":"released","id":{ident}}}'
        )
