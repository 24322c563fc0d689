"""Wait time by stack, rendered: ``--format pprof``, ``--format folded`` and
the data of the HTML page's flame graph.

``pprof``: a gzipped ``profile.proto`` message in the shape of Go's block
and mutex profiles, so ``go tool pprof`` (and anything that reads pprof:
Pyroscope, Grafana, speedscope, Datadog) shows it as it shows those: sample
types ``contentions/count`` and ``delay/nanoseconds`` (the default), period
type ``contentions/count`` with period 1, one sample per distinct stack and
primitive with the labels ``kind`` and ``primitive``, its locations the
frames innermost first, each a function with its file and line. As Go's
profiles end in ``sync.(*Mutex).Lock`` (or ``Unlock``), each stack ends in
a frame for the primitive: ``lock.wait pool_lock (app.py:3)`` (or
``lock.release ...`` on the holder side), so ``-top`` ranks primitives by
delay and ``-top -cum`` the code that waited. The encoder below writes the
few message types needed; protobuf itself is not a dependency.

``folded``: collapsed stacks, one ``root;...;leaf value`` line per sample
(value: nanoseconds waited), the input of flamegraph.pl, speedscope and
Pyroscope. Frames are ``function (path:line)``; ``;`` in a name becomes
``:`` and control characters are shown escaped.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from tracedsync._format import clean
from tracedsync.report.profile import Profile, parse_frame

# -- a protobuf writer: just what profile.proto needs ------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(field: int, value: int) -> bytes:
    """A varint field (proto3: zero is the default and left out)."""
    return _varint(field << 3) + _varint(value) if value else b""


def _len(field: int, data: bytes) -> bytes:
    """A length-delimited field (a string, bytes, a message, a packed list)."""
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _packed(field: int, values: list[int]) -> bytes:
    return _len(field, b"".join(_varint(v) for v in values)) if values else b""


class _Strings:
    """The string table: index 0 is always ``""``."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.index)
        return i


# profile.proto field numbers
_P_SAMPLE_TYPE, _P_SAMPLE, _P_MAPPING, _P_LOCATION, _P_FUNCTION, _P_STRINGS = 1, 2, 3, 4, 5, 6
_P_TIME, _P_DURATION, _P_PERIOD_TYPE, _P_PERIOD, _P_COMMENT, _P_DEFAULT = 9, 10, 11, 12, 13, 14


def _value_type(strings: _Strings, kind: str, unit: str) -> bytes:
    return _int(1, strings(kind)) + _int(2, strings(unit))


def _name_site(name: str) -> tuple[str, int]:
    """The ``path:LINE`` a primitive's name ends with (``pool (app.py:3)``)."""
    match = _NAME_SITE.search(name)
    return (match.group(1), int(match.group(2))) if match else ("", 0)


_NAME_SITE = re.compile(r"\(([^()]+):(\d+)\)$")


def pprof_bytes(
    profile: Profile,
    *,
    time_ns: int | None = None,
    duration_ns: int | None = None,
    comments: list[str] | None = None,
) -> bytes:
    """The profile as an (uncompressed) ``profile.proto`` message."""
    strings = _Strings()
    functions: dict[tuple[str, str, int], int] = {}
    locations: dict[tuple[str, int, str, int], int] = {}
    function_msgs: list[bytes] = []
    location_msgs: list[bytes] = []

    def function_id(name: str, path: str, start_line: int) -> int:
        key = (name, path, start_line)
        fid = functions.get(key)
        if fid is None:
            fid = functions[key] = len(functions) + 1
            function_msgs.append(
                _int(1, fid)
                + _int(2, strings(name))
                + _int(3, strings(name))
                + _int(4, strings(path))
                + _int(5, start_line)
            )
        return fid

    def location_id(path: str, line: int, name: str, start_line: int = 0) -> int:
        key = (path, line, name, start_line)
        lid = locations.get(key)
        if lid is None:
            lid = locations[key] = len(locations) + 1
            fid = function_id(name, path, start_line)
            line_msg = _int(1, fid) + _int(2, line)
            location_msgs.append(_int(1, lid) + _int(2, 1) + _len(4, line_msg))
        return lid

    frame_ids: dict[str, int] = {}
    samples: list[bytes] = []
    kind_key, prim_key = strings("kind"), strings("primitive")
    for frames, kind, name, count, total in profile.sorted_samples():
        ids = []
        leaf_path, leaf_line = _name_site(name)
        ids.append(location_id(leaf_path, leaf_line, profile.leaf(kind, name), leaf_line))
        for frame in frames:
            lid = frame_ids.get(frame)
            if lid is None:
                path, line, function = parse_frame(frame)
                lid = frame_ids[frame] = location_id(path, line, function)
            ids.append(lid)
        labels = _len(3, _int(1, kind_key) + _int(2, strings(kind))) + _len(
            3, _int(1, prim_key) + _int(2, strings(name))
        )
        samples.append(_packed(1, ids) + _packed(2, [count, total]) + labels)

    contentions = _value_type(strings, "contentions", "count")
    delay = _value_type(strings, "delay", "nanoseconds")
    mapping = (
        _int(1, 1)  # id
        + _int(5, strings("tracedsync report"))  # filename
        + _int(7, 1)  # has_functions
        + _int(8, 1)  # has_filenames
        + _int(9, 1)  # has_line_numbers
    )
    comment_ids = [strings(c) for c in comments or []]
    default = strings("delay")
    out = bytearray()
    out += _len(_P_SAMPLE_TYPE, contentions)
    out += _len(_P_SAMPLE_TYPE, delay)
    for s in samples:
        out += _len(_P_SAMPLE, s)
    out += _len(_P_MAPPING, mapping)
    for loc in location_msgs:
        out += _len(_P_LOCATION, loc)
    for fn in function_msgs:
        out += _len(_P_FUNCTION, fn)
    for text in strings.index:
        out += _len(_P_STRINGS, text.encode("utf-8", "backslashreplace"))
    out += _int(_P_TIME, time_ns or 0)
    out += _int(_P_DURATION, duration_ns or 0)
    out += _len(_P_PERIOD_TYPE, contentions)
    out += _int(_P_PERIOD, 1)
    out += _packed(_P_COMMENT, comment_ids)
    out += _int(_P_DEFAULT, default)
    return bytes(out)


def render_pprof(
    profile: Profile,
    *,
    time_ns: int | None = None,
    duration_ns: int | None = None,
    comments: list[str] | None = None,
) -> bytes:
    """The gzipped profile (``go tool pprof`` reads it as it is)."""
    raw = pprof_bytes(profile, time_ns=time_ns, duration_ns=duration_ns, comments=comments)
    return gzip.compress(raw, compresslevel=6, mtime=0)


# -- folded stacks --------------------------------------------------------------------------


def folded_frame(frame: str) -> str:
    """``"app/db.py:57 in get"`` as ``get (app/db.py:57)``, safe in a folded line."""
    path, line, function = parse_frame(frame)
    text = f"{function} ({path}:{line})" if path else function
    return _folded_safe(text)


def _folded_safe(text: str) -> str:
    return clean(text).replace(";", ":")


def folded_lines(profile: Profile) -> list[str]:
    """``root;...;innermost;primitive nanoseconds`` for each sample."""
    out = []
    for frames, kind, name, _count, total in profile.sorted_samples():
        path = [folded_frame(f) for f in reversed(frames)]
        path.append(_folded_safe(profile.leaf(kind, name)))
        out.append(f"{';'.join(path)} {total}")
    return out


def render_folded(profile: Profile) -> str:
    lines = folded_lines(profile)
    return "".join(line + "\n" for line in lines)


# -- the HTML flame graph --------------------------------------------------------------------

#: Nodes the page draws at most; smaller ones are left out (their time
#: stays in their parent), and the page says how many.
MAX_FLAME_NODES = 4000
#: Nodes narrower than this share of the whole are left out.
MIN_FLAME_SHARE = 0.0005


def flame_data(profile: Profile) -> dict[str, Any]:
    """The tree the page draws, root first: ``nodes`` as ``[parent index,
    frame string index, total ns, waits]`` (index 0: all waits), ``strings``,
    and how many nodes were left out."""
    # children per node: frame -> [total, count, children]
    root: list[Any] = [0, 0, {}]
    for frames, kind, name, count, total in profile.sorted_samples():
        node = root
        node[0] += total
        node[1] += count
        path = [folded_frame(f) for f in reversed(frames)]
        path.append(_folded_safe(profile.leaf(kind, name)))
        for frame in path:
            child = node[2].get(frame)
            if child is None:
                child = node[2][frame] = [0, 0, {}]
            child[0] += total
            child[1] += count
            node = child
    strings: dict[str, int] = {}

    def s(text: str) -> int:
        i = strings.get(text)
        if i is None:
            i = strings[text] = len(strings)
        return i

    label = {"contention": "contention waits", "idle": "idle waits", "all": "all waits"}
    nodes: list[list[int]] = [[-1, s(f"all {label[profile.waits]}"), root[0], root[1]]]
    floor = root[0] * MIN_FLAME_SHARE
    left_out = 0
    # Breadth first, each node's children by total: the widest first.
    queue: list[tuple[int, dict[str, Any]]] = [(0, root[2])]
    while queue:
        parent, children = queue.pop(0)
        for frame, (total, count, grand) in sorted(
            children.items(), key=lambda kv: (-kv[1][0], kv[0])
        ):
            if total < floor or len(nodes) >= MAX_FLAME_NODES:
                left_out += 1 + _descendants(grand)
                continue
            nodes.append([parent, s(frame), total, count])
            if grand:
                queue.append((len(nodes) - 1, grand))
    return {
        "side": profile.side,
        "waits": profile.waits,
        "nodes": nodes,
        "strings": list(strings),
        "left_out": left_out,
        "unresolved": profile.unresolved,
    }


def _descendants(children: dict[str, Any]) -> int:
    n = 0
    stack = [children]
    while stack:
        for _, _, grand in stack.pop().values():
            n += 1
            if grand:
                stack.append(grand)
    return n
