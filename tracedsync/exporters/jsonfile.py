"""The ``jsonfile`` exporter: OTLP JSON Lines files in one output directory.

Per process, three files, so several processes never share one::

    spans-<run>-<pid>.jsonl     one ExportTraceServiceRequest per line (OTLP JSON)
    metrics-<run>-<pid>.jsonl   one ExportMetricsServiceRequest per line (OTLP JSON)
    logs-<run>-<pid>.jsonl      one structlog event per line (plain JSON)

``<run>`` is the run id ``tracedsync run`` gives a program and its children
(else one per process). Files are created ``0o600`` (they reveal code paths
and thread names) with ``O_EXCL`` and opened with ``O_NOFOLLOW``: a name
already taken (by another user's file, or a link planted in a shared
directory) is left alone with one warning, and ``<name>.<n>.jsonl`` is
written instead. Each batch is written with whole lines in one ``write``,
so a killed process leaves complete lines (at worst a truncated last one);
a write that fails part way (disk full) is cut back to the last whole line,
the batch counts as failed, and writing goes on when space returns. When a
file would grow past ``TRACEDSYNC_FILE_MAX_BYTES`` it is renamed
``<name>.<n>.jsonl`` (n = 1, 2, ... oldest first, never over an existing
file) and a new one is started; nothing is deleted.

The OpenTelemetry Collector's ``otlpjsonfile`` receiver reads the spans and
metrics files as they are.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

from tracedsync.exporters import otlp_json
from tracedsync.exporters.base import Exporter, LogEvent, SpanData
from tracedsync.outdir import prepare_output_dir

#: Spans per line: keeps lines to a few hundred kilobytes.
SPANS_PER_LINE = 512
FILE_MODE = 0o600


#: path -> (st_dev, st_ino) of every file this process created: a new
#: configuration of the same run and pid appends to its own files, never to a
#: file someone else put at that name.
_created: dict[str, tuple[int, int]] = {}
#: Paths refused already (one warning each).
_refused: set[str] = set()
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
#: Fresh names tried at most before giving up on a file.
_FRESH_TRIES = 1000


class _Refused(Exception):
    """The path holds something this process did not create (or a link)."""


def _open_ours(path: str) -> tuple[int, int]:
    """``(fd, size)`` of ``path`` opened for appending: created now with
    ``O_EXCL`` (mode ``0o600``), or one this process created before, checked
    by device and inode. Never follows a link (``O_NOFOLLOW``). Raises
    :class:`_Refused` when the name is taken by anything else."""
    known = _created.get(path)
    if known is not None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            del _created[path]  # ours, removed since: create it again
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _Refused from None
            raise
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == known:
                return fd, st.st_size
            os.close(fd)
            raise _Refused
    try:
        fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:  # a file, a link (even dangling), a FIFO...
        raise _Refused from None
    st = os.fstat(fd)
    _created[path] = (st.st_dev, st.st_ino)
    return fd, 0


class _RotatingFile:
    """An append-only file written in whole lines, rotated by size.

    Files are this process's own: created with ``O_EXCL`` and never through a
    link. If the name is taken (a file left by someone else, or a link
    planted in a shared directory), it is left alone with one warning and
    the next free ``<stem>.<n>.jsonl`` is used instead. A write that fails
    part way (disk full, file size limit) is cut back to the size before
    the batch, so the file keeps ending in a whole line, and the error is
    raised (the batch counts as failed); the next batch is written to the
    same file when space returns.
    """

    def __init__(self, directory: str, stem: str, max_bytes: int) -> None:
        self.directory = directory
        self.stem = stem
        self.max_bytes = max_bytes
        self.base = os.path.join(directory, f"{stem}.jsonl")
        self.path = self.base
        self._fd = -1
        self._size = 0
        self._rotations = 0

    def _numbered(self, n: int) -> str:
        return os.path.join(self.directory, f"{self.stem}.{n}.jsonl")

    def _open(self) -> None:
        try:
            self._fd, self._size = _open_ours(self.path)
            return
        except _Refused:
            refused = self.path
        for _ in range(_FRESH_TRIES):
            self._rotations += 1
            candidate = self._numbered(self._rotations)
            try:
                self._fd, self._size = _open_ours(candidate)
            except _Refused:
                continue
            self.path = candidate
            if refused not in _refused:
                _refused.add(refused)
                _warn(
                    f"{refused} exists and was not created by this process (or is a "
                    f"link): left alone; writing {candidate} instead"
                )
            return
        raise OSError(errno.EEXIST, f"no free file name for {self.base}")

    def _rotate(self) -> None:
        self.close()
        if self.path != self.base:
            # Already on a numbered name (the base was refused): the next
            # numbered name takes over; nothing is renamed.
            self._rotations += 1
            self.path = self._numbered(self._rotations)
            return
        for _ in range(_FRESH_TRIES):
            self._rotations += 1
            target = self._numbered(self._rotations)
            try:
                os.link(self.path, target)  # never replaces what is there
            except FileExistsError:
                continue
            except OSError:  # no hard links here: check, then rename
                if os.path.lexists(target):
                    continue
                os.rename(self.path, target)
            else:
                os.unlink(self.path)
            _created[target] = _created.pop(self.path, (0, 0))
            return
        raise OSError(errno.EEXIST, f"no free rotation name for {self.base}")

    def write_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        if self._fd < 0:
            self._open()
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
            self._open()
        before = self._size
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            if len(view) < len(data):
                self._cut_back(before)
            raise OSError(exc.errno, f"{exc.strerror} writing {self.path}") from None
        self._size += len(data)

    def _cut_back(self, size: int) -> None:
        """Remove a partly written batch (the file ends in a whole line again)."""
        try:
            os.ftruncate(self._fd, size)
        except OSError:
            # Cannot cut (rare: shrinking needs no space): never append after
            # the partial line; the next write starts a fresh numbered file.
            self.close()
            self._rotations += 1
            self.path = self._numbered(self._rotations)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"tracedsync: {message}\n")
    except Exception:
        pass


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
