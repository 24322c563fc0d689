"""Which spans the timelines (HTML, Perfetto) draw: the slowest ones.

Part of the model layer: :class:`Timeline` keeps the ``limit`` longest waits
and holds seen (a min-heap on duration), in a compact form, plus the hold
spans that kept waits link to (the flow arrows need both ends). Memory is
bounded by ``limit``, never by the number of spans read.
"""

from __future__ import annotations

import heapq
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from tracedsync.report.read import SpanRecord

#: Recent holds remembered while a wait that links to them may still come.
RECENT_HOLDS = 20_000


class Bar(NamedTuple):
    """One span as the timelines draw it."""

    pid: int | None
    run: str | None
    thread_id: int | None
    thread: str
    start_ns: int
    end_ns: int
    is_wait: bool
    kind: str
    name: str
    site: str
    function: str
    holder: str | None
    holder_id: int | None
    holder_site: str | None
    outcome: str | None
    span_id: str
    links: tuple[str, ...]
    #: Where the span really started, when it is drawn from later (a hold
    #: drawn from the end of the wait that led to it).
    real_start_ns: int | None = None


def after_their_waits(bars: list[Bar]) -> list[Bar]:
    """``bars`` (by start) with each hold that starts before the wait that led
    to it ends (the same primitive on the same thread: two clock readings a
    few microseconds apart) starting at that wait's end instead."""
    last_wait: dict[tuple[Any, ...], Bar] = {}
    out = []
    for b in bars:
        key = (b.pid, b.thread_id, b.thread, b.kind, b.name)
        if b.is_wait:
            last_wait[key] = b
        else:
            wait = last_wait.get(key)
            if wait is not None and wait.start_ns <= b.start_ns < wait.end_ns:
                b = b._replace(start_ns=min(wait.end_ns, b.end_ns), real_start_ns=b.start_ns)
        out.append(b)
    return out


def _bar(fields: list[Any]) -> Bar:
    bar = Bar(*fields)
    return bar._replace(links=tuple(bar.links))


class Timeline:
    """The ``limit`` slowest spans, and the holds the kept waits link to."""

    def __init__(self, limit: int, floor: int = 0) -> None:
        self.limit = limit
        #: Spans no longer than this (ns) are not kept (a worker's part, when
        #: the parent already keeps ``limit`` longer ones).
        self.floor_ns = floor
        self.seen = 0
        self._seq = 0
        #: (duration, sequence, bar, [linked holds])
        self._heap: list[tuple[int, int, Bar, list[Bar]]] = []
        self._recent: OrderedDict[str, Bar] = OrderedDict()
        #: hold span id -> the linked-holds list of the kept wait that wants it
        self._wanted: dict[str, list[Bar]] = {}
        self._strings: dict[str, str] = {}
        #: How sites are printed (set by the model once everything is read).
        self.site_name: Callable[[str], str] | None = None

    def _intern(self, text: Any) -> Any:
        if text is None or text.__class__ is not str:
            return text
        known = self._strings.get(text)
        if known is None:
            if len(self._strings) >= 100_000:
                self._strings.clear()
            known = self._strings[text] = text
        return known

    def bar(self, rec: SpanRecord) -> Bar:
        i = self._intern
        a, h = rec.a, rec.h
        return Bar(
            rec.pid,
            i(rec.run),
            a.thread_id,
            i(a.thread),
            rec.start_ns,
            rec.end_ns,
            rec.is_wait,
            i(a.kind),
            i(a.name),
            i(a.site),
            i(a.function),
            i(h.holder),
            h.holder_id,
            i(h.holder_site),
            i(h.outcome),
            rec.span_id,
            tuple(rec.links),
        )

    def add(self, rec: SpanRecord) -> None:
        self.seen += 1
        dur = rec.end_ns - rec.start_ns
        heap = self._heap
        full = len(heap) >= self.limit
        if (full and dur <= heap[0][0]) or dur <= self.floor_ns:
            if not rec.is_wait:
                self._hold_seen(rec)
            return
        bar = self.bar(rec)
        self._seq += 1
        linked: list[Bar] = []
        if rec.is_wait:
            for hold_id in bar.links:
                hold = self._recent.get(hold_id)
                if hold is not None:
                    linked.append(hold)
                elif len(self._wanted) < self.limit:
                    self._wanted[hold_id] = linked
        else:
            self._remember(bar)
        item = (dur, self._seq, bar, linked)
        if full:
            heapq.heapreplace(heap, item)
        else:
            heapq.heappush(heap, item)

    def _hold_seen(self, rec: SpanRecord) -> None:
        """A hold too short to be kept for itself: remembered a while, as a wait
        kept later may link to it; kept if a kept wait wants it."""
        self._remember(self.bar(rec))

    def _remember(self, bar: Bar) -> None:
        wanted = self._wanted.pop(bar.span_id, None)
        if wanted is not None:
            wanted.append(bar)
        recent = self._recent
        recent[bar.span_id] = bar
        if len(recent) > RECENT_HOLDS:
            recent.popitem(last=False)

    # -- worker processes ---------------------------------------------------------

    def floor(self) -> int:
        """The shortest duration kept once full (0 before): a part need not
        keep anything shorter."""
        return self._heap[0][0] if len(self._heap) >= self.limit else 0

    def export(self, path: str) -> None:
        """What a worker hands back, written to ``path`` as JSON lines: spans
        seen and the hold ids its kept waits still want, its last holds, then
        its kept entries (read back one at a time: :meth:`merge`)."""
        tail = list(self._recent.values())[-5_000:]
        with open(path, "w", encoding="utf-8") as out:
            out.write(json.dumps([self.seen, list(self._wanted)]) + "\n")
            out.write(json.dumps([list(b) for b in tail]) + "\n")
            for dur, _, bar, linked in self._heap:
                out.write(json.dumps([dur, list(bar), [list(h) for h in linked]]) + "\n")

    def merge(self, path: str) -> None:
        """Add a worker's part from the file :meth:`export` wrote (parts are
        merged in file order); only entries longer than the shortest kept
        become objects here."""
        with open(path, encoding="utf-8") as part:
            seen, wanted_ids = json.loads(part.readline())
            tail = [self._adopt(_bar(b)) for b in json.loads(part.readline())]
            wanted = set(wanted_ids)
            heap = self._heap
            for line in part:
                dur = int(line[1 : line.index(",")])
                if len(heap) >= self.limit and dur <= heap[0][0]:
                    continue
                _, fields, linked_fields = json.loads(line)
                bar = self._adopt(_bar(fields))
                linked = [self._adopt(_bar(h)) for h in linked_fields]
                if bar.is_wait:
                    for hold_id in bar.links:
                        if hold_id in wanted:
                            hold = self._recent.get(hold_id)
                            if hold is not None:
                                linked.append(hold)
                self._seq += 1
                item = (dur, self._seq, bar, linked)
                if len(heap) < self.limit:
                    heapq.heappush(heap, item)
                else:
                    heapq.heapreplace(heap, item)
        for bar in tail:
            self._remember(bar)
        self.seen += seen

    def _adopt(self, bar: Bar) -> Bar:
        """A worker's bar with its strings shared with this timeline's."""
        i = self._intern
        return bar._replace(
            run=i(bar.run),
            thread=i(bar.thread),
            kind=i(bar.kind),
            name=i(bar.name),
            site=i(bar.site),
            function=i(bar.function),
            holder=i(bar.holder),
            holder_site=i(bar.holder_site),
            outcome=i(bar.outcome),
        )

    def bars(self, site_name: Callable[[str], str] | None = None) -> list[Bar]:
        """The kept spans and the holds their waits link to, once each, by
        start; ``site_name`` prints their sites (as the document does)."""
        out: dict[str, Bar] = {}
        for _, _, bar, linked in self._heap:
            out[bar.span_id] = bar
            for hold in linked:
                out.setdefault(hold.span_id, hold)
        bars = after_their_waits(
            sorted(out.values(), key=lambda b: (b.start_ns, b.end_ns, b.span_id))
        )
        site_name = site_name or self.site_name
        if site_name is not None:
            bars = [b._replace(site=site_name(b.site)) for b in bars]
        return bars

    @property
    def kept(self) -> int:
        return len(self._heap)
