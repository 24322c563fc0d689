"""The fast decoder for spans lines (read layer), when ``msgspec`` is installed
(``pip install tracedsync[fast]``).

``msgspec`` decodes an OTLP JSON export request straight into the typed
structs below, skipping every field the report does not read (trace ids and
status stay undecoded; a stack stays raw JSON until a profile wants it), so
a span costs a few small objects instead of dozens of dicts.
:func:`decode_span` reads the same fields as
:func:`tracedsync.report.read.decode_span` does from the standard library's
dicts, with the same result (``tests/report/test_decoders.py`` holds them to
it); a line whose types are not the ones tracedsync writes is decoded by the
standard path instead, which names what is wrong.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tracedsync._format import MAX_TEXT, cap
from tracedsync.report.read import SPAN_FIELDS, SpanRecord, any_value, set_fields

# Union[...] (not X | Y): msgspec evaluates these annotations at run time,
# and the package supports Python 3.10 where the annotations are strings.


class AnyValue(msgspec.Struct, gc=False):
    stringValue: str | None = None
    intValue: str | int | None = None
    doubleValue: float | str | None = None
    boolValue: bool | None = None
    arrayValue: msgspec.Raw | None = None
    kvlistValue: msgspec.Raw | None = None
    bytesValue: str | None = None

    def python(self) -> Any:
        """The value as :func:`tracedsync.report.read.any_value` gives it."""
        return any_value(
            {
                k: (msgspec.json.decode(v) if isinstance(v, msgspec.Raw) else v)
                for k in self.__struct_fields__
                if (v := getattr(self, k)) is not None
            }
        )


class KeyValue(msgspec.Struct, gc=False):
    key: str
    value: AnyValue


class Link(msgspec.Struct, gc=False):
    spanId: str = ""


class Span(msgspec.Struct, gc=False):
    name: str | None = None
    spanId: str | None = None
    startTimeUnixNano: str | int | None = None
    endTimeUnixNano: str | int | None = None
    attributes: list[KeyValue] = []
    links: list[Link] = []


class Scope(msgspec.Struct, gc=False):
    name: str | None = None


class ScopeSpans(msgspec.Struct, gc=False):
    scope: Scope | None = None
    spans: list[Span] = []


class Resource(msgspec.Struct, gc=False):
    attributes: list[KeyValue] = []


class ResourceSpans(msgspec.Struct, gc=False):
    resource: Resource | None = None
    scopeSpans: list[ScopeSpans] = []


class Request(msgspec.Struct):
    """A spans export request; anything else is decoded the standard way."""

    resourceSpans: list[ResourceSpans]


_TYPED = msgspec.json.Decoder(Request)
_GENERIC = msgspec.json.Decoder()


class TypedLine:
    """A spans line decoded into a :class:`Request`, with its bytes (for the
    careful path, should a span need it)."""

    __slots__ = ("raw", "request")

    def __init__(self, request: Request, raw: bytes) -> None:
        self.request = request
        self.raw = raw


def decode_line(raw: bytes) -> Any:
    """A spans line of the types tracedsync writes as a :class:`TypedLine`,
    any other line as plain JSON (dicts and lists)."""
    if b'"resourceSpans"' in raw[:40]:
        try:
            return TypedLine(_TYPED.decode(raw), raw)
        except msgspec.ValidationError:
            pass
    return _GENERIC.decode(raw)


def decode_generic(raw: bytes) -> Any:
    """Any line as plain JSON (dicts and lists), as the standard library would."""
    return _GENERIC.decode(raw)


def resource_identity(resource: Resource | None) -> tuple[str | None, int | None]:
    run = pid = None
    for kv in resource.attributes if resource is not None else ():
        if kv.key == "tracedsync.run_id":
            run = kv.value.stringValue
        elif kv.key == "process.pid":
            v = kv.value.intValue
            try:
                pid = int(v) if v is not None else None
            except ValueError:
                pid = None
    return run, pid


def decode_span(
    span: Span, known: tuple[str, bool], run: str | None, pid: int | None
) -> SpanRecord | None:
    """The record of a typed span, or None when it needs the careful path."""
    kind = name = site = path = line = stack = None
    fields: dict[str, Any] = {}
    get = SPAN_FIELDS.get
    try:
        for kv in span.attributes:
            key = kv.key
            target = get(key)
            if target is not None:
                v = getattr(kv.value, target[1])
                if v is None:
                    return None
                fields[target[0]] = v
            elif key == "sync.kind":
                kind = kv.value.stringValue
            elif key == "sync.name":
                name = kv.value.stringValue
            elif key == "sync.site":
                site = kv.value.stringValue
                if site is None:
                    return None
            elif key == "sync.stack":
                stack = kv.value.arrayValue
                if stack is None:
                    return None
            elif key == "code.file.path":
                path = kv.value
            elif key == "code.line.number":
                line = kv.value
        if kind is None or name is None or span.spanId is None:
            return None
        start = int(span.startTimeUnixNano)  # type: ignore[arg-type]
        end = int(span.endTimeUnixNano)  # type: ignore[arg-type]
        rec = SpanRecord(
            run,
            pid,
            kind,
            name if len(name) <= MAX_TEXT else cap(name),
            known[1],
            start,
            end if end > start else start,
            span.spanId,
            [li.spanId for li in span.links if li.spanId] if span.links else [],
        )
        set_fields(rec, fields)
        if site is not None:
            rec.site = site if len(site) <= MAX_TEXT else cap(site)
        elif path is not None:
            text = path.python()
            if text is not None:
                number = line.python() if line is not None else None
                rec.site = f"{text}:{number}" if number is not None else str(text)
        # The raw JSON of the array: decoded only if a profile asks (stack_frames).
        rec.stack = stack
        return rec
    except (TypeError, ValueError, OverflowError):
        return None
