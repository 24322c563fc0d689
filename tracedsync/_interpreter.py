"""Whether this code runs in the main interpreter.

tracedsync starts no thread in a subinterpreter (a thread left running there
makes ``Py_EndInterpreter`` abort the process): ``tracedsync run``'s
bootstrap does not install there, and ``configure()`` leaves tracing off.
This module imports nothing from tracedsync, so the bootstrap loads it by
path before deciding whether to import the package at all.
"""

from __future__ import annotations

import _thread


def in_main_interpreter() -> bool:
    """True in the process's main interpreter (3.12+: ``_thread``'s own test;
    3.10-3.11: the ``_xxsubinterpreters`` ids; without that module: True)."""
    check = getattr(_thread, "_is_main_interpreter", None)
    if check is not None:
        return bool(check())
    try:
        import _xxsubinterpreters as interpreters  # type: ignore[import-not-found]
    except ImportError:
        return True
    return bool(interpreters.get_current() == interpreters.get_main())
