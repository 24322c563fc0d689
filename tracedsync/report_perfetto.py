"""``tracedsync report --format perfetto``: Chrome Trace Event JSON (internal).

The JSON Object Format that ui.perfetto.dev and chrome://tracing open: one
process per traced process, one thread track per thread (named with
``thread_name`` metadata events), every wait and hold a complete (``"X"``)
slice, and a flow arrow (``"s"`` → ``"f"``) from the release of the hold that
blocked a waiter to the end of that wait. Events are written as the spans are
read; memory is bounded (holds and waits still to be paired are capped).

Timestamps are microseconds from the run start. Thread ids of the trace are
small numbers in order of appearance (real thread ids do not fit the 32 bits
the viewers expect); the real one is in each slice's ``args``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import IO, Any

from tracedsync.report_model import SpanEvent, _int_or_none, site_of
from tracedsync.report_render import dumps

#: Holds and waits kept while their partner has not been read yet.
MAX_UNPAIRED = 50_000


class PerfettoWriter:
    """Streams spans out as trace events."""

    def __init__(self, stream: IO[str], base_ns: int) -> None:
        self.stream = stream
        self.base_ns = base_ns
        self._threads: dict[tuple[int | None, Any, str], int] = {}
        self._pids: dict[int | None, int] = {}
        #: hold span id -> (pid, tid, end µs)
        self._holds: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        #: hold span id -> [(pid, tid, wait end µs)]
        self._waits: OrderedDict[str, list[tuple[int, int, float]]] = OrderedDict()
        self._flow_id = 0
        self._parts: dict[tuple[Any, ...], tuple[str, str]] = {}
        self.events = 0
        self.flows = 0
        self._first = True
        stream.write('{"displayTimeUnit":"ms","traceEvents":[\n')

    def _emit(self, event: dict[str, Any]) -> None:
        if not self._first:
            self.stream.write(",\n")
        self._first = False
        self.stream.write(dumps(event))
        self.events += 1

    def _us(self, ns: int) -> float:
        return round((ns - self.base_ns) / 1000, 3)

    def _track(self, ev: SpanEvent) -> tuple[int, int]:
        pid = self._pids.get(ev.pid)
        if pid is None:
            pid = self._pids[ev.pid] = ev.pid if isinstance(ev.pid, int) else len(self._pids) + 1
            label = f"pid {ev.pid}" if ev.pid is not None else "process"
            if ev.run:
                label += f" (tracedsync run {ev.run})"
            self._emit(
                {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}}
            )
        tname = str(ev.attrs.get("thread.name") or "?")
        key = (ev.pid, str(ev.attrs.get("thread.id")), tname)
        tid = self._threads.get(key)
        if tid is None:
            tid = self._threads[key] = len(self._threads) + 1
            self._emit(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": tname}}
            )
            self._emit(
                {
                    "ph": "M",
                    "name": "thread_sort_index",
                    "pid": pid,
                    "tid": tid,
                    "args": {"sort_index": tid},
                }
            )
        return pid, tid

    def add(self, ev: SpanEvent) -> None:
        pid, tid = self._track(ev)
        attrs = ev.attrs
        ts = self._us(ev.start_ns)
        end = self._us(ev.end_ns)
        outcome = attrs.get("sync.outcome") if ev.is_wait else None
        holder = attrs.get("sync.holder.thread.name") if ev.is_wait else None
        holder_site = attrs.get("sync.holder.site") if ev.is_wait else None
        key = (
            pid,
            tid,
            ev.is_wait,
            ev.kind,
            ev.name,
            attrs.get("code.file.path"),
            attrs.get("code.line.number"),
            attrs.get("code.function.name"),
            outcome,
            holder,
            holder_site,
        )
        parts = self._parts.get(key)
        if parts is None:
            # Everything but the times and the span id repeats: encode it once.
            args: dict[str, Any] = {
                "primitive": ev.name,
                "kind": ev.kind,
                "site": site_of(attrs),
                "function": attrs.get("code.function.name"),
                "thread": attrs.get("thread.name"),
                "thread_id": _int_or_none(attrs.get("thread.id")),
            }
            if ev.is_wait:
                args["outcome"] = outcome
                if holder is not None:
                    args["holder"] = holder
                if holder_site is not None:
                    args["holder_site"] = holder_site
            head = dumps(
                {
                    "ph": "X",
                    "cat": "wait" if ev.is_wait else "hold",
                    "name": f"{'wait' if ev.is_wait else 'hold'} {ev.name}",
                    "pid": pid,
                    "tid": tid,
                    "cname": "terrible" if ev.is_wait else "good",
                }
            )[:-1]
            parts = (head, dumps(args)[:-1])
            if len(self._parts) >= 100_000:
                self._parts.clear()
            self._parts[key] = parts
        if not self._first:
            self.stream.write(",\n")
        self._first = False
        self.stream.write(
            f'{parts[0]},"ts":{ts!r},"dur":{round(end - ts, 3)!r},"args":{parts[1]},'
            f'"span_id":{dumps(ev.span_id)}}}}}'
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
        common = {"cat": "unblock", "name": "released", "id": self._flow_id}
        self._emit({"ph": "s", "pid": hold[0], "tid": hold[1], "ts": hold[2] - 0.001, **common})
        self._emit(
            {"ph": "f", "bp": "e", "pid": wait[0], "tid": wait[1], "ts": wait[2] - 0.001, **common}
        )

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
