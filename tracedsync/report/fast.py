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

from tracedsync.report.read import (
    HOLDER_FIELDS,
    NO_HOLDER,
    SPAN_FIELDS,
    HolderAttrs,
    SpanAttrs,
    SpanRecord,
    any_value,
    make_attrs,
    make_holder,
    seconds_ns,
)

# Union[...] (not X | Y): msgspec evaluates these annotations at run time,
# and the package supports Python 3.10 where the annotations are strings.


#: An absent array or kvlist value: msgspec takes ``Raw`` only on its own, not
#: in a union with None, so absence is the empty Raw (no JSON value is empty).
ABSENT = msgspec.Raw(b"")


class AnyValue(msgspec.Struct, gc=False):
    stringValue: str | None = None
    intValue: str | int | None = None
    doubleValue: float | str | None = None
    boolValue: bool | None = None
    arrayValue: msgspec.Raw = ABSENT
    kvlistValue: msgspec.Raw = ABSENT
    bytesValue: str | None = None

    def python(self) -> Any:
        """The value as :func:`tracedsync.report.read.any_value` gives it."""
        fields = {}
        for k in self.__struct_fields__:
            v = getattr(self, k)
            if isinstance(v, msgspec.Raw):
                if len(v):
                    fields[k] = msgspec.json.decode(v)
            elif v is not None:
                fields[k] = v
        return any_value(fields)


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
    #: The attribute list's JSON, decoded by AttrCache (once per distinct text).
    attributes: msgspec.Raw = ABSENT
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


#: The item the runtime appends to a wait's attributes (its own hand-off
#: time, so no two lists alike) and the one that starts a wait's own part (the
#: outcome, the holder): the unescaped text of a key can only be a key, so a
#: list cut before one of these is cut between two items.
_HANDOFF_ITEM = b',{"key":"sync.wait.handoff","value":{"doubleValue":'
_OUTCOME_ITEM = b',{"key":"sync.outcome",'
_ITEMS = msgspec.json.Decoder(list[KeyValue])
#: Distinct pieces of attribute lists remembered (their text is the key).
MAX_PIECES = 50_000


class _Piece:
    """What some items of an attribute list say: the span's own part made
    once (``attrs``: when the piece names kind and name; ``holder``: its
    HolderAttrs), and the items as decode_span's loop reads them (for the
    rare lists whose pieces must be put together)."""

    __slots__ = (
        "attrs",
        "fields",
        "head",
        "holder",
        "kind",
        "line",
        "name",
        "path",
        "site",
        "stack",
    )

    def __init__(self) -> None:
        self.kind: Any = None
        self.name: Any = None
        self.site: Any = None
        self.path: Any = None
        self.line: Any = None
        self.stack: Any = None
        self.fields: dict[str, Any] = {}
        self.attrs: SpanAttrs | None = None
        self.holder: HolderAttrs = NO_HOLDER
        #: Whether it says anything SpanAttrs holds.
        self.head = False


def _piece(text: bytes) -> _Piece | None:
    """The items of ``text`` (a JSON list), or None when one is not in the
    encoding tracedsync writes (the span then takes the careful path)."""
    try:
        items = _ITEMS.decode(text)
    except msgspec.ValidationError:
        return None
    out = _Piece()
    get = SPAN_FIELDS.get
    for kv in items:
        key = kv.key
        target = get(key)
        if target is not None:
            v = getattr(kv.value, target[1])
            if v is None:
                return None
            out.fields[target[0]] = v
            if target[0] not in HOLDER_FIELDS:
                out.head = True
        elif key == "sync.kind":
            out.kind = kv.value.stringValue
        elif key == "sync.name":
            out.name = kv.value.stringValue
        elif key == "sync.site":
            out.site = kv.value.stringValue
            if out.site is None:
                return None
        elif key == "sync.stack":
            stack = kv.value.arrayValue
            if not len(stack):
                return None
            out.stack = bytes(stack)
        elif key == "code.file.path":
            out.path = kv.value
        elif key == "code.line.number":
            out.line = kv.value
        else:
            continue
        if target is None:
            out.head = True
    try:
        out.holder = make_holder(out.fields)
        if out.kind is not None or out.name is not None:
            out.attrs = make_attrs(
                out.kind, out.name, out.fields, out.site, out.path, out.line, out.stack, _python
            )
    except (TypeError, ValueError, OverflowError):
        return None
    return out


def _python(value: AnyValue) -> Any:
    return value.python()


class AttrCache:
    """Attribute lists decoded once per distinct text.

    The runtime writes a span's attributes in a fixed order: first what the
    span shares with the primitive's other spans of that thread, site and
    stack (kind, name, thread, site, stack), then, for a wait, its outcome
    and holder, and last its own hand-off time. The list is cut there: the
    first part makes a :class:`~tracedsync.report.read.SpanAttrs`, the
    second a :class:`~tracedsync.report.read.HolderAttrs`, each decoded once
    per distinct text and shared by the spans that have it; the hand-off is
    parsed from the span's own text. A list in another order is decoded by
    putting its parts together (once per pair). Memory: MAX_PIECES texts at
    most; then the cache starts over."""

    def __init__(self) -> None:
        self._pieces: dict[bytes, _Piece | None] = {}
        self._pairs: dict[tuple[int, int], tuple[SpanAttrs, HolderAttrs] | None] = {}

    def attrs(self, raw: msgspec.Raw) -> tuple[SpanAttrs, HolderAttrs, int | None] | None:
        """A span's attributes and its own hand-off (ns, or None); None when
        the span needs the careful path."""
        text = bytes(raw)
        end = len(text) - 1
        handoff = None
        cut = text.rfind(_HANDOFF_ITEM)
        if cut > 0 and text.endswith(b"}}]"):
            try:
                handoff = float(text[cut + len(_HANDOFF_ITEM) : -3])
            except ValueError:
                pass
            else:
                end = cut
        split = text.find(_OUTCOME_ITEM, 0, end)
        # (bytes slices: a dict finds a bytes key 20 times as fast as a
        # memoryview one, which compares byte by byte through struct codes)
        head = self._get(text[:split] if split > 0 else text[:end], True)
        if head is None:
            return None
        if split > 0:
            tail = self._get(text[split + 1 : end], False)
            if tail is None:
                return None
            if head.attrs is not None and head.holder is NO_HOLDER and not tail.head:
                a, h = head.attrs, tail.holder
            else:
                pair = self._pair(head, tail)
                if pair is None:
                    return None
                a, h = pair
        elif head.attrs is not None:
            a, h = head.attrs, head.holder
        else:
            return None
        if handoff is None:
            return a, h, h.handoff_ns
        ns = seconds_ns(handoff)
        return (a, h, ns) if ns is not None else None

    def _get(self, text: bytes, opened: bool) -> _Piece | None:
        pieces = self._pieces
        try:
            return pieces[text]
        except KeyError:
            pass
        if len(pieces) >= MAX_PIECES:
            # Start over (the pairs name pieces by id: they go too).
            pieces.clear()
            self._pairs.clear()
        piece = pieces[text] = _piece(text + b"]" if opened else b"[" + text + b"]")
        return piece

    def _pair(self, head: _Piece, tail: _Piece) -> tuple[SpanAttrs, HolderAttrs] | None:
        key = (id(head), id(tail))
        try:
            return self._pairs[key]
        except KeyError:
            pass

        def pick(a: Any, b: Any) -> Any:
            return b if b is not None else a

        fields = {**head.fields, **tail.fields}
        try:
            found: tuple[SpanAttrs, HolderAttrs] | None = (
                make_attrs(
                    pick(head.kind, tail.kind),
                    pick(head.name, tail.name),
                    fields,
                    pick(head.site, tail.site),
                    pick(head.path, tail.path),
                    pick(head.line, tail.line),
                    pick(head.stack, tail.stack),
                    _python,
                ),
                make_holder(fields),
            )
        except (TypeError, ValueError, OverflowError):
            found = None
        self._pairs[key] = found
        return found


def decode_span(
    span: Span, known: tuple[str, bool], run: str | None, pid: int | None, cache: AttrCache
) -> SpanRecord | None:
    """The record of a typed span, or None when it needs the careful path."""
    try:
        found = cache.attrs(span.attributes)
        if found is None or span.spanId is None:
            return None
        start = int(span.startTimeUnixNano)  # type: ignore[arg-type]
        end = int(span.endTimeUnixNano)  # type: ignore[arg-type]
        return SpanRecord(
            found[0],
            found[1],
            run,
            pid,
            known[1],
            start,
            end if end > start else start,
            span.spanId,
            [li.spanId for li in span.links if li.spanId] if span.links else [],
            found[2],
        )
    except (TypeError, ValueError, OverflowError):
        return None
