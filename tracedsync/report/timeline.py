"""Which spans the timelines (HTML, Perfetto) draw: the slowest ones.

Part of the model layer: :class:`Timeline` keeps the ``limit`` longest waits
and holds seen (a min-heap on duration), plus the hold spans that kept waits
link to (the flow arrows need both ends). Spans are kept as the records the
decoder made (whose attributes the spans alike share) and become
:class:`Bar` objects only once they are drawn or handed back by a worker.
Memory is bounded by ``limit``, never by the number of spans read.
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


def bar_of(rec: SpanRecord | Bar, site_name: Callable[[str], str] | None = None) -> Bar:
    """A kept span as the timelines draw it (its site printed by ``site_name``)."""
    if isinstance(rec, Bar):
        return rec if site_name is None else rec._replace(site=site_name(rec.site))
    a, h = rec.a, rec.h
    return Bar(
        rec.pid,
        rec.run,
        a.thread_id,
        a.thread,
        rec.start_ns,
        rec.end_ns,
        rec.is_wait,
        a.kind,
        a.name,
        a.site if site_name is None else site_name(a.site),
        a.function,
        h.holder,
        h.holder_id,
        h.holder_site,
        h.outcome,
        rec.span_id,
        tuple(rec.links),
    )


#: A kept span: the decoder's record, or a Bar a worker handed back.
Kept = SpanRecord | Bar


class Timeline:
    """The ``limit`` slowest spans, and the holds the kept waits link to."""

    def __init__(self, limit: int, floor: int = 0) -> None:
        self.limit = limit
        #: Spans no longer than this (ns) are not kept (a worker's part, when
        #: the parent already keeps ``limit`` longer ones).
        self.floor_ns = floor
        self.seen = 0
        self._seq = 0
        #: (duration, sequence, span, [linked holds])
        self._heap: list[tuple[int, int, Kept, list[Kept]]] = []
        self._recent: OrderedDict[str, Kept] = OrderedDict()
        #: hold span id -> the linked-holds list of the kept wait that wants it
        self._wanted: dict[str, list[Kept]] = {}
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

    def add(self, rec: SpanRecord) -> None:
        self.seen += 1
        dur = rec.end_ns - rec.start_ns
        heap = self._heap
        full = len(heap) >= self.limit
        if (full and dur <= heap[0][0]) or dur <= self.floor_ns:
            if not rec.is_wait:
                # Too short to be kept for itself: remembered a while, as a
                # wait kept later may link to it (and keep it).
                self._remember(rec)
            return
        self._seq += 1
        linked: list[Kept] = []
        if rec.is_wait:
            for hold_id in rec.links:
                hold = self._recent.get(hold_id)
                if hold is not None:
                    linked.append(hold)
                elif len(self._wanted) < self.limit:
                    self._wanted[hold_id] = linked
        else:
            self._remember(rec)
        item = (dur, self._seq, rec, linked)
        if full:
            heapq.heapreplace(heap, item)
        else:
            heapq.heappush(heap, item)

    def _remember(self, span: Kept) -> None:
        wanted = self._wanted.pop(span.span_id, None)
        if wanted is not None:
            wanted.append(span)
        recent = self._recent
        recent[span.span_id] = span
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
            out.write(json.dumps([list(bar_of(b)) for b in tail]) + "\n")
            for dur, _, span, linked in self._heap:
                fields = [dur, list(bar_of(span)), [list(bar_of(h)) for h in linked]]
                out.write(json.dumps(fields) + "\n")

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
                linked: list[Kept] = [self._adopt(_bar(h)) for h in linked_fields]
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
        name = site_name or self.site_name
        out: dict[str, Bar] = {}
        for _, _, span, linked in self._heap:
            out[span.span_id] = bar_of(span, name)
            for hold in linked:
                if hold.span_id not in out:
                    out[hold.span_id] = bar_of(hold, name)
        return after_their_waits(
            sorted(out.values(), key=lambda b: (b.start_ns, b.end_ns, b.span_id))
        )

    @property
    def kept(self) -> int:
        return len(self._heap)
