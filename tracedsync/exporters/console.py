"""The console exporter: one readable line per event on stderr.

    12:00:01.234 worker-3 waited 35.2 ms for pool_lock (app/db.py:41),
                 held by worker-1 at app/db.py:57       (one line)

Colour when the stream is a terminal. Names are printed with control
characters escaped, so a hostile lock or thread name cannot move the cursor.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from tracedsync import _format
from tracedsync._sites import relative_path
from tracedsync.exporters.base import Exporter, LogEvent
from tracedsync.kinds import IDLE_KINDS

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_COLOURS = {"info": "\x1b[33m", "warning": "\x1b[35m", "error": "\x1b[1;31m"}


class ConsoleExporter(Exporter):
    """Write each log event as one line to ``stream`` (default: ``sys.stderr``)."""

    name = "console"
    wants_logs = True

    def __init__(self, stream: TextIO | None = None, colour: bool | None = None) -> None:
        self._stream = stream
        self._colour = colour

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def export_logs(self, events: Sequence[LogEvent]) -> None:
        stream = self.stream
        colour = self._colour
        if colour is None:
            try:
                colour = stream.isatty()
            except Exception:
                colour = False
        lines = [render(event, colour) for event in events]
        if lines:
            stream.write("\n".join(lines) + "\n")
            stream.flush()


def _clock(event: LogEvent) -> str:
    stamp = str(event.get("timestamp", ""))
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    except ValueError:
        return _format.clean(stamp)


def _site(event: LogEvent) -> str | None:
    path = event.get("code.file.path")
    if not path:
        return None
    return f"{relative_path(str(path))}:{event.get('code.line.number', '?')}"


def render(event: LogEvent, colour: bool = False) -> str:
    """The one-line rendering of a log event."""
    c = _format.clean
    name = event.get("event", "?")
    thread = c(event.get("thread.name", "?"))
    prim = c(event.get("sync.name", "?"))
    kind = event.get("sync.kind", "")
    seconds = float(event.get("duration_ms", 0.0)) / 1e3
    if name == "long_wait":
        outcome = event.get("sync.outcome", "")
        if kind in IDLE_KINDS:
            text = f"{thread} waited {_format.duration(seconds)} on {kind} {prim}: {c(outcome)}"
        elif outcome == "timeout":
            text = f"{thread} gave up after {_format.duration(seconds)} waiting for {prim}"
        else:
            text = f"{thread} waited {_format.duration(seconds)} for {prim}"
        holder = event.get("sync.holder.thread.name")
        if holder:
            text += f", held by {c(holder)}"
            if event.get("sync.holder.site"):
                text += f" at {c(event['sync.holder.site'])}"
    elif name == "long_hold":
        text = f"{thread} held {prim} for {_format.duration(seconds)}"
        depth = event.get("sync.rlock.depth")
        if isinstance(depth, int) and depth > 1:
            text += f" (re-entered, {depth} levels deep)"
        site = _site(event)
        if site:
            text += f", released at {c(site)}"
    else:
        message = event.get("message")
        text = c(message) if message else c(name)
        extras = [
            f"{k}={c(v)}"
            for k, v in event.items()
            if k not in _GENERIC_SKIP and not isinstance(v, (list, dict))
        ]
        if extras and not message:
            text += " " + " ".join(extras)
    level = str(event.get("level", "info"))
    clock = _clock(event)
    if colour:
        return f"{_DIM}{clock}{_RESET} {_COLOURS.get(level, '')}{text}{_RESET}"
    return f"{clock} {text}"


_GENERIC_SKIP = frozenset({"event", "level", "timestamp", "trace_id", "span_id", "message"})


def create(config: Any) -> ConsoleExporter:
    return ConsoleExporter()
