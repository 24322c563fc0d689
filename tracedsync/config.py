"""Options: what ``configure()`` takes, where each comes from, what is valid.

Explicit arguments win; environment variables (``TRACEDSYNC_*``) fill in
what is not given; defaults fill in the rest. A bad argument raises
``ValueError`` naming it. A bad environment value inside a running program
prints one warning line naming the variable and the default used: the
observed program is never stopped by its telemetry. ``tracedsync run``
checks the environment first with :func:`environment_errors` and refuses
to start on a bad value. Applying a configuration is
``tracedsync.lifecycle``'s work.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from tracedsync import _impl

EXPORTER_NAMES = ("console", "jsonfile", "otlp", "prometheus")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_MS = 86_400_000.0  # one day
_MAX_COUNT = 100_000_000


class Config(NamedTuple):
    """The active configuration (see ``configure()`` for each field)."""

    exporters: tuple[Any, ...] = ()
    output_dir: str = "tracedsync-out"
    wait_threshold_ms: float = 1.0
    hold_threshold_ms: float = 10.0
    max_spans_per_second: int = 1000
    buffer_size: int = 65536
    stuck_after_ms: float = 5000.0
    idle_stuck_after_ms: float = 60_000.0
    watchdog_interval_ms: float = 1000.0
    stack_depth: int = 32
    lock_order: bool = False
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    shutdown_timeout_ms: float = 5000.0
    tracer_provider: Any = None
    meter_provider: Any = None
    enabled: bool = True
    file_max_bytes: int = 64 * 1024 * 1024
    metric_export_interval_ms: float = 10_000.0
    run_id: str = ""


# --------------------------------------------------------------------------
# Validation: one function per kind of value, used for arguments and env
# --------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value that does not parse; the message says what was expected."""


def _number(value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool):
        raise _Invalid("a number")
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii():  # float() also takes other scripts' digits
            raise _Invalid("a number")
        try:
            value = float(text)
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
        if not re.fullmatch(r"[+-]?[0-9]{1,20}", text):
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
    "idle_stuck_after_ms": (
        "TRACEDSYNC_IDLE_STUCK_AFTER_MS",
        lambda v: _number(v, strict=True),
    ),
    "stack_depth": ("TRACEDSYNC_STACK_DEPTH", lambda v: _count(v, maximum=256)),
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


class EnvironmentProblem(NamedTuple):
    """A bad ``TRACEDSYNC_*`` variable: its name, value, and what was expected
    (None: the name is not a tracedsync setting)."""

    variable: str
    value: str
    expected: str | None

    def __str__(self) -> str:
        if self.expected is None:
            return f"{self.variable} is not a tracedsync setting"
        return f"{self.variable}={_describe(self.value)} is invalid: expected {self.expected}"


def environment_problems(environ: Mapping[str, str] | None = None) -> list[EnvironmentProblem]:
    """Every bad ``TRACEDSYNC_*`` value in ``environ``."""
    env = os.environ if environ is None else environ
    problems = []
    checks: dict[str, Callable[[Any], Any]] = {
        var: parser for var, parser in _OPTIONS.values() if var is not None
    }
    checks.update(_EXTRA_VARIABLES)
    for var, parser in checks.items():
        if var in env:
            try:
                parser(env[var])
            except _Invalid as exc:
                problems.append(EnvironmentProblem(var, env[var], str(exc)))
    for var in env:
        if var.startswith("TRACEDSYNC_") and var not in checks and var not in PRIVATE_VARIABLES:
            problems.append(EnvironmentProblem(var, env[var], None))
    return problems


def environment_errors(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per bad ``TRACEDSYNC_*`` value in ``environ``."""
    return [str(p) for p in environment_problems(environ)]


#: Set by ``tracedsync run`` for the program; not user settings.
PRIVATE_VARIABLES = frozenset(
    {
        "TRACEDSYNC_RUN_ID",
        "TRACEDSYNC_RUN",
        "TRACEDSYNC_DUMP_SIGNAL",
        "TRACEDSYNC_SUMMARY_DIR",
        "TRACEDSYNC_ALERTS",
    }
)


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
    return defaults._replace(**values)


_RUN_ID = ""


def _process_run_id() -> str:
    global _RUN_ID
    if not _RUN_ID:
        _RUN_ID = os.urandom(6).hex()
    return _RUN_ID
