"""Where things happen: primitive names, paths, lines, threads' sites.

Results that depend on code objects alone (the variable a call result is
stored to, the line of an instruction, a file's path relative to
``sys.path``) are cached, so naming the primitives created in a loop costs a
few dictionary lookups.
"""

from __future__ import annotations

import os
import sys
import threading
from types import CodeType, FrameType

#: tracedsync's own directory, with the separator (a file inside it starts with this).
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Files whose frames are never "the call site in user code": tracedsync itself
#: and the stdlib modules that wrap a primitive (a wait inside ``Queue.get`` is
#: reported at the caller of ``get``).
_STDLIB_DIR = os.path.dirname(os.path.abspath(threading.__file__))
_WRAPPER_FILES = {
    os.path.join(_STDLIB_DIR, *relative.split("/"))
    for relative in (
        "threading.py",
        "queue.py",
        "concurrent/futures/_base.py",
        "concurrent/futures/thread.py",
        "contextlib.py",
    )
}

_STORE_NAME_OPS = frozenset({"STORE_NAME", "STORE_FAST", "STORE_GLOBAL", "STORE_DEREF"})
_LOAD_OPS = frozenset(
    {"LOAD_FAST", "LOAD_NAME", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"}
)
_SKIP_OPS = frozenset({"CACHE", "COPY", "DUP_TOP", "EXTENDED_ARG", "NOP"})

_assigned_cache: dict[tuple[CodeType, int], str | None] = {}
_relpath_cache: dict[str, str] = {}
_CACHE_LIMIT = 100_000


def is_tracedsync_file(filename: str) -> bool:
    """True for a file inside the tracedsync package."""
    return filename.startswith(PACKAGE_DIR)


def assigned_name(code: CodeType, offset: int) -> str | None:
    """The variable or attribute the call at ``offset`` in ``code`` is stored to.

    ``pool_lock = Lock()`` gives ``pool_lock``, ``self.not_empty = Condition(m)``
    gives ``not_empty``; anything else (a subscript, a return, an argument)
    gives None.
    """
    key = (code, offset)
    try:
        return _assigned_cache[key]
    except KeyError:
        pass
    name = _scan_store(code, offset)
    if len(_assigned_cache) > _CACHE_LIMIT:
        _assigned_cache.clear()
    _assigned_cache[key] = name
    return name


def _scan_store(code: CodeType, lasti: int) -> str | None:
    import dis  # the first time a primitive's name is asked for

    try:
        instructions = list(dis.get_instructions(code))
    except Exception:
        return None
    index = None
    for i, ins in enumerate(instructions):
        if ins.offset == lasti:
            index = i
            break
    if index is None:
        return None
    following = [ins for ins in instructions[index + 1 : index + 8] if ins.opname not in _SKIP_OPS]
    if not following:
        return None
    first = following[0]
    if first.opname in _STORE_NAME_OPS:
        return str(first.argval)
    if first.opname in _LOAD_OPS and len(following) > 1 and following[1].opname == "STORE_ATTR":
        return str(following[1].argval)
    return None


def relative_path(filename: str) -> str:
    """``filename`` relative to the longest ``sys.path`` entry containing it.

    ``/srv/app/db.py`` with ``/srv`` on ``sys.path`` gives ``app/db.py``; a file
    outside every entry (or a pseudo-file such as ``<stdin>``) is returned as is.
    """
    try:
        return _relpath_cache[filename]
    except KeyError:
        pass
    result = filename
    if not filename.startswith("<"):
        absolute = os.path.abspath(filename)
        best = ""
        for entry in sys.path:
            try:
                base = os.path.abspath(entry or os.curdir)
            except Exception:
                continue
            if len(base) > len(best) and absolute.startswith(base.rstrip(os.sep) + os.sep):
                best = base
        if best:
            result = absolute[len(best.rstrip(os.sep)) + 1 :].replace(os.sep, "/")
    if len(_relpath_cache) > _CACHE_LIMIT:
        _relpath_cache.clear()
    _relpath_cache[filename] = result
    return result


def line_at(code: CodeType, offset: int) -> int:
    """The line the instruction at ``offset`` belongs to (0 when none)."""
    line = 0
    for start, end, number in code.co_lines():
        if start <= offset < end:
            return number or line
        if start > offset:
            break
        if number:
            line = number
    return line


def name_at(code: CodeType, offset: int) -> str:
    """The inferred name of a primitive created by the call at ``offset`` in
    ``code``: ``pool_lock (app/db.py:41)``, or the site alone."""
    site = f"{relative_path(code.co_filename)}:{line_at(code, offset)}"
    var = assigned_name(code, offset)
    return f"{var} ({site})" if var else site


def skipped_file(filename: str) -> bool:
    """True for tracedsync's own files and the stdlib wrappers (threading, queue, ...)."""
    return is_tracedsync_file(filename) or filename in _WRAPPER_FILES


def user_frame(frame: FrameType | None) -> FrameType | None:
    """Walk out of tracedsync and of stdlib wrappers (threading, queue, ...)."""
    while frame is not None:
        if not skipped_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def program_frame(frame: FrameType | None) -> FrameType | None:
    """``frame``, or, when the thread is inside tracedsync, tracedsync's
    innermost frame: what tracedsync itself called (``linecache`` and
    ``tokenize`` reading a holder's source) is not the program's doing."""
    current = frame
    while current is not None:
        if is_tracedsync_file(current.f_code.co_filename):
            return current
        current = current.f_back
    return frame


def current_frame(ident: int) -> FrameType | None:
    """The program's innermost frame in thread ``ident`` (see ``program_frame``)."""
    try:
        return program_frame(sys._current_frames().get(ident))
    except Exception:
        return None


def thread_site(ident: int) -> tuple[str, int, str] | None:
    """Where thread ``ident`` is running right now, in user code."""
    frame = user_frame(current_frame(ident))
    if frame is None:
        return None
    return (frame.f_code.co_filename, frame.f_lineno or 0, frame.f_code.co_name)


def format_site(site: tuple[str, int, str] | None) -> str:
    """``app/db.py:57`` for a site, ``?`` when unknown."""
    if site is None:
        return "?"
    return f"{relative_path(site[0])}:{site[1]}"


def thread_stack(ident: int, limit: int = 30) -> list[str]:
    """The stack of thread ``ident``, innermost frame first, as ``file:line in func``."""
    frame = current_frame(ident)
    out: list[str] = []
    while frame is not None and len(out) < limit:
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE_DIR):
            out.append(f"{relative_path(code.co_filename)}:{frame.f_lineno} in {code.co_name}")
        frame = frame.f_back
    return out
