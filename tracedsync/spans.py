"""Records to spans and log events (on the pipeline thread).

A record carries raw facts (identities, monotonic times, idents, stacks of
code objects); here they become OpenTelemetry spans (:class:`SpanData`, or
spans of the tracer provider the user gave) with explicit start and end
times, parented to the context that was current in the program's thread, and
the log events that mirror them. Attribute sets are shared: the spans of one
primitive, thread, stack, outcome and holder share one dict, made once.

A wait links to the hold that made it wait (the span id the waiter reserved):
when the wait's record comes first, the wait waits here for the hold, up to
``LINK_PATIENCE_NS``.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import Any

from tracedsync import _settings, _sites, _threads, recorder, stacks, waits
from tracedsync.describe import holder_attributes, holder_text, iso_timestamp, primitive_fields
from tracedsync.events import SPAN_FIELD
from tracedsync.exporters.base import SharedAttributes, SpanData
from tracedsync.records import Finding, Hold, Record, Wait

SCOPE_NAME = "tracedsync"
#: The OpenTelemetry API module a context's current span is read with; never
#: imported here: a context exists only once the program imported
#: OpenTelemetry, and a span is current in it only once it imported this.
_OTEL_TRACE = "opentelemetry.trace"
#: How long a wait span waits for the hold span it links to.
LINK_PATIENCE_NS = 5_000_000_000
#: Distinct span attribute sets kept: primitives made per request give every
#: span a new ``sync.id``, so the cache must stay small.
_ATTRS_CACHE_LIMIT = 512


class _ForcedIdGenerator:
    """Wraps a tracer's id generator so a reserved span id can be used once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.next_span_id = 0

    def generate_span_id(self) -> int:
        forced = self.next_span_id
        if forced:
            self.next_span_id = 0
            return forced
        return int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        return int(self.inner.generate_trace_id())

    def __getattr__(self, name: str) -> Any:  # e.g. is_trace_id_random()
        return getattr(self.inner, name)


def _link(trace_id: int, span_id: int, attrs: dict[str, Any]) -> Any:
    """An OpenTelemetry ``Link`` to a sampled span (for a tracer provider the
    program gave: the OpenTelemetry API is imported then)."""
    from opentelemetry.trace import Link, SpanContext, TraceFlags

    return Link(SpanContext(trace_id, span_id, True, TraceFlags(TraceFlags.SAMPLED)), attrs or None)


_span_names: dict[tuple[str, bool], str] = {}


def span_name(kind: str, is_wait: bool) -> str:
    """``<kind>.wait`` or ``<kind>.hold`` (formatted once per kind)."""
    try:
        return _span_names[(kind, is_wait)]
    except KeyError:
        name = _span_names[(kind, is_wait)] = f"{kind}.wait" if is_wait else f"{kind}.hold"
        return name


class SpanBuilder:
    """Turns records into spans (appended to a list) and log events (logged
    to the pipeline's private structlog logger)."""

    def __init__(self, log: Any, version: str, tracer_provider: Any = None) -> None:
        self._log = log
        self.logs_wanted = True
        self._tracer = None
        self._ids: _ForcedIdGenerator | None = None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(SCOPE_NAME, version)
            inner = getattr(self._tracer, "id_generator", None)
            if inner is not None:
                self._ids = _ForcedIdGenerator(inner)
                self._tracer.id_generator = self._ids
        self._random = random.Random()
        #: build's key -> the attributes shared by the spans with that key.
        self._attrs: dict[tuple[Any, ...], SharedAttributes] = {}
        #: reserved hold span id -> trace id, for links from waits to holds.
        self._hold_traces: dict[int, int] = {}
        #: reserved hold span id -> [(deadline, wait span arguments)] waiting for it.
        self._pending: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
        #: waits whose hold arrived: exported with the next batch.
        self._ready: list[SpanData] = []
        #: Called with every wait span made (exemplars for the metrics).
        self.on_wait: Callable[[SpanData], None] | None = None

    # -- spans -----------------------------------------------------------------

    def new_id(self, bits: int) -> int:
        return self._random.getrandbits(bits) or 1

    def parent(self, ctx: Any) -> tuple[int, int]:
        """(trace id, span id) of the span current in ``ctx``, else (0, 0)."""
        if ctx is None:
            return 0, 0
        # (None while the program has not imported it, or is importing it.)
        get_current_span = getattr(sys.modules.get(_OTEL_TRACE), "get_current_span", None)
        if get_current_span is None:
            return 0, 0
        sc = get_current_span(ctx).get_span_context()
        if sc.is_valid:
            return sc.trace_id, sc.span_id
        return 0, 0

    def build(self, rec: Record, offset: int, spans: list[SpanData]) -> None:
        """Make the span(s) and event(s) of one record; ``offset`` is epoch ns
        minus monotonic ns."""
        if type(rec) is Finding:
            self._finding(rec, offset, spans)
        elif type(rec) is Wait:
            self._wait(rec, offset, spans)
        elif type(rec) is Hold:
            self._hold(rec, offset, spans)

    def _shared(self, key: tuple[Any, ...], make: Callable[[], dict[str, Any]]) -> SharedAttributes:
        attrs = self._attrs.get(key)
        if attrs is None:
            if len(self._attrs) >= _ATTRS_CACHE_LIMIT:
                self._attrs.clear()
            attrs = self._attrs[key] = SharedAttributes(make())
        return attrs

    @staticmethod
    def _base(meta: Any, ident: int, thread_name: str, stack: Any) -> dict[str, Any]:
        attrs = primitive_fields(meta)
        attrs["thread.id"] = ident
        attrs["thread.name"] = thread_name
        site = stacks.call_site(stack)
        if site is not None:
            attrs["code.function.name"] = site[2]
            attrs["code.file.path"] = site[0]
            attrs["code.line.number"] = site[1]
            attrs["sync.site"] = _sites.format_site(site)
        if stack is not None and len(stack) > 1:
            attrs["sync.stack"] = stacks.frames(stack)
        return attrs

    def _wait(self, rec: Wait, offset: int, spans: list[SpanData]) -> None:
        key = (
            Wait,
            rec.meta,
            rec.thread,
            rec.thread_name,
            rec.outcome,
            rec.stack,
            rec.holder,
            rec.released_before_wait,
        )

        def make() -> dict[str, Any]:
            attrs = self._base(rec.meta, rec.thread, rec.thread_name, rec.stack)
            attrs["sync.outcome"] = rec.outcome
            attrs.update(holder_attributes(rec.holder, offset))
            if rec.released_before_wait:
                attrs["sync.holder.released_before_wait"] = True
            return attrs

        attrs: dict[str, Any] = self._shared(key, make)
        if rec.handoff is not None:
            attrs = SharedAttributes(attrs)
            attrs["sync.wait.handoff"] = rec.handoff / 1e9
        name = span_name(rec.meta.kind, True)
        start, end = rec.start + offset, rec.end + offset
        links: list[tuple[int, int, dict[str, Any]]] = []
        reserved = rec.link
        if reserved:
            trace_id = self._hold_traces.get(reserved)
            if trace_id is None:
                # The hold's record has not come yet: wait for it a little.
                self._pending.setdefault(reserved, []).append(
                    (time.monotonic_ns() + LINK_PATIENCE_NS, (name, rec.context, attrs, start, end))
                )
                return
            links.append((trace_id, reserved, {}))
        spans.append(self._finish_wait(name, rec.context, attrs, start, end, links))

    def _hold(self, rec: Hold, offset: int, spans: list[SpanData]) -> None:
        thread_name = rec.thread_name
        key = (Hold, rec.meta, rec.thread, thread_name, rec.stack, rec.depth)

        def make() -> dict[str, Any]:
            attrs = self._base(rec.meta, rec.thread, thread_name, rec.stack)
            if rec.depth > 1:
                attrs["sync.rlock.depth"] = rec.depth
            return attrs

        attrs = self._shared(key, make)
        span = self._make_span(
            span_name(rec.meta.kind, False),
            rec.context,
            attrs,
            rec.start + offset,
            rec.end + offset,
            rec.span_id,
            [],
        )
        if rec.span_id:
            self._remember_hold(rec.span_id, span.trace_id)
        # A hold emitted only because someone waited on it is a span (the wait
        # links to it), not a long_hold event.
        if rec.end - rec.start >= _settings.current.hold_ns:
            self._event("long_hold", span)
        spans.append(span)

    def _finish_wait(
        self,
        name: str,
        ctx: Any,
        attrs: dict[str, Any],
        start: int,
        end: int,
        links: list[tuple[int, int, dict[str, Any]]],
        event: str = "long_wait",
    ) -> SpanData:
        span = self._make_span(name, ctx, attrs, start, end, None, links)
        if event:
            self._event(event, span)
        if self.on_wait is not None:
            try:
                self.on_wait(span)
            except Exception:
                pass
        return span

    def _event(self, event: str, span: SpanData) -> None:
        """The structlog event mirroring a wait or hold span (not made when no
        exporter takes log events: with only ``otlp``, say)."""
        if self.logs_wanted:
            self._log.info(event, **{SPAN_FIELD: span})

    def _remember_hold(self, span_id: int, trace_id: int) -> None:
        if len(self._hold_traces) > 50_000:
            for key in list(self._hold_traces)[:25_000]:
                del self._hold_traces[key]
        self._hold_traces[span_id] = trace_id
        waiting = self._pending.pop(span_id, None)
        if waiting:
            for _, (name, ctx, attrs, start, end) in waiting:
                link: list[tuple[int, int, dict[str, Any]]] = [(trace_id, span_id, {})]
                self._ready.append(self._finish_wait(name, ctx, attrs, start, end, link))

    def due_pending(self, final: bool) -> list[SpanData]:
        """Waits whose hold arrived, and those whose hold never came in time."""
        out = self._ready
        self._ready = []
        if self._pending:
            now = time.monotonic_ns()
            for key in list(self._pending):
                keep = []
                for deadline, args in self._pending[key]:
                    if final or deadline <= now:
                        name, ctx, attrs, start, end = args  # the hold never came
                        out.append(self._finish_wait(name, ctx, attrs, start, end, []))
                    else:
                        keep.append((deadline, args))
                if keep:
                    self._pending[key] = keep
                else:
                    del self._pending[key]
        return out

    def _make_span(
        self,
        name: str,
        ctx: Any,
        attrs: dict[str, Any],
        start: int,
        end: int,
        forced_span_id: int | None,
        links: list[tuple[int, int, dict[str, Any]]],
    ) -> SpanData:
        if self._tracer is not None:
            return self._make_external_span(name, ctx, attrs, start, end, forced_span_id, links)
        trace_id, parent_id = self.parent(ctx)
        if not trace_id:
            trace_id = self.new_id(128)
        span_id = forced_span_id or self.new_id(64)
        return SpanData(name, trace_id, span_id, parent_id, start, end, attrs, links)

    def _make_external_span(
        self,
        name: str,
        ctx: Any,
        attrs: dict[str, Any],
        start: int,
        end: int,
        forced_span_id: int | None,
        links: list[tuple[int, int, dict[str, Any]]],
    ) -> SpanData:
        assert self._tracer is not None
        if self._ids is not None and forced_span_id:
            self._ids.next_span_id = forced_span_id
        span = self._tracer.start_span(
            name,
            context=ctx,
            attributes=attrs,
            links=[_link(t, s, a) for t, s, a in links],
            start_time=start,
        )
        span.end(end_time=end)
        sc = span.get_span_context()
        parent = getattr(span, "parent", None)
        return SpanData(
            name,
            sc.trace_id,
            sc.span_id,
            parent.span_id if parent is not None else 0,
            start,
            end,
            attrs,
            links,
        )

    # -- findings ----------------------------------------------------------------

    def _finding(self, rec: Finding, offset: int, spans: list[SpanData]) -> None:
        out = dict(rec.fields)
        out.setdefault("timestamp", iso_timestamp(rec.at + offset))
        trace_id, span_id = self.parent(rec.context)
        if rec.span is not None:
            name, attrs, contexts, t_start = rec.span
            links: list[tuple[int, int, dict[str, Any]]] = []
            for linked in contexts:
                link_trace, link_span = self.parent(linked)
                if link_trace:
                    links.append((link_trace, link_span, {}))
            span = self._make_span(
                name, None, dict(attrs), t_start + offset, rec.at + offset, None, links
            )
            spans.append(span)
            trace_id, span_id = span.trace_id, span.span_id
        if trace_id:
            out["trace_id"] = f"{trace_id:032x}"
            out["span_id"] = f"{span_id:016x}"
        level = out.pop("level", "error")
        getattr(self._log, level if level in ("info", "warning", "error") else "error")(
            rec.event, **out
        )

    # -- waits still blocked -------------------------------------------------------

    def unfinished(self, offset: int, spans: list[SpanData] | None) -> int:
        """Report every wait still blocked as an ``unfinished_wait`` event and,
        given a list (at exit), as a span with outcome ``unfinished`` ending
        now. Returns how many there were."""
        now = time.monotonic_ns()
        settings = _settings.current
        count = 0
        for ident, entry in sorted(waits.snapshot().items(), key=lambda kv: kv[1].since):
            if _threads.is_internal(ident):
                continue
            prim = entry.prim
            meta = prim._meta
            count += 1
            waited_ns = now - entry.since
            if not entry.since_wall:
                entry.since_wall = entry.since + offset
            thread = _threads.thread_name(ident)
            site = _sites.thread_site(ident)
            holder = None if entry.idle else recorder.describe_holder(prim, ident)[0]
            idle_stuck = entry.idle and waited_ns >= settings.idle_stuck_after_ns
            fields: dict[str, Any] = {
                "level": "info" if entry.idle and not idle_stuck else "error",
                "timestamp": iso_timestamp(now + offset),
                "thread.name": thread,
                "thread.id": ident,
                **primitive_fields(meta),
                "idle": entry.idle,
                "since": iso_timestamp(entry.since_wall),
                "waited_ms": round(waited_ns / 1e6, 3),
                "idle_stuck_after_ms": settings.idle_stuck_after_ns / 1e6,
                "site": _sites.format_site(site),
            }
            fields.update(holder_attributes(holder, offset))
            what = "still waiting" if entry.idle else "still blocked"
            fields["message"] = (
                f"{what} at exit: {thread} has waited {waited_ns / 1e9:.1f} s on {meta.kind} "
                f"{meta.name} #{meta.instance} at {_sites.format_site(site)}{holder_text(holder)}"
            )
            level = fields.pop("level")
            getattr(self._log, level)("unfinished_wait", **fields)
            if spans is None:
                continue
            attrs = self._base(meta, ident, thread, None)
            if site is not None:
                attrs["code.function.name"] = site[2]
                attrs["code.file.path"] = site[0]
                attrs["code.line.number"] = site[1]
                attrs["sync.site"] = _sites.format_site(site)
            attrs["sync.outcome"] = "unfinished"
            attrs.update(holder_attributes(holder, offset))
            spans.append(
                self._finish_wait(
                    span_name(meta.kind, True),
                    entry.context,
                    SharedAttributes(attrs),
                    entry.since_wall,
                    now + offset,
                    [],
                    event="",
                )
            )
        return count


def blocked_gauges() -> dict[tuple[str, str], tuple[int, float]]:
    """(kind, name) -> (waits still blocked now, the oldest's age in seconds),
    for the ``tracedsync.waits.blocked`` gauges."""
    now = time.monotonic_ns()
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for ident, entry in waits.snapshot().items():
        if _threads.is_internal(ident):
            continue
        meta = entry.prim._meta
        key = (meta.kind, meta.name)
        count, age = out.get(key, (0, 0.0))
        out[key] = (count + 1, max(age, (now - entry.since) / 1e9))
    return out
