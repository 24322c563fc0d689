"""Where things happen: creation sites, primitive names and call sites.

Everything here reads frames of the calling thread only. Results that depend
on code objects alone (the variable a call result is stored to, a file's path
relative to ``sys.path``) are cached, so naming a primitive created in a loop
costs a few dictionary lookups.
"""

from __future__ import annotations

import dis
import os
import sys
import threading
from types import CodeType, FrameType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: Files whose frames are never "the call site in user code": tracedsync itself
#: and the stdlib modules that wrap a primitive (a wait inside ``Queue.get`` is
#: reported at the caller of ``get``).
_WRAPPER_FILES = {
    os.path.abspath(threading.__file__),
}
for _mod in ("queue", "concurrent.futures._base", "concurrent.futures.thread", "contextlib"):
    try:
        __import__(_mod)
        _WRAPPER_FILES.add(os.path.abspath(sys.modules[_mod].__file__ or ""))
    except Exception:  # pragma: no cover - stdlib modules are always there
        pass

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
    return filename.startswith(_PACKAGE_DIR)


def assigned_name(frame: FrameType) -> str | None:
    """The variable or attribute the call running in ``frame`` is stored to.

    ``pool_lock = Lock()`` gives ``pool_lock``, ``self.not_empty = Condition(m)``
    gives ``not_empty``; anything else (a subscript, a return, an argument)
    gives None.
    """
    code = frame.f_code
    key = (code, frame.f_lasti)
    try:
        return _assigned_cache[key]
    except KeyError:
        pass
    name = _scan_store(code, frame.f_lasti)
    if len(_assigned_cache) > _CACHE_LIMIT:
        _assigned_cache.clear()
    _assigned_cache[key] = name
    return name


def _scan_store(code: CodeType, lasti: int) -> str | None:
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


def creation_frame(depth: int) -> FrameType | None:
    """The first frame outside tracedsync, starting ``depth`` frames up."""
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:
        return None
    while frame is not None and is_tracedsync_file(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def primitive_name(frame: FrameType | None) -> str:
    """The inferred name of a primitive created by the call running in ``frame``."""
    if frame is None:
        return "<unknown>"
    site = f"{relative_path(frame.f_code.co_filename)}:{frame.f_lineno}"
    var = assigned_name(frame)
    return f"{var} ({site})" if var else site


def _skipped_file(filename: str) -> bool:
    """True for tracedsync's own files and the stdlib wrappers (threading, queue, ...)."""
    return is_tracedsync_file(filename) or filename in _WRAPPER_FILES


def user_frame(frame: FrameType | None) -> FrameType | None:
    """Walk out of tracedsync and of stdlib wrappers (threading, queue, ...)."""
    while frame is not None:
        if not _skipped_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


#: (id(code), instruction offset) -> (code, site): the code object is kept so
#: an id reused by a new code object is detected.
_site_cache: dict[tuple[int, int], tuple[CodeType, tuple[str, int, str]]] = {}
#: filename -> True for tracedsync's own files and the stdlib wrappers.
_skip_file: dict[str, bool] = {}


def call_site(depth: int = 1) -> tuple[str, int, str] | None:
    """(file path, line, function) of the first user frame ``depth`` frames up.

    Runs on the application thread for every recorded event: the line number
    (a line-table scan) is cached per code object and instruction. With the
    compiled implementation this is ``_speedups.call_site`` (bound below),
    which walks the frames in C and calls :func:`_site_from` on a cache miss.
    """
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:
        return None
    return _frame_site_py(frame)


def _site_from(frame: FrameType | None) -> tuple[str, int, str] | None:
    """The first user frame's site from ``frame`` outwards, filling the caches
    the compiled walk reads (``_skip_file``, ``_site_cache``): its cache miss."""
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        skip = _skip_file.get(filename)
        if skip is None:
            skip = _skipped_file(filename)
            if len(_skip_file) > _CACHE_LIMIT:
                _skip_file.clear()
            _skip_file[filename] = skip
        if skip:
            frame = frame.f_back
            continue
        key = (id(code), frame.f_lasti)
        hit = _site_cache.get(key)
        if hit is not None and hit[0] is code:
            return hit[1]
        site = (filename, frame.f_lineno or 0, code.co_name)
        if len(_site_cache) > _CACHE_LIMIT:
            _site_cache.clear()
        _site_cache[key] = (code, site)
        return site
    return None


#: Without the compiled walk: id(code) -> (code, skipped, {instruction offset:
#: site}). The code object is kept so an id reused by a new one is detected.
_code_sites: dict[int, tuple[CodeType, bool, dict[int, tuple[str, int, str]]]] = {}


def _frame_site_py(frame: FrameType | None) -> tuple[str, int, str] | None:
    """``frame_site`` in Python: per frame one lookup by ``id(code)``, which
    also says whether to skip it, then one by instruction offset: a cache hit
    takes about 450 ns here against 650 for ``_site_from``'s filename lookup
    plus tuple key, and a pure-Python threshold crossing pays it."""
    while frame is not None:
        code = frame.f_code
        entry = _code_sites.get(id(code))
        if entry is None or entry[0] is not code:
            if len(_code_sites) > _CACHE_LIMIT:
                _code_sites.clear()
            entry = _code_sites[id(code)] = (code, _skipped_file(code.co_filename), {})
        if entry[1]:
            frame = frame.f_back
            continue
        sites = entry[2]
        lasti = frame.f_lasti
        site = sites.get(lasti)
        if site is None:
            site = sites[lasti] = (code.co_filename, frame.f_lineno or 0, code.co_name)
        return site
    return None


#: The pure-Python walks, kept for tests comparing them with the compiled ones.
python_call_site = call_site
python_frame_site = _frame_site_py

#: The site of the first user frame from ``frame`` (or None) outwards. Pair it
#: with ``sys._getframe(n)`` to start past frames known to be tracedsync's:
#: that makes no frame object for the frames it skips, where ``call_site``
#: (compiled) makes one for each on the way out.
frame_site = _frame_site_py


def _bind_compiled() -> None:
    global call_site, frame_site
    from tracedsync._impl import speedups

    if speedups is not None and hasattr(speedups, "call_site"):
        speedups.bind_sites(_skip_file, _site_cache, _site_from)
        call_site = speedups.call_site
        frame_site = speedups.frame_site


_bind_compiled()


def thread_site(ident: int) -> tuple[str, int, str] | None:
    """Where thread ``ident`` is running right now, in user code."""
    try:
        frame = sys._current_frames().get(ident)
    except Exception:
        return None
    frame = user_frame(frame)
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
    try:
        frame = sys._current_frames().get(ident)
    except Exception:
        return []
    out: list[str] = []
    while frame is not None and len(out) < limit:
        code = frame.f_code
        if not code.co_filename.startswith(_PACKAGE_DIR):
            out.append(f"{relative_path(code.co_filename)}:{frame.f_lineno} in {code.co_name}")
        frame = frame.f_back
    return out
