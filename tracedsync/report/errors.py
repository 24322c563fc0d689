"""The report's one error type (every layer of the report raises it)."""

from __future__ import annotations

from tracedsync._format import clean
from tracedsync.cli import CliError


class ReportError(CliError):
    """Unusable input: one line naming the file (and line), exit code 2."""

    def __init__(self, message: str) -> None:
        # File names and values quoted from the input stay on one line.
        super().__init__(clean(message))
