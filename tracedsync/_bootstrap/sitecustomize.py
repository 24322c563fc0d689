"""Loaded first by every Python process that ``tracedsync run`` starts.

``tracedsync run`` puts this directory first on ``PYTHONPATH``. This module
installs tracedsync before the program's first line, then loads the
``sitecustomize`` that would otherwise have run (Debian ships one), so
nothing the interpreter normally does at startup is lost. It never raises:
a process where tracedsync cannot load gets one warning line and runs
untraced.
"""

import os
import sys


def _in_main_interpreter() -> bool:
    """False in a subinterpreter (its ``site`` runs this module too): no
    tracedsync thread may start there, so it stays untraced, silently. The
    test is ``tracedsync/_interpreter.py``, loaded by path so that nothing of
    tracedsync is imported in a subinterpreter."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        path = os.path.join(os.path.dirname(here), "_interpreter.py")
        spec = importlib.util.spec_from_file_location("_tracedsync_interpreter", path)
        if spec is None or spec.loader is None:
            return True
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return bool(module.in_main_interpreter())
    except Exception:  # not knowing is the main interpreter's case, as before
        return True


def _tracedsync_install() -> None:
    if os.environ.get("TRACEDSYNC_RUN") != "1" or not _in_main_interpreter():
        return
    try:
        from tracedsync import child
    except Exception as exc:  # tracedsync not installed for this interpreter
        sys.stderr.write(
            f"tracedsync: not installed for {sys.executable} ({type(exc).__name__}: {exc}); "
            "this process is not traced\n"
        )
        return
    try:
        child.bootstrap_child()
    except Exception as exc:
        sys.stderr.write(f"tracedsync: could not install ({type(exc).__name__}: {exc})\n")


def _chain_next_sitecustomize() -> None:
    """Run the sitecustomize module that this one shadows, if there is one."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_tracedsync_chained_sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.stderr.write(
            f"tracedsync: the chained sitecustomize {spec.origin} failed: "
            f"{type(exc).__name__}: {exc}\n"
        )


def _interrupted() -> None:
    """Ctrl-C while tracedsync installs (its imports take a moment): end as an
    interrupted program ends, by SIGINT. A KeyboardInterrupt escaping
    sitecustomize is a "Fatal Python error" at startup."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(128 + signal.SIGINT)  # where the signal does not end the process at once


try:
    _tracedsync_install()
except KeyboardInterrupt:
    _interrupted()
_chain_next_sitecustomize()
