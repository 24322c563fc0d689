"""Finding and reading the files ``tracedsync report`` analyses: the *read*
layer of read → model → render.

Output directories hold ``spans-<run>-<pid>.jsonl``, ``metrics-<run>-<pid>.jsonl``
and ``logs-<run>-<pid>.jsonl``, rotated ones as ``<stem>.<n>.jsonl`` (n = 1
oldest); summary directories hold ``summary-<run>-<pid>.json``, one JSON
object a process writes at exit whatever its exporters. Files are read line
by line, never whole: a line is one OTLP JSON export request (spans,
metrics) or one structlog event (logs). Only the
standard library's ``json`` parses them; nothing here imports OpenTelemetry.

Everything a line says is decoded here, once: :func:`attributes` is the one
decoder of OTLP ``KeyValue`` lists, :func:`decode_span` turns a span into a
:class:`SpanRecord` the model aggregates.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tracedsync._format import MAX_TEXT, cap
from tracedsync.kinds import KINDS
from tracedsync.report.errors import ReportError

#: ``spans-<run>-<pid>.jsonl``, rotated ``spans-<run>-<pid>.<n>.jsonl``, and
#: ``summary-<run>-<pid>.json``.
FILE_NAME = re.compile(
    r"^(?:(?P<signal>spans|metrics|logs)-(?P<run>[A-Za-z0-9_.-]+?)-(?P<pid>\d+)"
    r"(?:\.(?P<n>\d+))?\.jsonl"
    r"|(?P<summary>summary)-(?P<srun>[A-Za-z0-9_.-]+?)-(?P<spid>\d+)\.json)$"
)
#: One line longer than this is an error, so a giant line cannot exhaust memory.
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
#: The JSON decoders: ``stdlib`` always; ``msgspec`` with ``tracedsync[fast]``.
DECODERS = ("stdlib", "msgspec")


def available_decoders() -> list[str]:
    """The decoders this installation has."""
    try:
        import msgspec  # noqa: F401
    except ImportError:
        return ["stdlib"]
    return ["stdlib", "msgspec"]


def decoder_name() -> str:
    """The decoder ``TRACEDSYNC_REPORT_DECODER`` asks for (``stdlib`` or
    ``msgspec``), else the fastest installed."""
    wanted = os.environ.get("TRACEDSYNC_REPORT_DECODER", "").strip().lower()
    if wanted not in ("", "auto", *DECODERS):
        raise ReportError(
            f"TRACEDSYNC_REPORT_DECODER={wanted!r}: not one of auto, {', '.join(DECODERS)}"
        )
    if wanted == "stdlib":
        return "stdlib"
    try:
        import msgspec  # noqa: F401
    except ImportError:
        if wanted == "msgspec":
            raise ReportError(
                "TRACEDSYNC_REPORT_DECODER='msgspec': msgspec is not installed "
                "(pip install 'tracedsync[fast]')"
            ) from None
        return "stdlib"
    return "msgspec"


def loads(raw: bytes) -> Any:
    """One JSON value, by the standard library (the reference decoder)."""
    return json.loads(raw)


@dataclass
class InputFile:
    """One file to read, with what its name says about it."""

    path: str
    #: ``spans``, ``metrics``, ``logs``, ``summary``, or None when the name says nothing
    #: (an OTel Collector's file): each line then tells what it is.
    signal: str | None = None
    run: str | None = None
    pid: int | None = None
    #: Rotation number (1 = oldest); None for the file being written.
    rotation: int | None = None
    mtime: float = 0.0

    @property
    def order(self) -> tuple[Any, ...]:
        """Sort key: per process, rotated files oldest first, the live one last."""
        rot = self.rotation if self.rotation is not None else 1 << 30
        return (self.run or "", self.pid or 0, self.signal or "", rot, self.path)


@dataclass
class Selection:
    """The files chosen and the runs they belong to."""

    files: list[InputFile]
    runs: list[str]
    #: Runs present in the directories but not selected (latest run only).
    other_runs: list[str] = field(default_factory=list)


def _describe(path: str) -> InputFile:
    name = os.path.basename(path)
    match = FILE_NAME.match(name)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = 0.0
    if match is None:
        return InputFile(path, mtime=mtime)
    if match.group("summary"):
        return InputFile(
            path,
            signal="summary",
            run=match.group("srun"),
            pid=int(match.group("spid")),
            mtime=mtime,
        )
    n = match.group("n")
    return InputFile(
        path,
        signal=match.group("signal"),
        run=match.group("run"),
        pid=int(match.group("pid")),
        rotation=int(n) if n is not None else None,
        mtime=mtime,
    )


def select_files(
    paths: Sequence[str], *, all_runs: bool = False, run: str | None = None
) -> Selection:
    """Files to analyse from directories and explicit files.

    A directory contributes its tracedsync files of the latest run (the run
    whose newest file is newest), of every run with ``all_runs``, or of the
    run ``run``. Explicit files are all read, whatever their name.
    """
    explicit: list[InputFile] = []
    found: list[InputFile] = []
    for path in paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                raise ReportError(f"cannot read directory {path}: {exc.strerror}") from None
            here = [
                _describe(os.path.join(path, n))
                for n in names
                if FILE_NAME.match(n) and os.path.isfile(os.path.join(path, n))
            ]
            if not here:
                raise ReportError(
                    "no tracedsync files (spans-*.jsonl, metrics-*.jsonl, logs-*.jsonl, "
                    f"summary-*.json) in {path}"
                )
            found.extend(here)
        elif os.path.exists(path):
            if not os.path.isfile(path):
                raise ReportError(f"not a regular file: {path}")
            if not os.access(path, os.R_OK):
                raise ReportError(f"cannot read {path}: permission denied")
            explicit.append(_describe(path))
        else:
            raise ReportError(f"no such file or directory: {path}")
    newest: dict[str, float] = {}
    for f in found:
        key = f.run or ""
        newest[key] = max(newest.get(key, 0.0), f.mtime)
    by_age = sorted(newest, key=lambda r: (newest[r], r))
    if run is not None:
        if found and run not in newest:
            raise ReportError(f"no files of run {run!r} (runs found: {', '.join(by_age)})")
        chosen = {run}
    elif all_runs:
        chosen = set(newest)
    else:
        chosen = {by_age[-1]} if by_age else set()
    files = [f for f in found if (f.run or "") in chosen]
    seen = {os.path.realpath(f.path) for f in files}
    # A summary names the files its process wrote: read those too (once).
    for f in [*files, *explicit]:
        if f.signal == "summary":
            for listed in summary_files(f.path):
                described = _describe(listed)
                if described.signal in (None, "summary"):
                    continue
                real = os.path.realpath(listed)
                if real not in seen:
                    seen.add(real)
                    files.append(described)
    for f in explicit:
        real = os.path.realpath(f.path)
        if real not in seen:
            seen.add(real)
            files.append(f)
    files.sort(key=lambda f: f.order)
    runs = sorted({f.run for f in files if f.run is not None}, key=lambda r: (newest.get(r, 0), r))
    others = [r for r in by_age if r not in chosen]
    return Selection(files, runs, others)


def summary_files(path: str) -> list[str]:
    """The existing regular files a summary file lists under ``files`` (none
    if it cannot be read: the full pass reports that)."""
    try:
        doc = read_json_file(path, DEFAULT_MAX_LINE_BYTES)
    except ReportError:
        return []
    listed = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        return []
    return [p for p in listed if isinstance(p, str) and os.path.isfile(p)]


def read_json_file(path: str, max_bytes: int | None) -> Any:
    """One JSON document (a summary file), at most ``max_bytes`` long."""
    limit = max_bytes or DEFAULT_MAX_LINE_BYTES
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > limit:
        raise ReportError(f"{path}: longer than {limit} bytes (see --max-line-bytes)")
    try:
        return json.loads(raw)
    except ValueError as exc:
        reason = str(exc).split(":")[0]
        raise ReportError(f"{path}: not JSON ({reason})") from None
    except RecursionError:
        raise ReportError(f"{path}: JSON nested too deeply") from None


#: Bytes read at a time: lines are cut out of blocks this big.
READ_BLOCK = 1 << 21


def read_lines(
    path: str,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    warn: Callable[[str], None] | None = None,
    limit: int | None = None,
    start: int = 0,
    end: int | None = None,
    first_line: int = 0,
    skip: Callable[[bytes], bool] | None = None,
    decode: Callable[[bytes], Any] | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for each line of ``path``.

    ``start``/``end`` read only the lines in that byte range (``start`` at the
    beginning of a line; ``first_line`` lines come before it). ``skip``
    judges a complete line by its bytes: True leaves it undecoded.
    ``decode`` parses a line (default: :func:`loads`).

    A line that is not JSON raises :class:`ReportError` naming ``path:line``,
    except a last line without its newline (a process killed mid-write): that
    one is reported through ``warn`` and skipped. Blank lines are skipped.
    ``limit`` stops after that many parsed lines (and never warns or raises
    about a truncated line then: it is a quick look). The file is read in
    blocks (lines are cut out of them: no call per line to read it); a line
    longer than ``max_line_bytes`` is an error as soon as it is seen.
    """
    if decode is None:
        decode = loads
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally, generator
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    too_long = f"line longer than {max_line_bytes} bytes (see --max-line-bytes)"
    try:
        lineno = first_line
        parsed = 0
        if start:
            handle.seek(start)
        remaining = None if end is None else end - start
        pending = b""
        while remaining is None or remaining > 0:
            size = READ_BLOCK if remaining is None else min(READ_BLOCK, remaining)
            try:
                block = handle.read(size)
            except OSError as exc:
                raise ReportError(f"{path}:{lineno + 1}: read error: {exc.strerror}") from None
            if not block:
                break
            if remaining is not None:
                remaining -= len(block)
            lines = (pending + block if pending else block).split(b"\n")
            pending = lines.pop()
            for raw in lines:
                lineno += 1
                if len(raw) > max_line_bytes:
                    raise ReportError(f"{path}:{lineno}: {too_long}")
                if not raw or raw.isspace() or (skip is not None and skip(raw)):
                    continue
                try:
                    value = decode(raw)
                except ValueError as exc:
                    reason = str(exc).split(":")[0]
                    raise ReportError(f"{path}:{lineno}: not JSON ({reason})") from None
                except RecursionError:
                    raise ReportError(f"{path}:{lineno}: JSON nested too deeply") from None
                yield lineno, value
                parsed += 1
                if limit is not None and parsed >= limit:
                    return
            if len(pending) > max_line_bytes:
                raise ReportError(f"{path}:{lineno + 1}: {too_long}")
        if pending and not pending.isspace():
            # The last line, without its newline: a process killed mid-write.
            lineno += 1
            try:
                value = decode(pending)
            except ValueError:
                if limit is None and warn is not None:
                    warn(
                        f"{path}:{lineno}: truncated last line skipped "
                        "(the process was probably killed while writing)"
                    )
                return
            except RecursionError:
                raise ReportError(f"{path}:{lineno}: JSON nested too deeply") from None
            yield lineno, value
    finally:
        handle.close()


def split_lines(path: str, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """Cut a file into ranges of about ``chunk_bytes`` that end at line ends:
    ``(start, end, lines before start)`` each."""
    out: list[tuple[int, int, int]] = []
    pos = lines = chunk_start = chunk_lines = 0
    target = chunk_bytes
    try:
        with open(path, "rb") as handle:
            while True:
                block = handle.read(1 << 20)
                if not block:
                    break
                offset = 0
                while pos + len(block) > target:
                    i = block.find(b"\n", max(offset, target - pos))
                    if i < 0:
                        break
                    lines += block.count(b"\n", offset, i + 1)
                    end = pos + i + 1
                    out.append((chunk_start, end, chunk_lines))
                    chunk_start, chunk_lines = end, lines
                    offset = i + 1
                    target = end + chunk_bytes
                lines += block.count(b"\n", offset)
                pos += len(block)
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    if chunk_start < pos:
        out.append((chunk_start, pos, chunk_lines))
    return out


# -- OTLP JSON values -----------------------------------------------------------


def any_value(value: Any) -> Any:
    """The Python value of an OTLP ``AnyValue`` in its JSON form (None if malformed)."""
    if not isinstance(value, dict):
        return None
    if "stringValue" in value:
        v = value["stringValue"]
        return cap(v) if isinstance(v, str) else None
    if "intValue" in value:
        v = value["intValue"]
        if isinstance(v, bool):
            return None
        try:
            return int(v)
        except (TypeError, ValueError, OverflowError):
            return None
    if "doubleValue" in value:
        v = value["doubleValue"]
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            return None
        try:
            return float(v)
        except ValueError:
            return None
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        items = (
            value["arrayValue"].get("values", []) if isinstance(value["arrayValue"], dict) else []
        )
        return [any_value(v) for v in items] if isinstance(items, list) else None
    if "kvlistValue" in value:
        kv = value["kvlistValue"]
        return attributes(kv.get("values", [])) if isinstance(kv, dict) else None
    if "bytesValue" in value:
        return str(value["bytesValue"])
    return None


def attributes(items: Any) -> dict[str, Any]:
    """A ``KeyValue`` list as a dict: the one attribute decoder of the report.

    The loop reads the encoding tracedsync writes (a string or an int in a
    decimal string) directly; anything else goes through :func:`any_value`,
    and anything malformed is skipped.
    """
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for item in items:
        try:
            value = item["value"]
            if "stringValue" in value:
                v = value["stringValue"]
                if v.__class__ is str:
                    out[item["key"]] = v if len(v) <= MAX_TEXT else cap(v)
                    continue
            elif "intValue" in value:
                v = value["intValue"]
                if v.__class__ is str or v.__class__ is int:
                    out[item["key"]] = int(v)
                    continue
        except (TypeError, KeyError, ValueError, AttributeError):
            pass
        if isinstance(item, dict):
            key = item.get("key")
            if isinstance(key, str):
                out[key] = any_value(item.get("value"))
    return out


def nanos(value: Any) -> int | None:
    """A ``fixed64`` nanosecond time (a decimal string, or a number)."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def number(value: Any) -> float | None:
    """An ``asInt`` / ``asDouble`` / ``count`` field as a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def int_or_none(value: Any) -> int | None:
    """``value`` as an int, or None when it is not one."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def resource_identity(resource: Any) -> tuple[str | None, int | None, dict[str, Any]]:
    """``(run id, pid, attributes)`` of an OTLP ``Resource``."""
    attrs = attributes(resource.get("attributes")) if isinstance(resource, dict) else {}
    run = attrs.get("tracedsync.run_id")
    pid = attrs.get("process.pid")
    return (
        run if isinstance(run, str) else None,
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        attrs,
    )


def capped(doc: dict[str, Any]) -> dict[str, Any]:
    """A log event with its long strings cut (as :func:`attributes` cuts them)."""
    return {
        cap(k): (cap(v) if isinstance(v, str) and len(v) > MAX_TEXT else v) for k, v in doc.items()
    }


def parse_timestamp(text: Any) -> int | None:
    """ISO 8601 (``...Z`` or an offset; naive means UTC) to ns since the epoch."""
    if not isinstance(text, str) or not text:
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# -- spans ------------------------------------------------------------------------

SCOPE = "tracedsync"
#: ``<kind>.wait`` / ``<kind>.hold`` -> (kind, is a wait)
SPAN_NAMES = {f"{k}.{w}": (k, w == "wait") for k in KINDS for w in ("wait", "hold")}


class SpanAttrs:
    """What a tracedsync span says about itself that other spans of the same
    primitive, thread and stack say too: kind, name, thread, call site and
    stack. The fast decoder shares one among the spans whose attributes say
    the same (``memo``: what the model derived from it, for the same reason).

    ``site`` is ``sync.site`` or, for files written before spans carried it,
    ``code.file.path:code.line.number`` as it is (the model prints it).
    Strings are capped as :func:`attributes` caps them; absent ones are None.
    ``stack`` is ``sync.stack`` as it was read (undecoded until a profile
    asks: :func:`stack_frames`).
    """

    __slots__ = (
        "function",
        "instance",
        "kind",
        "memo",
        "name",
        "site",
        "stack",
        "thread",
        "thread_id",
    )

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.thread: str = "?"
        self.thread_id: int | None = None
        self.site = "?"
        self.function = ""
        self.instance: int | None = None
        self.stack: Any = None
        self.memo: Any = None


class HolderAttrs:
    """What a wait span says about how it ended and who held the primitive:
    ``sync.outcome``, ``sync.holder.*``, ``sync.holder.released_before_wait``
    (``released_before``) and, when the attribute list holds it,
    ``sync.wait.handoff`` (``handoff_ns``). Shared like :class:`SpanAttrs`."""

    __slots__ = (
        "acquired_at",
        "handoff_ns",
        "holder",
        "holder_id",
        "holder_site",
        "outcome",
        "released_before",
    )

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.holder: str | None = None
        self.holder_id: int | None = None
        self.holder_site: str | None = None
        self.acquired_at: str | None = None
        self.released_before = False
        self.handoff_ns: int | None = None


#: The HolderAttrs of a span that says none of it (a hold): never changed.
NO_HOLDER = HolderAttrs()


class SpanRecord:
    """One tracedsync wait or hold span, decoded: its attributes (``a``, ``h``)
    and what is its own (times, ids, process, hand-off)."""

    __slots__ = (
        "a",
        "end_ns",
        "h",
        "handoff_ns",
        "is_wait",
        "links",
        "pid",
        "run",
        "span_id",
        "start_ns",
    )

    def __init__(
        self,
        a: SpanAttrs,
        h: HolderAttrs,
        run: str | None,
        pid: int | None,
        is_wait: bool,
        start_ns: int,
        end_ns: int,
        span_id: str,
        links: list[str],
        handoff_ns: int | None,
    ) -> None:
        self.a = a
        self.h = h
        self.run = run
        self.pid = pid
        self.is_wait = is_wait
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.span_id = span_id
        self.links = links
        self.handoff_ns = handoff_ns


#: span attribute -> (its field: in SpanAttrs, or in HolderAttrs when it is
#: one of HOLDER_FIELDS; the AnyValue key tracedsync writes it under).
#: ``sync.stack`` is kept as its AnyValue (decoded by stack_frames).
SPAN_FIELDS = {
    "thread.name": ("thread", "stringValue"),
    "thread.id": ("thread_id", "intValue"),
    "code.function.name": ("function", "stringValue"),
    "sync.instance": ("instance", "intValue"),
    "sync.outcome": ("outcome", "stringValue"),
    "sync.holder.thread.name": ("holder", "stringValue"),
    "sync.holder.thread.id": ("holder_id", "intValue"),
    "sync.holder.site": ("holder_site", "stringValue"),
    "sync.holder.acquired_at": ("acquired_at", "stringValue"),
    "sync.wait.handoff": ("handoff_ns", "doubleValue"),
    "sync.holder.released_before_wait": ("released_before", "boolValue"),
}
HOLDER_FIELDS = frozenset(HolderAttrs.__slots__)
INT_FIELDS = frozenset(f for f, t in SPAN_FIELDS.values() if t == "intValue")
STR_FIELDS = frozenset(f for f, t in SPAN_FIELDS.values() if t == "stringValue")


def seconds_ns(value: Any) -> int | None:
    """A duration in seconds (a ``doubleValue``) as nanoseconds; None unless
    it is a finite number >= 0."""
    if value.__class__ is not float and value.__class__ is not int:
        return None
    if not value >= 0 or value == math.inf:
        return None
    return round(value * 1e9)


def _checked(field_: str, v: Any) -> Any:
    """A SPAN_FIELDS value in the type tracedsync writes, converted; TypeError
    otherwise."""
    if field_ in STR_FIELDS:
        if v.__class__ is not str:
            raise TypeError
        return v if len(v) <= MAX_TEXT else cap(v)
    if field_ in INT_FIELDS:
        if v.__class__ is not str and v.__class__ is not int:
            raise TypeError
        return int(v)
    if field_ == "handoff_ns":
        v = seconds_ns(v)
        if v is None:
            raise TypeError
        return v
    if v.__class__ is not bool:  # released_before
        raise TypeError
    return v


def make_holder(fields: dict[str, Any]) -> HolderAttrs:
    """The HolderAttrs of the HOLDER_FIELDS in ``fields`` (NO_HOLDER when
    there are none); TypeError as :func:`make_attrs`."""
    h = None
    for field_, v in fields.items():
        if field_ in HOLDER_FIELDS:
            if h is None:
                h = HolderAttrs()
            setattr(h, field_, _checked(field_, v))
    return h if h is not None else NO_HOLDER


def make_attrs(
    kind: Any,
    name: Any,
    fields: dict[str, Any],
    site: Any,
    path: Any,
    line: Any,
    stack: Any,
    python: Callable[[Any], Any],
) -> SpanAttrs:
    """A span's SpanAttrs, from what a decoder's loop read in the encoding
    tracedsync writes: ``fields`` by SPAN_FIELDS (those of HolderAttrs are
    left to :func:`make_holder`), ``path``/``line`` AnyValues (``python``
    gives their value), ``stack`` the raw sync.stack. TypeError when
    something has a type tracedsync does not write (the careful path then
    decodes the span)."""
    if kind.__class__ is not str or name.__class__ is not str:
        raise TypeError
    a = SpanAttrs(kind, name if len(name) <= MAX_TEXT else cap(name))
    for field_, v in fields.items():
        if field_ not in HOLDER_FIELDS:
            setattr(a, field_, _checked(field_, v))
    if site is not None:
        if site.__class__ is not str:
            raise TypeError
        a.site = site if len(site) <= MAX_TEXT else cap(site)
    elif path is not None:
        text = python(path)
        if text is not None:
            number_ = python(line) if line is not None else None
            a.site = f"{text}:{number_}" if number_ is not None else str(text)
    a.stack = stack
    return a


def decode_span(
    span: Any, known: tuple[str, bool], run: str | None, pid: int | None, where: str
) -> SpanRecord:
    """A tracedsync span (``known``: its kind and whether it is a wait, from
    its name) as a record; :class:`ReportError` naming ``where`` when it lacks
    what every tracedsync span has.

    The loop reads the encoding tracedsync writes (strings, ints in decimal
    strings) without a call per attribute; any other encoding or a malformed
    span is decoded by :func:`attributes`, the one decoder, with the same result.
    """
    kind = name = site = path = line = stack = None
    fields: dict[str, Any] = {}
    get = SPAN_FIELDS.get
    try:
        for a in span["attributes"]:
            key = a["key"]
            target = get(key)
            if target is not None:
                fields[target[0]] = a["value"][target[1]]
            elif key == "sync.kind":
                kind = a["value"]["stringValue"]
            elif key == "sync.name":
                name = a["value"]["stringValue"]
            elif key == "sync.site":
                site = a["value"]["stringValue"]
            elif key == "sync.stack":
                stack = a["value"]
                if stack.__class__ is not dict or "arrayValue" not in stack:
                    raise TypeError
            elif key == "code.file.path":
                path = a["value"]
            elif key == "code.line.number":
                line = a["value"]
        attrs = make_attrs(kind, name, fields, site, path, line, stack, any_value)
        holder = make_holder(fields)
        start = int(span["startTimeUnixNano"])
        end = int(span["endTimeUnixNano"])
        links = span.get("links")
        rec = SpanRecord(
            attrs,
            holder,
            run,
            pid,
            known[1],
            start,
            end if end > start else start,
            span["spanId"],
            [li["spanId"] for li in links if li["spanId"]] if links else [],
            holder.handoff_ns,
        )
        if rec.span_id.__class__ is not str or any(x.__class__ is not str for x in rec.links):
            raise TypeError
        return rec
    except (TypeError, KeyError, ValueError, AttributeError, OverflowError):
        return _decode_span_carefully(span, known, run, pid, where)


def _decode_span_carefully(
    span: Any, known: tuple[str, bool], run: str | None, pid: int | None, where: str
) -> SpanRecord:
    if not isinstance(span, dict):
        raise ReportError(f"{where}: a span is not an object")
    attrs = attributes(span.get("attributes"))
    kind, name = attrs.get("sync.kind"), attrs.get("sync.name")
    if not isinstance(kind, str) or not isinstance(name, str):
        missing = [
            k for k, v in (("sync.kind", kind), ("sync.name", name)) if not isinstance(v, str)
        ]
        raise ReportError(
            f"{where}: tracedsync span {span.get('name')!r} ({span.get('spanId')}) "
            f"lacks {' and '.join(missing)}"
        )
    start = nanos(span.get("startTimeUnixNano"))
    end = nanos(span.get("endTimeUnixNano"))
    if start is None or end is None:
        raise ReportError(f"{where}: span {span.get('name')!r} has no valid start or end time")
    links = span.get("links")
    linked = (
        [
            str(li["spanId"])
            for li in links
            if isinstance(li, dict) and li.get("spanId") and isinstance(li["spanId"], str)
        ]
        if isinstance(links, list)
        else []
    )
    a = SpanAttrs(kind, name)
    h = HolderAttrs()
    for key, (field_, encoding) in SPAN_FIELDS.items():
        value = attrs.get(key)
        target = h if field_ in HOLDER_FIELDS else a
        if encoding == "stringValue":
            if value is not None:
                setattr(target, field_, str(value))
        elif encoding == "intValue":
            setattr(target, field_, int_or_none(value))
        elif encoding == "doubleValue":
            setattr(target, field_, seconds_ns(value))
        else:
            setattr(target, field_, value is True)
    site = attrs.get("sync.site")
    if isinstance(site, str):
        a.site = site
    else:
        path, line = attrs.get("code.file.path"), attrs.get("code.line.number")
        if path is not None:
            a.site = f"{path}:{line}" if line is not None else str(path)
    stack = attrs.get("sync.stack")
    if isinstance(stack, list):
        a.stack = tuple(f for f in stack if isinstance(f, str)) or None
    return SpanRecord(
        a,
        h,
        run,
        pid,
        known[1],
        start,
        max(start, end),
        str(span.get("spanId")),
        linked,
        h.handoff_ns,
    )


def stack_frames(value: Any) -> tuple[str, ...] | None:
    """``sync.stack`` as its frames (``"path:line in function"``, innermost
    first): from a span's AnyValue (``{"arrayValue": ...}``), the raw JSON
    of its arrayValue (bytes, or msgspec's Raw: the fast decoder leaves it
    so), or frames already decoded. Entries that are not strings are left
    out, and long ones cut; None when no frame is left."""
    if value.__class__ is tuple:
        return value or None
    if value.__class__ is dict:
        array = value.get("arrayValue")
    else:
        try:
            array = json.loads(bytes(value))
        except (TypeError, ValueError, RecursionError):
            return None
    items = array.get("values") if array.__class__ is dict else None
    if items.__class__ is not list:
        return None
    frames = []
    for item in items:
        if item.__class__ is dict:
            text = item.get("stringValue")
            if text.__class__ is str:
                frames.append(text if len(text) <= MAX_TEXT else cap(text))
    return tuple(frames) or None
