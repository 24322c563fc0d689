"""Stacks of waits and holds: captured raw, interned, resolved off-thread.

A record that crosses its threshold carries the stack of the thread that
waited or held, up to ``stack_depth`` frames (at least one: the call site).
On the program's thread a stack is only ``(code object, instruction
offset)`` pairs, interned so that a stack seen before costs one dictionary
lookup and no new object. Line numbers and paths are worked out by
:func:`frames` on the pipeline thread, once per distinct frame.

The first frames of a capture are skipped while they belong to tracedsync or
to a stdlib module that only wraps a primitive (``threading``, ``queue``,
``concurrent.futures``, ``contextlib``): a wait inside ``Queue.get`` is
reported at the caller of ``get``.
"""

from __future__ import annotations

from types import CodeType, FrameType

from tracedsync import _impl, _sites

#: The compiled walk (``_speedups.stack_key``): the key of a stack seen
#: before without the Python loop below; None in pure Python.
_stack_key = getattr(_impl.speedups, "stack_key", None)


class Stack:
    """An interned stack: ``codes[i]`` ran at offset ``offsets[i]``, innermost first."""

    __slots__ = ("codes", "offsets")

    def __init__(self, codes: tuple[CodeType, ...], offsets: tuple[int, ...]) -> None:
        self.codes = codes
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.codes)

    def __repr__(self) -> str:
        return f"<Stack {frames(self)[:3]}...>"


#: (id(code), offset, id(code), offset, ...) -> Stack. The Stack keeps its
#: code objects alive, so an id in a key cannot be reused while it is here.
_interned: dict[tuple[int, ...], Stack] = {}
_INTERNED_LIMIT = 50_000
#: id(code) -> (code, skipped at the top of a stack).
_skipped: dict[int, tuple[CodeType, bool]] = {}


def _skip(code: CodeType) -> bool:
    entry = _skipped.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    skip = _sites.skipped_file(code.co_filename)
    if len(_skipped) > _INTERNED_LIMIT:
        _skipped.clear()
    _skipped[id(code)] = (code, skip)
    return skip


def capture(frame: FrameType | None, depth: int) -> Stack | None:
    """The stack from the first user frame at or outside ``frame``, at most
    ``depth`` frames (at least 1); None when there is no user frame."""
    while frame is not None and _skip(frame.f_code):
        frame = frame.f_back
    if frame is None:
        return None
    if _stack_key is not None:
        stack = _interned.get(_stack_key(frame, depth, _sites.PACKAGE_DIR))
        if stack is not None:
            return stack
    key, codes = walk(frame, depth)
    stack = _interned.get(key)
    if stack is None:
        if len(_interned) > _INTERNED_LIMIT:
            _interned.clear()
        stack = _interned[key] = Stack(tuple(codes), key[1::2])
    return stack


def walk(frame: FrameType | None, depth: int) -> tuple[tuple[int, ...], list[CodeType]]:
    """The interning key ``(id(code), f_lasti, ...)`` and the code objects of
    the first ``depth`` frames (at least 1) from ``frame`` outwards that are
    not tracedsync's own (``_speedups.stack_key`` computes the same key)."""
    key: list[int] = []
    codes: list[CodeType] = []
    n = depth if depth > 1 else 1
    prefix = _sites.PACKAGE_DIR
    while frame is not None and n:
        code = frame.f_code
        if not code.co_filename.startswith(prefix):  # _sites.is_tracedsync_file, inlined
            key.append(id(code))
            key.append(frame.f_lasti)
            codes.append(code)
            n -= 1
        frame = frame.f_back
    return tuple(key), codes


#: (id(code), offset) -> (code, "path:line in function", CallSite)
_resolved: dict[tuple[int, int], tuple[CodeType, str, tuple[str, int, str]]] = {}


def _frame(code: CodeType, offset: int) -> tuple[str, tuple[str, int, str]]:
    key = (id(code), offset)
    hit = _resolved.get(key)
    if hit is not None and hit[0] is code:
        return hit[1], hit[2]
    line = _sites.line_at(code, offset)
    site = (code.co_filename, line, code.co_name)
    text = f"{_sites.relative_path(code.co_filename)}:{line} in {code.co_name}"
    if len(_resolved) > _INTERNED_LIMIT:
        _resolved.clear()
    _resolved[key] = (code, text, site)
    return text, site


def frames(stack: Stack) -> list[str]:
    """``["app/db.py:57 in get", ...]``, innermost first."""
    return [_frame(c, o)[0] for c, o in zip(stack.codes, stack.offsets, strict=True)]


def call_site(stack: Stack | None) -> tuple[str, int, str] | None:
    """(absolute path, line, function) of a stack's innermost frame."""
    if stack is None or not stack.codes:
        return None
    return _frame(stack.codes[0], stack.offsets[0])[1]


def at_fork_child() -> None:
    """Nothing to do: the tables are the parent's, still valid here."""
