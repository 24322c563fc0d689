"""Build of the optional C extension ``tracedsync._speedups``.

Everything else is declared in ``pyproject.toml``. The extension is the
compiled hot path of ``tracedsync.Lock``/``RLock``; it is built from source
by the normal ``pip install`` (gcc and the Python headers) and is optional:
where it cannot be built (no compiler, another interpreter, a free-threaded
build) the pure-Python implementation is used. ``tracedsync.IMPLEMENTATION``
says which one is loaded, and the test suite checks it against
``TRACEDSYNC_EXPECT_IMPLEMENTATION`` so a silently skipped build fails CI.
"""

from __future__ import annotations

import platform
import sysconfig

from setuptools import Extension, setup

ext_modules = []
if platform.python_implementation() == "CPython" and not sysconfig.get_config_var(
    "Py_GIL_DISABLED"
):
    ext_modules.append(
        Extension(
            "tracedsync._speedups",
            sources=["tracedsync/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
        )
    )

setup(ext_modules=ext_modules)
