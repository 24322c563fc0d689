"""Where a holder took a primitive: recorded, or read from its stack.

A primitive notes the code object and offset of each acquisition once it has
been contended (Lock, RLock: from the first blocking wait on) or always
(semaphores, whose holders may be long gone when a waiter looks). Before
that, a waiter that needs to know reads it from the holder's stack: the
innermost ``with`` statement around the holder's current line whose
expression is that primitive, or an ``acquire()`` call on it earlier in the
same function (the source is parsed once per file, names are resolved in the
holder's frames without running any code).
"""

from __future__ import annotations

import builtins
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ast

from tracedsync import _sites

#: filename -> its parsed source (ast, inspect and linecache are imported the
#: first time a holder's stack is read: never in a program without contention).
_ast_cache: dict[str, ast.Module | None] = {}
_AST_CACHE_LIMIT = 512
_MISSING = object()


def recorded(site: tuple[CodeType, int] | None) -> str | None:
    """``path:line`` of a recorded acquisition (code, offset)."""
    if not site:
        return None
    code, offset = site
    return f"{_sites.relative_path(code.co_filename)}:{_sites.line_at(code, offset)}"


def user_frames(frame: FrameType | None, limit: int = 30) -> list[FrameType]:
    """Frames from the first user frame at or outside ``frame``, outwards,
    tracedsync's own left out."""
    frames: list[FrameType] = []
    frame = _sites.user_frame(frame)
    while frame is not None and len(frames) < limit:
        if not _sites.is_tracedsync_file(frame.f_code.co_filename):
            frames.append(frame)
        frame = frame.f_back
    return frames


def thread_frames(ident: int, limit: int = 30) -> list[FrameType]:
    """``user_frames`` of another thread (or this one), innermost first."""
    return user_frames(_sites.current_frame(ident), limit)


def inferred(prim: Any, frames: list[FrameType], skip_current: bool = False) -> str | None:
    """Where the thread running ``frames`` took ``prim``, read from its source.

    Walks the frames outward; in each, looks for a ``with`` statement whose
    block contains the frame's current line, or an ``acquire()`` call earlier
    in the same function, on an expression (a name or attribute chain,
    resolved statically in that frame) that is ``prim`` or a Condition over
    it. ``skip_current``: the innermost frame's own line is an acquisition of
    ``prim`` under way (a thread blocking on a lock it holds), not the one
    looked for.
    """
    import ast

    for depth, frame in enumerate(frames):
        tree = _parsed(frame.f_code.co_filename)
        if tree is None:
            continue
        line = frame.f_lineno or 0
        best = 0
        for node in ast.walk(tree):
            if isinstance(node, (ast.With, ast.AsyncWith)):
                start, end = node.lineno, node.end_lineno or node.lineno
                if skip_current and depth == 0 and start == line:
                    continue
                if (
                    start <= line <= end
                    and start > best
                    and any(_takes(_resolve(i.context_expr, frame), prim) for i in node.items)
                ):
                    best = start
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "acquire"
                and best < node.lineno < line
                and _same_function(tree, node.lineno, line)
                and _takes(_resolve(node.func.value, frame), prim)
            ):
                best = node.lineno
        if best:
            return f"{_sites.relative_path(frame.f_code.co_filename)}:{best}"
    return None


def _takes(obj: Any, prim: Any) -> bool:
    """Acquiring ``obj`` takes ``prim``: it is ``prim``, or a Condition over it
    (``with cond:`` takes the condition's lock)."""
    if obj is prim:
        return True
    try:
        return bool(vars(obj).get("_lock") is prim)
    except TypeError:  # no __dict__
        return False


def _parsed(filename: str) -> ast.Module | None:
    if filename in _ast_cache:
        return _ast_cache[filename]
    import ast
    import linecache

    tree = None
    try:
        source = "".join(linecache.getlines(filename))
        if source:
            tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        tree = None
    if len(_ast_cache) > _AST_CACHE_LIMIT:
        _ast_cache.clear()
    _ast_cache[filename] = tree
    return tree


def _resolve(node: ast.AST, frame: FrameType) -> Any:
    """The object a ``name`` or ``name.attr.attr`` expression denotes in
    ``frame``, read statically (no property, no ``__getattr__`` runs), else
    a sentinel."""
    import ast
    import inspect

    if isinstance(node, ast.Name):
        try:
            namespaces = (frame.f_locals, frame.f_globals, vars(builtins))
        except Exception:
            return _MISSING
        for namespace in namespaces:
            if node.id in namespace:
                return namespace[node.id]
        return _MISSING
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, frame)
        if base is _MISSING:
            return _MISSING
        try:
            return inspect.getattr_static(base, node.attr)
        except Exception:
            return _MISSING
    if isinstance(node, ast.Subscript):
        base = _resolve(node.value, frame)
        key = _resolve_constant(node.slice, frame)
        if base is _MISSING or key is _MISSING or type(base) not in (list, tuple, dict):
            return _MISSING
        try:
            return base[key]
        except Exception:
            return _MISSING
    return _MISSING


def _resolve_constant(node: ast.AST, frame: FrameType) -> Any:
    """An int or str index: a constant, or a name bound to one."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)):
        return node.value
    value = _resolve(node, frame)
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else _MISSING


def _same_function(tree: ast.Module, a: int, b: int) -> bool:
    import ast

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start, end = node.lineno, node.end_lineno or node.lineno
            if start <= a <= end and start <= b <= end:
                return True
    return False
