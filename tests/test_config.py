"""configure(): arguments, environment fallbacks, and bad input."""

from __future__ import annotations

import pytest

import tracedsync
from tracedsync import _settings, config, lifecycle


def test_defaults_match_the_design() -> None:
    """With nothing given, the documented defaults apply."""
    cfg = tracedsync.configure()
    assert cfg.exporters == ()
    assert cfg.output_dir == "tracedsync-out"
    assert (cfg.wait_threshold_ms, cfg.hold_threshold_ms) == (1.0, 10.0)
    assert (cfg.max_spans_per_second, cfg.buffer_size) == (1000, 65536)
    assert (cfg.stuck_after_ms, cfg.watchdog_interval_ms) == (5000.0, 1000.0)
    assert cfg.lock_order is False and cfg.enabled is True
    assert cfg.shutdown_timeout_ms == 5000.0
    assert lifecycle.pipeline() is None  # no exporter: stats only, no thread


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("wait_threshold_ms", -1, "wait_threshold_ms must be a number >= 0, got -1"),
        ("hold_threshold_ms", "abc", "hold_threshold_ms must be a number, got 'abc'"),
        ("hold_threshold_ms", float("nan"), "hold_threshold_ms must be a finite number, got nan"),
        ("exporters", ["nope"], "exporters must be exporter names among console, jsonfile, otlp"),
        ("buffer_size", 0, "buffer_size must be an integer >= 16, got 0"),
        ("max_spans_per_second", 1.5, "max_spans_per_second must be an integer, got 1.5"),
        ("lock_order", "maybe", "lock_order must be one of 1, 0, true"),
        ("exclude", ["not a module"], "exclude must be comma-separated module names"),
        ("watchdog_interval_ms", 0, "watchdog_interval_ms must be a number >= 1, got 0"),
    ],
)
def test_bad_argument_raises_value_error_naming_it(
    option: str, value: object, message: str
) -> None:
    """A bad argument is a ValueError naming the argument and the value."""
    with pytest.raises(ValueError) as info:
        tracedsync.configure(**{option: value})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unknown_argument_is_a_type_error() -> None:
    """An unknown keyword is a TypeError, like any function's."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'wait_ms'"):
        tracedsync.configure(wait_ms=3)


def test_environment_fills_in_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACEDSYNC_* variables fill in what is not given; arguments override them."""
    monkeypatch.setenv("TRACEDSYNC_HOLD_THRESHOLD_MS", "5")
    monkeypatch.setenv("TRACEDSYNC_WAIT_THRESHOLD_MS", "2.5")
    monkeypatch.setenv("TRACEDSYNC_EXCLUDE", "myapp.vendor, other")
    monkeypatch.setenv("TRACEDSYNC_LOCK_ORDER", "yes")
    cfg = tracedsync.configure(wait_threshold_ms=0)
    assert cfg.hold_threshold_ms == 5.0
    assert cfg.wait_threshold_ms == 0.0
    assert cfg.exclude == ("myapp.vendor", "other")
    assert cfg.lock_order is True
    assert _settings.current.hold_ns == 5_000_000


def test_bad_environment_value_warns_once_and_uses_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside a program a bad variable is one warning line naming it and the default."""
    monkeypatch.setenv("TRACEDSYNC_WAIT_THRESHOLD_MS", "fast")
    cfg = tracedsync.configure()
    assert cfg.wait_threshold_ms == 1.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "TRACEDSYNC_WAIT_THRESHOLD_MS='fast'" in err[0]
    assert "using the default 1.0" in err[0]


def test_disabled_variable_is_the_kill_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACEDSYNC_DISABLED=1 makes everything untraced."""
    monkeypatch.setenv("TRACEDSYNC_DISABLED", "1")
    cfg = tracedsync.configure(exporters=["console"])
    assert cfg.enabled is False
    assert lifecycle.pipeline() is None
    assert type(tracedsync.Lock()) is not tracedsync.Lock


def test_environment_errors_lists_every_bad_variable() -> None:
    """environment_errors() (used by `tracedsync run`) names each bad variable."""
    errors = config.environment_errors(
        {
            "TRACEDSYNC_BUFFER_SIZE": "-5",
            "TRACEDSYNC_EXPORTERS": "console,kafka",
            "TRACEDSYNC_WAIT_THRESHOLD_MS": "1",
            "TRACEDSYNC_TYPO": "1",
            "TRACEDSYNC_STUCK_AFTER_MS": "1e400",
        }
    )
    assert len(errors) == 4
    joined = "\n".join(errors)
    for var in ("BUFFER_SIZE", "EXPORTERS", "TYPO", "STUCK_AFTER_MS"):
        assert f"TRACEDSYNC_{var}" in joined


def test_reconfigure_replaces_the_pipeline() -> None:
    """configure() twice stops the first pipeline thread and starts one new one."""
    from tracedsync.testing import LogCollector

    tracedsync.configure(exporters=[LogCollector()])
    first = lifecycle.pipeline()
    assert first is not None and first.thread.is_alive()
    tracedsync.configure(exporters=[LogCollector()])
    second = lifecycle.pipeline()
    assert second is not first
    assert not first.thread.is_alive()
    tracedsync.shutdown()
    assert not second.thread.is_alive()
    assert lifecycle.pipeline() is None
