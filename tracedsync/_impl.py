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
import sys
from collections.abc import Mapping
from types import ModuleType

#: Forces the pure-Python implementation when true (1, true, yes, on).
PURE_PYTHON_VARIABLE = "TRACEDSYNC_PURE_PYTHON"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def pure_python_forced(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``TRACEDSYNC_PURE_PYTHON`` asks for pure Python.

    A value that is not a boolean gives one warning line and the default.
    """
    env = os.environ if environ is None else environ
    raw = env.get(PURE_PYTHON_VARIABLE, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        try:
            sys.stderr.write(
                f"tracedsync: {PURE_PYTHON_VARIABLE}={raw!r} is invalid: expected one of "
                "1, 0, true, false, yes, no, on, off; using the default (compiled where built)\n"
            )
        except Exception:
            pass
    return False


def _load() -> tuple[ModuleType | None, str]:
    if pure_python_forced():
        return None, f"{PURE_PYTHON_VARIABLE} is set"
    try:
        from tracedsync import _speedups
    except ImportError as exc:
        return None, f"the extension is not available ({exc})"
    return _speedups, "the extension is loaded"


#: The extension module, or None when pure Python is used.
speedups, REASON = _load()
#: ``"compiled"`` or ``"pure"``.
IMPLEMENTATION = "compiled" if speedups is not None else "pure"
