"""The pipeline of a ``tracedsync run`` child: its thread now, its work when there is some.

Every Python process ``tracedsync run`` starts is traced from its first line.
Most of them record nothing past a threshold (a build tool's helpers, a test
runner's workers): they must not pay for OpenTelemetry's SDK, structlog and
the exporters, the largest part of a traced start-up (``tracedsync bench
--startup`` shows a child that records beside one that does not). So when
the exporters only write files (``jsonfile``), the pipeline's thread starts
at configuration, as every internal thread does (a thread appearing later
breaks programs that count threads), and waits. It builds the real pipeline
(``tracedsync.pipeline``: the imports, the exporters) on itself, and runs it
there with inline lanes (no further thread), only when there is something to
export: a record, or, at an export interval or at the end, counters that
moved. A child that used its primitives without crossing a threshold leaves
its counters in its exit summary (``tracedsync.summary``) instead.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tracedsync import _settings, _stdlib, _threads, budget, records, registry, waits


def _lazy_context() -> Any:
    """The program thread's OpenTelemetry context while the real pipeline is
    not built: none unless the program itself imported OpenTelemetry."""
    context = sys.modules.get("opentelemetry.context")
    return None if context is None else context.get_current()


class DeferredPipeline:
    """A pipeline thread that builds the real pipeline on itself when needed."""

    def __init__(self, build: Callable[[], Any], metric_interval_s: float) -> None:
        self._build = build
        self._interval = metric_interval_s
        self._real: Any = None
        self._wake = _stdlib.Event()
        #: Set once the real pipeline is built (or could not be).
        self._ready = _stdlib.Event()
        self._wanted = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tracedsync-pipeline", daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def real(self) -> Any:
        """The real pipeline, once built (None before)."""
        return self._real

    @property
    def context_reader(self) -> Callable[[], Any]:
        """What records read the program thread's OpenTelemetry context with."""
        return _lazy_context if self._real is None else self._real.context_reader

    def start(self) -> None:
        self._thread.start()
        records.connect(self._want, _lazy_context, on_first=self._want)
        _settings.update(recording=True)

    def _want(self) -> None:
        self._wanted = True
        self._wake.set()

    def wakeup(self) -> None:
        self._wake.set()

    @staticmethod
    def _has_work() -> bool:
        """Something to export: records, kept spans, waits still blocked, or
        counters that moved."""
        return (
            bool(records.buffer)
            or budget.holding()
            or bool(waits.snapshot())
            or (registry.anything_used())
        )

    def _run(self) -> None:
        _threads.mark_internal()
        try:
            if not self._wait_for_work():
                _threads.unmark_internal()
                return
            self._real = self._build()
        except Exception as exc:
            _threads.unmark_internal()
            _warn(f"could not start exporting: {type(exc).__name__}: {exc}")
            return
        finally:
            self._ready.set()
        self._real.run_here()  # the real pipeline's loop, on this thread, internal

    def _wait_for_work(self) -> bool:
        """Until there is something to export (True) or the pipeline stops
        with nothing to export (False)."""
        due = time.monotonic() + self._interval
        while True:
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._wanted or records.buffer:
                return True
            if self._stopping:
                return False
            if time.monotonic() >= due:
                if registry.anything_used():
                    return True
                due = time.monotonic() + self._interval

    def _built(self, deadline: float) -> Any:
        """The real pipeline, built on the pipeline thread (asked for now), or
        None if that did not happen before ``deadline``."""
        if self._real is None and self._thread.is_alive():  # not in a fork child
            self._want()
            self._ready.wait(max(0.0, deadline - time.monotonic()))
        return self._real

    def flush(self, timeout_s: float) -> bool:
        if self._real is None and not self._has_work():
            return True
        deadline = time.monotonic() + timeout_s
        real = self._built(deadline)
        return real is not None and bool(real.flush(max(0.0, deadline - time.monotonic())))

    def stop(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        if self._real is None and not self._has_work():
            self._stopping = True
            self._wake.set()
            if threading.get_ident() != self._thread.ident:
                self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._real is None:
                return True
        real = self._built(deadline)
        if real is None:
            return False
        return bool(real.stop(max(0.0, deadline - time.monotonic())))

    def __getattr__(self, name: str) -> Any:
        # The real pipeline's other attributes (its lanes, its telemetry...),
        # building it if need be: whoever asks wants it.
        real = self._built(time.monotonic() + 30.0)
        if real is None:
            raise AttributeError(name)
        return getattr(real, name)


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"tracedsync: {message}\n")
    except Exception:
        pass
