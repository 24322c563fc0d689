"""``tracedsync.configure()``: options, environment variables, lifecycle.

Explicit arguments win; environment variables (``TRACEDSYNC_*``) fill in
what is not given; defaults fill in the rest. A bad argument raises
``ValueError`` naming it. A bad environment value inside a running program
prints one warning line naming the variable and the default used: the
observed program is never stopped by its telemetry. ``tracedsync run``
checks the environment first with :func:`environment_errors` and refuses
to start on a bad value.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import sys
import uuid
from _thread import RLock as _RawRLock
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tracedsync import _impl, recorder

EXPORTER_NAMES = ("console", "jsonfile", "otlp", "prometheus")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_MS = 86_400_000.0  # one day
_MAX_COUNT = 100_000_000


@dataclass(frozen=True)
class Config:
    """The active configuration (see ``configure()`` for each field)."""

    exporters: tuple[Any, ...] = ()
    output_dir: str = "tracedsync-out"
    wait_threshold_ms: float = 1.0
    hold_threshold_ms: float = 10.0
    max_spans_per_second: int = 1000
    buffer_size: int = 65536
    stuck_after_ms: float = 5000.0
    watchdog_interval_ms: float = 1000.0
    lock_order: bool = False
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    shutdown_timeout_ms: float = 5000.0
    tracer_provider: Any = None
    meter_provider: Any = None
    enabled: bool = True
    file_max_bytes: int = 64 * 1024 * 1024
    metric_export_interval_ms: float = 10_000.0
    run_id: str = field(default="")


# --------------------------------------------------------------------------
# Validation: one function per kind of value, used for arguments and env
# --------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value that does not parse; the message says what was expected."""


def _number(value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool):
        raise _Invalid("a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _Invalid("a number") from None
    if not isinstance(value, (int, float)) or isinstance(value, complex):
        raise _Invalid("a number")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise _Invalid("a finite number")
    if strict and number <= minimum:
        raise _Invalid(f"a number > {minimum:g}")
    if number < minimum:
        raise _Invalid(f"a number >= {minimum:g}")
    if number > _MAX_MS:
        raise _Invalid(f"a number <= {_MAX_MS:g}")
    return number


def _count(value: Any, *, minimum: int = 0, maximum: int = _MAX_COUNT) -> int:
    if isinstance(value, bool):
        raise _Invalid("an integer")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,20}", text):
            raise _Invalid("an integer")
        value = int(text)
    if not isinstance(value, int):
        raise _Invalid("an integer")
    if value < minimum:
        raise _Invalid(f"an integer >= {minimum}")
    if value > maximum:
        raise _Invalid(f"an integer <= {maximum}")
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Invalid("one of 1, 0, true, false, yes, no, on, off")


def _implementation(value: Any) -> str:
    if value in ("compiled", "pure"):
        return str(value)
    raise _Invalid("compiled or pure")


def _modules(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise _Invalid("module names")
        item = item.strip()
        if not item:
            continue
        if not _MODULE_RE.match(item) or len(item) > 200:
            raise _Invalid("comma-separated module names")
        out.append(item)
    return tuple(out)


def _exporters(value: Any) -> tuple[Any, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            name = item.strip().lower()
            if not name:
                continue
            if name not in EXPORTER_NAMES:
                raise _Invalid(f"exporter names among {', '.join(EXPORTER_NAMES)}")
            if name not in out:
                out.append(name)
        else:
            out.append(item)
    return tuple(out)


def _path(value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise _Invalid("a path")
    text = os.fspath(value)
    if not text or "\x00" in text:
        raise _Invalid("a non-empty path")
    return str(text)


#: option -> (environment variable, parser)
_OPTIONS: dict[str, tuple[str | None, Callable[[Any], Any]]] = {
    "exporters": ("TRACEDSYNC_EXPORTERS", _exporters),
    "output_dir": ("TRACEDSYNC_OUTPUT_DIR", _path),
    "wait_threshold_ms": ("TRACEDSYNC_WAIT_THRESHOLD_MS", _number),
    "hold_threshold_ms": ("TRACEDSYNC_HOLD_THRESHOLD_MS", _number),
    "max_spans_per_second": ("TRACEDSYNC_MAX_SPANS_PER_SECOND", _count),
    "buffer_size": ("TRACEDSYNC_BUFFER_SIZE", lambda v: _count(v, minimum=16)),
    "stuck_after_ms": ("TRACEDSYNC_STUCK_AFTER_MS", lambda v: _number(v, strict=True)),
    "watchdog_interval_ms": (
        "TRACEDSYNC_WATCHDOG_INTERVAL_MS",
        lambda v: _number(v, minimum=1.0),
    ),
    "lock_order": ("TRACEDSYNC_LOCK_ORDER", _flag),
    "exclude": ("TRACEDSYNC_EXCLUDE", _modules),
    "include": ("TRACEDSYNC_INCLUDE", _modules),
    "shutdown_timeout_ms": ("TRACEDSYNC_SHUTDOWN_TIMEOUT_MS", _number),
    "tracer_provider": (None, lambda v: v),
    "meter_provider": (None, lambda v: v),
    "enabled": (None, _flag),
    "file_max_bytes": (
        "TRACEDSYNC_FILE_MAX_BYTES",
        lambda v: _count(v, minimum=1024, maximum=1 << 40),
    ),
    "metric_export_interval_ms": (
        "OTEL_METRIC_EXPORT_INTERVAL",
        lambda v: _number(v, minimum=10.0),
    ),
}

#: Variables that are not options but are checked with them.
_EXTRA_VARIABLES: dict[str, Callable[[Any], Any]] = {
    "TRACEDSYNC_DISABLED": _flag,
    "TRACEDSYNC_PURE_PYTHON": _flag,
    "TRACEDSYNC_PROMETHEUS_PORT": lambda v: _count(v, maximum=65535),
    # Read by the test suite only (CI: which implementation must be loaded).
    "TRACEDSYNC_EXPECT_IMPLEMENTATION": _implementation,
}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"tracedsync: {message}\n")
    except Exception:
        pass


def environment_errors(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per bad ``TRACEDSYNC_*`` value in ``environ``."""
    env = os.environ if environ is None else environ
    errors = []
    checks: dict[str, Callable[[Any], Any]] = {
        var: parser for var, parser in _OPTIONS.values() if var is not None
    }
    checks.update(_EXTRA_VARIABLES)
    for var, parser in checks.items():
        if var in env:
            try:
                parser(env[var])
            except _Invalid as exc:
                errors.append(f"{var}={_describe(env[var])} is invalid: expected {exc}")
    for var in env:
        if var.startswith("TRACEDSYNC_") and var not in checks and var not in _PRIVATE_VARIABLES:
            errors.append(f"{var} is not a tracedsync setting")
    return errors


#: Set by ``tracedsync run`` for the program; not user settings.
_PRIVATE_VARIABLES = {"TRACEDSYNC_RUN_ID", "TRACEDSYNC_RUN", "TRACEDSYNC_DUMP_SIGNAL"}


def resolve(explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Merge arguments, environment and defaults; raise on a bad argument."""
    env = os.environ if environ is None else environ
    defaults = Config()
    values: dict[str, Any] = {}
    for option, (var, parser) in _OPTIONS.items():
        if option in explicit:
            try:
                values[option] = parser(explicit[option])
            except _Invalid as exc:
                raise ValueError(
                    f"{option} must be {exc}, got {_describe(explicit[option])}"
                ) from None
        elif var is not None and var in env:
            try:
                values[option] = parser(env[var])
            except _Invalid as exc:
                _warn(
                    f"ignoring {var}={_describe(env[var])} (expected {exc}); "
                    f"using the default {getattr(defaults, option)!r}"
                )
    unknown = set(explicit) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"configure() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    if "enabled" not in explicit and "TRACEDSYNC_DISABLED" in env:
        try:
            values["enabled"] = not _flag(env["TRACEDSYNC_DISABLED"])
        except _Invalid as exc:
            _warn(
                f"ignoring TRACEDSYNC_DISABLED={_describe(env['TRACEDSYNC_DISABLED'])} "
                f"(expected {exc}); tracing stays enabled"
            )
    if environ is None and _impl.IGNORED_VALUE is not None:
        # Read at import (it picks the Lock/RLock implementation); reported here.
        _warn(
            f"ignoring TRACEDSYNC_PURE_PYTHON={_describe(_impl.IGNORED_VALUE)} (expected one "
            f"of 1, 0, true, false, yes, no, on, off); using the {_impl.IMPLEMENTATION} "
            "implementation"
        )
    values["run_id"] = env.get("TRACEDSYNC_RUN_ID") or _process_run_id()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", values["run_id"]):
        values["run_id"] = _process_run_id()
    return replace(defaults, **values)


_RUN_ID = ""


def _process_run_id() -> str:
    global _RUN_ID
    if not _RUN_ID:
        _RUN_ID = uuid.uuid4().hex[:12]
    return _RUN_ID


# --------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------

_state_lock = _RawRLock()
_active: Config | None = None
_pipeline: Any = None
#: (start, stop) of components that live with the pipeline (detection).
_components: list[tuple[Callable[[Config, Any], None], Callable[[], None]]] = []
_extra_stoppers: list[Callable[[], None]] = []


def register_component(start: Callable[[Config, Any], None], stop: Callable[[], None]) -> None:
    """``start(config, pipeline_or_None)`` after every ``apply``; ``stop()`` before."""
    _components.append((start, stop))


_hooks_installed = False


def active() -> Config | None:
    """The configuration applied last, or None before ``configure()``."""
    return _active


def pipeline() -> Any:
    """The running pipeline, or None."""
    return _pipeline


def apply(config: Config) -> Config:
    """Make ``config`` the active one: stop the old pipeline, start a new one."""
    global _active, _pipeline
    with _state_lock:
        _install_process_hooks()
        _stop_pipeline(config.shutdown_timeout_ms / 1000)
        recorder.apply(
            wait_ns=int(config.wait_threshold_ms * 1e6),
            hold_ns=int(config.hold_threshold_ms * 1e6),
            spans_per_second=config.max_spans_per_second or recorder.NEVER,
            capacity=config.buffer_size,
            is_enabled=config.enabled,
        )
        recorder.set_exclusions(config.exclude, config.include)
        _active = config
        if config.enabled and (config.exporters or config.tracer_provider is not None):
            _pipeline = _start_pipeline(config)
        if config.enabled and config.meter_provider is not None:
            from tracedsync import __version__
            from tracedsync.pipeline import observe_with_meter_provider

            _extra_stoppers.append(observe_with_meter_provider(config.meter_provider, __version__))
        for start, _ in _components:
            try:
                start(config, _pipeline)
            except Exception as exc:
                _warn(f"could not start {getattr(start, '__module__', start)}: {exc}")
        return config


def _start_pipeline(config: Config) -> Any:
    from tracedsync import __version__
    from tracedsync.exporters import create_exporters
    from tracedsync.pipeline import Pipeline, build_resource, scope

    resource = build_resource(config.run_id)

    def unavailable(name: str, exc: Exception) -> None:
        _warn(f"{exc}; the {name} exporter is off")

    sinks = create_exporters(config, resource, scope(__version__), unavailable)
    pipe = Pipeline(
        sinks,
        resource,
        __version__,
        tracer_provider=config.tracer_provider,
        metric_interval_s=config.metric_export_interval_ms / 1000,
    )
    pipe.start()
    return pipe


def _stop_pipeline(timeout_s: float) -> None:
    global _pipeline
    for _, stop in _components:
        try:
            stop()
        except Exception:
            pass
    while _extra_stoppers:
        try:
            _extra_stoppers.pop()()
        except Exception:
            pass
    pipe = _pipeline
    _pipeline = None
    recorder.set_recording(False)
    if pipe is not None and not pipe.stop(timeout_s):
        acc = recorder.accounting
        lost = max(0, acc.produced - acc.exported - acc.dropped - acc.failed)
        acc.failed += lost
        _warn(
            f"exporting did not finish within {timeout_s:g} s; {lost} records not exported "
            "(an exporter is stuck or too slow)"
        )


def flush(timeout: float | None = None) -> bool:
    """Export everything recorded so far. True when done within ``timeout``
    seconds (default: the shutdown timeout)."""
    pipe = _pipeline
    if pipe is None:
        return True
    if timeout is None:
        timeout = (_active.shutdown_timeout_ms if _active else 5000.0) / 1000
    return bool(pipe.flush(timeout))


def shutdown(timeout: float | None = None) -> None:
    """Flush, stop the pipeline and forget the configuration."""
    global _active
    with _state_lock:
        if timeout is None:
            timeout = (_active.shutdown_timeout_ms if _active else 5000.0) / 1000
        _stop_pipeline(timeout)
        _active = None


def _at_exit() -> None:
    try:
        if _pipeline is not None:
            shutdown()
    except Exception:
        pass


def _after_fork_in_child() -> None:
    """The child keeps the configuration, not the parent's threads or records."""
    global _pipeline, _state_lock
    _state_lock = _RawRLock()
    recorder.at_fork_child()
    config = _active
    # The parent's pipeline thread does not exist here, and its exporters may
    # hold connections (gRPC channels do not survive fork): start afresh.
    _pipeline = None
    recorder.set_recording(False)
    if config is not None and config.enabled:
        try:
            apply(config)
        except Exception as exc:
            _warn(f"could not restart telemetry after fork: {exc}")
        _flush_at_multiprocessing_exit()


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
        mp_util.Finalize(None, _at_exit, exitpriority=100)

    try:
        mp_util.register_after_fork(_MP_HOOK, register_finalizer)
    except Exception:
        pass


def _install_process_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


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
    - ``stuck_after_ms``, ``watchdog_interval_ms``, ``lock_order``: detection.
    - ``exclude`` / ``include`` [``TRACEDSYNC_EXCLUDE`` / ``TRACEDSYNC_INCLUDE``]:
      module prefixes whose primitives stay untraced / are traced anyway.
    - ``shutdown_timeout_ms`` [``TRACEDSYNC_SHUTDOWN_TIMEOUT_MS``], default 5000.
    - ``tracer_provider``, ``meter_provider``: send spans (and metrics) there
      instead of tracedsync's own providers.
    - ``enabled`` [``TRACEDSYNC_DISABLED`` inverted]: the kill switch.
    """
    return apply(resolve(options))
