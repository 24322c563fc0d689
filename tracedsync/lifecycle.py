"""The process lifecycle: start and stop the pipeline, flush at the right moments.

``configure()`` validates (``tracedsync.config``) and calls :func:`apply`,
which installs the new settings and restarts the pipeline and the
components that live with it (detection's watchdog). The hooks here make
sure what was recorded leaves the process:

- ``threading._register_atexit``: the main thread is done and Python is
  about to join the other non-daemon threads -- which never returns when
  they are deadlocked, so ``atexit`` never comes: flush now;
- ``atexit``: the final flush (waits still blocked become ``unfinished``);
- fork: the child keeps the configuration, not the parent's threads,
  records or waiters; ``multiprocessing``'s fork children leave by
  ``os._exit`` and flush through its finalizer;
- SIGTERM under ``tracedsync run`` (``child.bootstrap_child``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from _thread import RLock as _RawRLock
from collections.abc import Callable
from typing import Any

from tracedsync import (
    _interpreter,
    _settings,
    _threads,
    budget,
    detection,
    records,
    registry,
    summary,
    waits,
)
from tracedsync._version import __version__
from tracedsync.config import Config, resolve

_state_lock = _RawRLock()
_active: Config | None = None
_pipeline: Any = None
_extra_stoppers: list[Callable[[], None]] = []
_hooks_installed = False


def warn(message: str) -> None:
    """One line on stderr; never raises."""
    try:
        sys.stderr.write(f"tracedsync: {message}\n")
    except Exception:
        pass


def active() -> Config | None:
    """The configuration applied last, or None before ``configure()``."""
    return _active


def pipeline() -> Any:
    """The running pipeline, or None."""
    return _pipeline


def apply(config: Config, keep_records: bool = False) -> Config:
    """Make ``config`` the active one: stop the old pipeline, start a new one
    (``keep_records``: a fork child's first records wait for it)."""
    global _active, _pipeline, _pending_start
    if config.enabled and not _interpreter.in_main_interpreter():
        # No thread of ours may start here (Py_EndInterpreter aborts while
        # one runs): the primitives stay the stdlib's.
        warn("not started in a subinterpreter: its primitives stay untraced")
        config = config._replace(enabled=False)
    with _state_lock:
        _install_process_hooks()
        _pending_start = None
        _stop_pipeline(config.shutdown_timeout_ms / 1000, keep_records)
        _settings.use(
            _settings.Settings(
                wait_ns=int(config.wait_threshold_ms * 1e6),
                hold_ns=int(config.hold_threshold_ms * 1e6),
                spans_per_second=config.max_spans_per_second or _settings.NEVER,
                buffer_capacity=config.buffer_size,
                enabled=config.enabled,
                recording=False,
                stack_depth=config.stack_depth,
                stuck_after_ns=int(config.stuck_after_ms * 1e6),
                idle_stuck_after_ns=int(config.idle_stuck_after_ms * 1e6),
            )
        )
        registry.set_exclusions(config.exclude, config.include)
        _active = config
        if config.enabled and (config.exporters or config.tracer_provider is not None):
            _pipeline = _start_pipeline(config)
        if config.enabled and config.meter_provider is not None:
            from tracedsync.pipeline import observe_with_meter_provider

            _extra_stoppers.append(observe_with_meter_provider(config.meter_provider, __version__))
        try:
            detection.start(config, _pipeline)
        except Exception as exc:
            warn(f"could not start the detection: {exc}")
        return config


def _start_pipeline(config: Config) -> Any:
    """The pipeline for ``config``, built and started now: the OpenTelemetry
    SDK, structlog and the exporters are imported here, at configuration,
    not at a moment of the program's (a build at exit would change a
    Ctrl-C's exit status; one in mid-run, what a test of the import system
    sees)."""
    pipe = _build_pipeline(config)
    pipe.start()
    return pipe


def _build_pipeline(config: Config) -> Any:
    from tracedsync.exporters import create_exporters
    from tracedsync.pipeline import Pipeline, build_resource, scope

    resource = build_resource(config.run_id)

    def unavailable(name: str, exc: Exception) -> None:
        warn(f"{exc}; the {name} exporter is off")

    sinks = create_exporters(config, resource, scope(__version__), unavailable)
    return Pipeline(
        sinks,
        resource,
        __version__,
        tracer_provider=config.tracer_provider,
        metric_interval_s=config.metric_export_interval_ms / 1000,
    )


def _stop_pipeline(timeout_s: float, keep_records: bool = False) -> None:
    global _pipeline
    try:
        detection.stop()
    except Exception:
        pass
    while _extra_stoppers:
        try:
            _extra_stoppers.pop()()
        except Exception:
            pass
    pipe = _pipeline
    _pipeline = None
    if pipe is not None:
        with registry.stats_lock:
            budget.close_all()
        if not pipe.stop(timeout_s):
            warn(
                f"exporting did not finish within {timeout_s:g} s "
                "(an exporter is stuck or too slow); what it had not exported is counted failed"
            )
    if not keep_records:
        _settings.update(recording=False)
        records.connect(None, None)


def flush(timeout: float | None = None) -> bool:
    """Export everything recorded so far. True when done within ``timeout``
    seconds (default: the shutdown timeout). Waits still blocked are
    reported as ``unfinished_wait`` events."""
    pipe = _pipeline
    if pipe is None:
        return True
    if timeout is None:
        timeout = (_active.shutdown_timeout_ms if _active else 5000.0) / 1000
    with registry.stats_lock:
        budget.close_all()
    return bool(pipe.flush(timeout))


def shutdown(timeout: float | None = None) -> None:
    """Flush, stop the pipeline and forget the configuration."""
    global _active
    with _state_lock:
        if timeout is None:
            timeout = (_active.shutdown_timeout_ms if _active else 5000.0) / 1000
        _stop_pipeline(timeout)
        _active = None


def final_flush() -> None:
    """The process ends (atexit, SIGTERM under ``tracedsync run``, the end of
    a multiprocessing child): export everything, waits still blocked as
    ``unfinished``, stop, and write the exit summary. Never raises."""
    try:
        config = _active
        if _pending_start is not None and registry.anything_used():
            _start_pending()  # a fork child that recorded only counters: export them
        if _pipeline is not None:
            shutdown()
        _write_summary(config, final=True)
    except Exception:
        pass


def _write_summary(config: Config | None, final: bool) -> None:
    """This process's summary file (under ``tracedsync run``)."""
    pipeline_module = sys.modules.get("tracedsync.pipeline")
    if pipeline_module is not None:
        telemetry = pipeline_module.telemetry_counts()
    else:
        acc = records.accounting
        telemetry = {"produced": acc.produced, "dropped": acc.dropped, "exporters": {}}
    files_dir = config.output_dir if config is not None and "jsonfile" in config.exporters else None
    summary.write(telemetry, files_dir, final)


#: How long the flush before joining the program's threads may take: the
#: records are offered to every exporter's lane, whose threads go on
#: delivering while Python joins (the final flush, at exit, waits for them).
_JOIN_FLUSH_S = 0.25


def _before_threads_join() -> None:
    """``threading._shutdown``: the main thread is done; the other non-daemon
    threads are about to be joined (for ever, if they are deadlocked)."""
    try:
        if _pipeline is not None:
            flush(min(_JOIN_FLUSH_S, (_active.shutdown_timeout_ms if _active else 0) / 1000))
        # In case the other threads are deadlocked and the process is killed:
        # what is known now, waits still blocked included.
        _write_summary(_active, final=False)
    except Exception:
        pass


#: A fork child's configuration, waiting for the child's first record (or
#: its exit) to start its threads: a forked child starts with one thread.
_pending_start: Config | None = None
#: The warnings filter hiding the multi-threaded-fork DeprecationWarning
#: (3.12+) while tracedsync's threads are the only other ones.
_fork_filter: Any = None


def _before_fork() -> None:
    """On 3.12+ ``os.fork()`` warns when other threads run. When the only
    others are tracedsync's, the program would not see that warning without
    tracedsync: hide it for this fork."""
    global _fork_filter
    if sys.version_info < (3, 12) or _pipeline is None:
        return
    try:
        own = [t for t in threading.enumerate() if not _threads.is_internal(t.ident)]
        if len(own) > 1:
            return
        import warnings

        warnings.filterwarnings(
            "ignore", message=r".*is multi-threaded, use of fork\(\)", category=DeprecationWarning
        )
        _fork_filter = warnings.filters[0]
    except Exception:
        _fork_filter = None


def _after_fork_in_parent() -> None:
    _drop_fork_filter()


def _drop_fork_filter() -> None:
    global _fork_filter
    entry, _fork_filter = _fork_filter, None
    if entry is None:
        return
    try:
        import warnings

        filters: list[Any] = warnings.filters  # type: ignore[assignment]
        filters.remove(entry)
        warnings._filters_mutated()  # type: ignore[attr-defined]
    except Exception:
        pass


def _after_fork_in_child() -> None:
    """The child keeps the configuration, not the parent's threads, records or
    waiters; it starts its own threads when it first has something to export
    (its first record, or its exit with counters to report)."""
    global _pipeline, _state_lock, _pending_start
    _drop_fork_filter()
    _state_lock = _RawRLock()
    registry.at_fork_child()
    records.at_fork_child()
    waits.at_fork_child()
    budget.at_fork_child()
    summary.at_fork_child()
    _threads.at_fork_child()
    config = _active
    # The parent's threads do not exist here, and its exporters may hold
    # connections (gRPC channels do not survive fork): start afresh, later.
    parent_pipeline, _pipeline = _pipeline, None
    _settings.update(recording=False)
    records.connect(None, None)
    if config is None or not config.enabled or parent_pipeline is None:
        return
    _pending_start = config
    records.connect(None, parent_pipeline.context_reader, on_first=_start_pending)
    _settings.update(recording=True)
    _flush_at_multiprocessing_exit()


def _start_pending() -> None:
    """A fork child's first record: start its pipeline now (marked internal
    meanwhile, so what starting it does with primitives is not recorded)."""
    global _pending_start
    config = _pending_start
    if config is None:
        return
    with _state_lock:
        if _pending_start is None:
            return
        _pending_start = None
        internal = _threads.is_internal()
        _threads.mark_internal()
        try:
            apply(config, keep_records=True)
        except Exception as exc:
            warn(f"could not start telemetry after fork: {exc}")
        finally:
            if not internal:
                _threads.unmark_internal()


class _Hook:
    """A weak-referenceable token for multiprocessing's after-fork registry."""


_MP_HOOK = _Hook()


def _flush_at_multiprocessing_exit() -> None:
    """multiprocessing's fork children leave by os._exit, skipping atexit: ask
    multiprocessing itself to flush at the end of the child's work.

    In a fork child this runs before ``Process._bootstrap`` clears and then
    runs multiprocessing's after-fork hooks; the hook registers a finalizer
    that ``multiprocessing.util._exit_function`` runs before ``os._exit``.
    Other forks never run the hook. Only done when the program already
    imported multiprocessing.
    """
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return

    def register_finalizer(_: object) -> None:
        mp_util.Finalize(None, final_flush, exitpriority=100)

    try:
        mp_util.register_after_fork(_MP_HOOK, register_finalizer)
    except Exception:
        pass


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(final_flush)
    register_atexit = getattr(threading, "_register_atexit", None)
    if register_atexit is not None:
        try:
            register_atexit(_before_threads_join)
        except RuntimeError:  # already shutting down
            pass
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )


def configure(**options: Any) -> Config:
    """Configure tracedsync and (re)start its pipeline; return the config.

    Keyword-only options (environment variable in brackets):

    - ``exporters`` [``TRACEDSYNC_EXPORTERS``]: names among ``console``,
      ``jsonfile``, ``otlp``, or exporter objects (a tracedsync ``Exporter``,
      an OpenTelemetry ``SpanExporter`` or ``MetricExporter``). Default none:
      stats only.
    - ``output_dir`` [``TRACEDSYNC_OUTPUT_DIR``]: where ``jsonfile`` writes.
    - ``wait_threshold_ms`` [``TRACEDSYNC_WAIT_THRESHOLD_MS``], default 1:
      waits this long become spans; 0 means every blocking wait.
    - ``hold_threshold_ms`` [``TRACEDSYNC_HOLD_THRESHOLD_MS``], default 10.
    - ``max_spans_per_second`` [``TRACEDSYNC_MAX_SPANS_PER_SECOND``], per
      primitive, default 1000; 0 means unlimited.
    - ``buffer_size`` [``TRACEDSYNC_BUFFER_SIZE``], default 65536 records.
    - ``stack_depth`` [``TRACEDSYNC_STACK_DEPTH``], default 32: frames kept
      with a wait or hold that crossed its threshold (0: the call site only).
    - ``stuck_after_ms`` [``TRACEDSYNC_STUCK_AFTER_MS``], default 5000: a
      lock-like acquire blocked this long is reported while it waits;
      ``idle_stuck_after_ms`` [``TRACEDSYNC_IDLE_STUCK_AFTER_MS``], default
      60000: the same for Event/Condition/Barrier waits.
    - ``watchdog_interval_ms``, ``lock_order``: detection.
    - ``exclude`` / ``include`` [``TRACEDSYNC_EXCLUDE`` / ``TRACEDSYNC_INCLUDE``]:
      module prefixes whose primitives stay untraced / are traced anyway.
    - ``shutdown_timeout_ms`` [``TRACEDSYNC_SHUTDOWN_TIMEOUT_MS``], default 5000.
    - ``tracer_provider``, ``meter_provider``: send spans (and metrics) there
      instead of tracedsync's own providers.
    - ``enabled`` [``TRACEDSYNC_DISABLED`` inverted]: the kill switch.
    """
    return apply(resolve(options))
