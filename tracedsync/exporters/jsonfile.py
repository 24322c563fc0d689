"""The ``jsonfile`` exporter: OTLP JSON Lines files in one output directory.

Per process, three files, so several processes never share one::

    spans-<run>-<pid>.jsonl     one ExportTraceServiceRequest per line (OTLP JSON)
    metrics-<run>-<pid>.jsonl   one ExportMetricsServiceRequest per line (OTLP JSON)
    logs-<run>-<pid>.jsonl      one structlog event per line (plain JSON)

``<run>`` is the run id ``tracedsync run`` gives a program and its children
(else one per process). Files are created ``0o600`` (they reveal code paths
and thread names). Each batch is written with whole lines in one ``write``
and the file is flushed per batch, so a killed process leaves complete lines
(at worst a truncated last one). When a file would grow past
``TRACEDSYNC_FILE_MAX_BYTES`` it is renamed ``<name>.<n>.jsonl`` (n = 1, 2,
... oldest first) and a new one is started; nothing is deleted.

The OpenTelemetry Collector's ``otlpjsonfile`` receiver reads the spans and
metrics files as they are.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any

from tracedsync.exporters import otlp_json
from tracedsync.exporters.base import Exporter, LogEvent, SpanData

#: Spans per line: keeps lines to a few hundred kilobytes.
SPANS_PER_LINE = 512
FILE_MODE = 0o600


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


class _RotatingFile:
    """An append-only file written in whole lines, rotated by size."""

    def __init__(self, directory: str, stem: str, max_bytes: int) -> None:
        self.directory = directory
        self.stem = stem
        self.max_bytes = max_bytes
        self.path = os.path.join(directory, f"{stem}.jsonl")
        self._fd = -1
        self._size = 0
        self._rotations = 0

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, FILE_MODE)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self.close()
        self._rotations += 1
        while os.path.exists(os.path.join(self.directory, f"{self.stem}.{self._rotations}.jsonl")):
            self._rotations += 1
        os.rename(self.path, os.path.join(self.directory, f"{self.stem}.{self._rotations}.jsonl"))

    def write_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        if self._fd < 0:
            self._open()
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
            self._open()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1


class JsonFileExporter(Exporter):
    """Write spans, metrics and log events as JSON Lines files."""

    name = "jsonfile"
    wants_spans = True
    wants_metrics = True
    wants_logs = True

    def __init__(
        self,
        output_dir: str,
        run_id: str,
        resource: Any,
        scope: Any,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        pid: int | None = None,
    ) -> None:
        self.output_dir = prepare_output_dir(output_dir)
        self.run_id = run_id
        self.resource = resource
        self.scope = scope
        pid = os.getpid() if pid is None else pid
        self.spans_file = _RotatingFile(self.output_dir, f"spans-{run_id}-{pid}", max_bytes)
        self.metrics_file = _RotatingFile(self.output_dir, f"metrics-{run_id}-{pid}", max_bytes)
        self.logs_file = _RotatingFile(self.output_dir, f"logs-{run_id}-{pid}", max_bytes)

    @classmethod
    def from_config(cls, config: Any, resource: Any, scope: Any) -> JsonFileExporter:
        return cls(
            config.output_dir,
            config.run_id,
            resource,
            scope,
            max_bytes=config.file_max_bytes,
        )

    def export_spans(self, spans: Sequence[SpanData]) -> None:
        lines = [
            otlp_json.encode_spans(chunk, self.resource, self.scope)
            for chunk in otlp_json.chunks(spans, SPANS_PER_LINE)
        ]
        self.spans_file.write_lines(lines)

    def export_metrics(self, metrics: Any) -> None:
        self.metrics_file.write_lines([otlp_json.encode_metrics(metrics)])

    def export_logs(self, events: Sequence[LogEvent]) -> None:
        self.logs_file.write_lines([otlp_json.encode_log(e) for e in events])

    def shutdown(self, timeout_s: float) -> None:
        for f in (self.spans_file, self.metrics_file, self.logs_file):
            f.close()
