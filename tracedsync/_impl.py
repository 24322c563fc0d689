"""Which implementation of ``Lock``/``RLock`` this process uses.

``compiled``: the C extension ``tracedsync._speedups`` (built by ``pip
install`` where gcc and the Python headers are available) provides the hot
path. ``pure``: the pure-Python reference in ``tracedsync.primitives``, used
where the extension was not built and whenever ``TRACEDSYNC_PURE_PYTHON=1``
(read once, at import). With the variable set the extension is not even
loaded, so it is also the escape hatch should the extension misbehave.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType

#: Forces the pure-Python implementation when true (1, true, yes, on).
PURE_PYTHON_VARIABLE = "TRACEDSYNC_PURE_PYTHON"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def pure_python_forced(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``TRACEDSYNC_PURE_PYTHON`` asks for pure Python (1, true, yes, on).

    Any other value means the default. A value that is not a boolean is
    reported by ``tracedsync.configure()`` (one warning line) and refused by
    ``tracedsync run``; nothing is printed at import.
    """
    env = os.environ if environ is None else environ
    return env.get(PURE_PYTHON_VARIABLE, "").strip().lower() in _TRUE


def invalid_value(environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``TRACEDSYNC_PURE_PYTHON`` when it is not a boolean, else None."""
    env = os.environ if environ is None else environ
    raw = env.get(PURE_PYTHON_VARIABLE, "")
    return None if raw.strip().lower() in _TRUE | _FALSE else raw


def _load() -> tuple[ModuleType | None, str]:
    if pure_python_forced():
        return None, f"{PURE_PYTHON_VARIABLE} is set"
    try:
        from tracedsync import _speedups
    except ImportError as exc:
        return None, f"the extension is not available ({exc})"
    if not _speedups.in_main_interpreter():
        # Its state (the recorder it calls, the hold threshold) is process-wide.
        return None, "subinterpreters use pure Python"
    return _speedups, "the extension is loaded"


#: The extension module, or None when pure Python is used.
speedups, REASON = _load()
#: ``"compiled"`` or ``"pure"``.
IMPLEMENTATION = "compiled" if speedups is not None else "pure"
#: A TRACEDSYNC_PURE_PYTHON value that was ignored at import (not a boolean).
IGNORED_VALUE = invalid_value()
