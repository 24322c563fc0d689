"""``tracedsync report --format perfetto``: Chrome Trace Event JSON (internal).

The JSON Object Format that ui.perfetto.dev and chrome://tracing open: one
process per traced process, one thread track per thread (named with
``thread_name`` metadata events), every wait and hold a complete (``"X"``)
slice, and a flow arrow (``"s"`` → ``"f"``) from the release of the hold that
blocked a waiter to the end of that wait. Events are written as the spans are
read; memory is bounded (holds and waits still to be paired are capped).

Timestamps are microseconds from the run start. Thread ids of the trace are
31-bit numbers derived from the thread (real thread ids do not fit the 32
bits the viewers expect); the real one is in each slice's ``args``. Big
inputs are written by worker processes, one part each, joined here.
"""

from __future__ import annotations

import shutil
import zlib
from collections import OrderedDict
from typing import IO, Any

from tracedsync.report_model import SpanEvent, _int_or_none, site_of
from tracedsync.report_render import dumps

#: Holds and waits kept while their partner has not been read yet.
MAX_UNPAIRED = 50_000


class PerfettoWriter:
    """Streams spans out as trace events.

    A worker process writes a *part*: events only (no header, no metadata),
    with flow ids from ``flow_base``; the parent appends each part to its
    file, pairs the holds and waits the parts could not pair, and writes the
    thread names (:meth:`append_part`, :meth:`adopt`, :meth:`add_tracks`).
    """

    def __init__(
        self, stream: IO[str], base_ns: int, *, part: bool = False, flow_base: int = 0
    ) -> None:
        self.stream = stream
        self.base_ns = base_ns
        self.part = part
        #: (pid, tid) -> (thread name, real pid, run) of every track used.
        self.tracks: dict[tuple[int, int], tuple[str, int | None, str | None]] = {}
        self._pids_named: set[int] = set()
        self._tids: dict[tuple[Any, str, str], tuple[int, str]] = {}
        #: hold span id -> (pid, tid, end µs)
        self._holds: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        #: hold span id -> [(pid, tid, wait end µs)]
        self._waits: OrderedDict[str, list[tuple[int, int, float]]] = OrderedDict()
        self._flow_id = flow_base
        self._encoded: dict[Any, str] = {}
        self.events = 0
        self.flows = 0
        self._first = True
        if not part:
            stream.write('{"displayTimeUnit":"ms","traceEvents":[\n')

    def _write_item(self, text: str) -> None:
        """One item of the traceEvents list, after its separator."""
        if not self._first:
            self.stream.write(",\n")
        self._first = False
        self.stream.write(text)

    def _emit(self, event: dict[str, Any]) -> None:
        self._write_item(dumps(event))
        self.events += 1

    def _us(self, ns: int) -> float:
        return round((ns - self.base_ns) / 1000, 3)

    def _track(self, ev: SpanEvent) -> tuple[int, int, str]:
        pid = ev.pid if isinstance(ev.pid, int) and 0 < ev.pid < 1 << 31 else 1
        tname = str(ev.attrs.get("thread.name") or "?")
        key = (ev.pid, str(ev.attrs.get("thread.id")), tname)
        known = self._tids.get(key)
        if known is None:
            # The same number in every worker: derived from the thread itself.
            tid = (zlib.crc32(repr(key).encode()) & 0x7FFFFFFF) or 1
            real = _int_or_none(ev.attrs.get("thread.id"))
            known = self._tids[key] = (tid, "null" if real is None else str(real))
            track = (tname, ev.pid, ev.run)
            if (pid, tid) not in self.tracks:
                self.tracks[(pid, tid)] = track
                if not self.part:
                    self._name_track(pid, tid, track)
        return pid, known[0], known[1]

    def _enc(self, value: Any) -> str:
        """``value`` as JSON, cached: names, sites and threads repeat."""
        try:
            cached = self._encoded.get(value)
        except TypeError:  # a list or dict where a name was expected
            return str(dumps(value))
        if cached is None:
            cached = dumps(value)
            if len(self._encoded) >= 50_000:
                self._encoded.clear()
            self._encoded[value] = cached
        return cached

    def _name_track(self, pid: int, tid: int, track: tuple[str, int | None, str | None]) -> None:
        tname, real_pid, run = track
        if pid not in self._pids_named:
            self._pids_named.add(pid)
            label = f"pid {real_pid}" if real_pid is not None else "process"
            if run:
                label += f" (tracedsync run {run})"
            self._emit(
                {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}}
            )
        self._emit(
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": tname}}
        )

    # -- merging parts written by worker processes ------------------------------------

    def append_part(self, path: str) -> None:
        """Copy a worker's events into the document."""
        with open(path, encoding="utf-8") as part:
            first = part.read(1 << 20)
            if not first:
                return
            self._write_item(first)
            shutil.copyfileobj(part, self.stream, 1 << 20)

    def unpaired(self, keep_holds: int = 5_000) -> tuple[list[Any], list[Any]]:
        """What a part could not pair: its last holds and its waiting waits."""
        holds = list(self._holds.items())[-keep_holds:]
        return holds, list(self._waits.items())

    def adopt(self, holds: list[Any], waits: list[Any]) -> None:
        """Pair a part's leftovers with those of the parts before it."""
        for hold_id, hold in holds:
            for wait in self._waits.pop(hold_id, None) or ():
                self._flow(hold, wait)
            self._holds[hold_id] = hold
            if len(self._holds) > MAX_UNPAIRED:
                self._holds.popitem(last=False)
        for hold_id, entries in waits:
            hold = self._holds.get(hold_id)
            if hold is not None:
                for wait in entries:
                    self._flow(hold, wait)
            else:
                self._waits.setdefault(hold_id, []).extend(entries)
                if len(self._waits) > MAX_UNPAIRED:
                    self._waits.popitem(last=False)

    def add_tracks(self, tracks: dict[tuple[int, int], tuple[str, int | None, str | None]]) -> None:
        for key, track in tracks.items():
            if key not in self.tracks:
                self.tracks[key] = track
                self._name_track(key[0], key[1], track)

    def add(self, ev: SpanEvent) -> None:
        pid, tid, real_tid = self._track(ev)
        attrs = ev.attrs
        ts = self._us(ev.start_ns)
        end = self._us(ev.end_ns)
        is_wait = ev.is_wait
        enc = self._enc
        name = ev.name
        outcome = ""
        if is_wait:
            outcome = ',"outcome":' + enc(attrs.get("sync.outcome"))
            holder = attrs.get("sync.holder.thread.name")
            if holder is not None:
                outcome += ',"holder":' + enc(holder)
            holder_site = attrs.get("sync.holder.site")
            if holder_site is not None:
                outcome += ',"holder_site":' + enc(holder_site)
        head = (
            f'{{"ph":"X","cat":"{"wait" if is_wait else "hold"}",'
            f'"name":{enc(("wait " if is_wait else "hold ") + name)},'
            f'"pid":{pid},"tid":{tid},"cname":"{"terrible" if is_wait else "good"}"'
        )
        args = (
            f'{{"primitive":{enc(name)},"kind":{enc(ev.kind)},"site":{enc(site_of(attrs))},'
            f'"function":{enc(attrs.get("code.function.name"))},'
            f'"thread":{enc(attrs.get("thread.name"))},"thread_id":{real_tid}'
        )
        span_id = ev.span_id
        if not (span_id.isascii() and span_id.isalnum()):
            span_id = dumps(span_id)[1:-1]
        self._write_item(
            f'{head},"ts":{ts!r},"dur":{round(end - ts, 3)!r},"args":{args}{outcome},'
            f'"span_id":"{span_id}"}}}}'
        )
        self.events += 1
        if ev.is_wait:
            for hold_id in ev.links:
                hold = self._holds.get(hold_id)
                if hold is not None:
                    self._flow(hold, (pid, tid, end))
                else:
                    self._waits.setdefault(hold_id, []).append((pid, tid, end))
                    if len(self._waits) > MAX_UNPAIRED:
                        self._waits.popitem(last=False)
        else:
            hold = (pid, tid, end)
            waiting = self._waits.pop(ev.span_id, None)
            for wait in waiting or ():
                self._flow(hold, wait)
            self._holds[ev.span_id] = hold
            if len(self._holds) > MAX_UNPAIRED:
                self._holds.popitem(last=False)

    def _flow(self, hold: tuple[int, int, float], wait: tuple[int, int, float]) -> None:
        """An arrow from the holder's release to the end of the wait it blocked."""
        if wait[2] < hold[2]:
            return  # the wait ended before that hold did: released by someone else
        self._flow_id += 1
        self.flows += 1
        # One nanosecond inside each slice, so each end binds to its slice.
        ident = self._flow_id
        self._write_item(
            f'{{"ph":"s","pid":{hold[0]},"tid":{hold[1]},"ts":{round(hold[2] - 0.001, 3)!r},'
            f'"cat":"unblock","name":"released","id":{ident}}},\n'
            f'{{"ph":"f","bp":"e","pid":{wait[0]},"tid":{wait[1]},'
            f'"ts":{round(wait[2] - 0.001, 3)!r},"cat":"unblock","name":"released","id":{ident}}}'
        )
        self.events += 2

    def close(self, doc: dict[str, Any]) -> None:
        """End the JSON document, with the report's summary as metadata."""
        self.stream.write("\n],")
        other = {
            "producer": "tracedsync report",
            "format": doc.get("format"),
            "runs": [r["run_id"] for r in doc.get("runs", [])],
            "time_zero": doc.get("time", {}).get("run_start"),
            "spans": doc.get("spans", {}).get("analysed"),
            "flows": self.flows,
        }
        self.stream.write(f'"otherData":{dumps(other)}}}\n')
