"""The output directory: made once, private, checked before anything writes.

A light module: ``tracedsync run`` prepares the directory before it starts
the program, without importing the exporters (which load OpenTelemetry).
"""

from __future__ import annotations

import errno
import os


class OutputDirError(OSError):
    """The output directory cannot be created or written."""


def prepare_output_dir(path: str) -> str:
    """Create ``path`` (``0o700``) if needed and check it is writable; return it absolute.

    Raises :class:`OutputDirError` with a one-line message naming the path.
    """
    absolute = os.path.abspath(path)
    try:
        os.makedirs(absolute, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(
            exc.errno, f"cannot create output directory {absolute}: {exc.strerror}"
        ) from None
    if not os.path.isdir(absolute):
        raise OutputDirError(errno.ENOTDIR, f"output directory {absolute} is not a directory")
    if not os.access(absolute, os.W_OK | os.X_OK):
        raise OutputDirError(errno.EACCES, f"output directory {absolute} is not writable")
    return absolute
