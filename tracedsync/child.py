"""What runs in every Python process ``tracedsync run`` starts.

The ``sitecustomize`` that ``tracedsync run`` puts first on ``PYTHONPATH``
(``tracedsync/_bootstrap``) calls :func:`bootstrap_child` before the
program's first line. It stays small on purpose: every process of a traced
program imports it, most of them record nothing, and they must not pay for
the command line (``tracedsync.runner`` is the parent's side).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from tracedsync import lifecycle, patching


def bootstrap_child() -> None:
    """Install tracedsync in a process started by ``tracedsync run``."""
    patching.install()
    _flush_on_sigterm()
    dump = os.environ.get("TRACEDSYNC_DUMP_SIGNAL")
    if dump and dump.isdigit():
        _dump_on_signal(int(dump))


def _flush_on_sigterm() -> None:
    """SIGTERM (e.g. forwarded by the parent): export what is buffered, then die of it.

    A second SIGTERM during the flush (one sent to the process group reaches
    the program directly and again through the parent) is ignored: handled
    again, it would end the process before the first flush finished.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    flushing: list[bool] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        if flushing:
            return
        flushing.append(True)
        try:
            lifecycle.final_flush()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def _dump_on_signal(signum: int) -> None:
    def on_signal(number: int, frame: Any) -> None:
        try:
            from tracedsync import detection

            sys.stderr.write(detection.format_snapshot(detection.snapshot(), stacks=True))
            sys.stderr.flush()
        except Exception as exc:
            sys.stderr.write(f"tracedsync: snapshot failed: {exc}\n")

    try:
        signal.signal(signum, on_signal)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"tracedsync: cannot handle signal {signum}: {exc}\n")
