"""Under `opentelemetry-instrument`, tracedsync's metrics, histograms included,
reach the exporters the standard variables name: a real OTLP receiver, the
console, or nowhere (``none``), from a program that runs for under a second."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.receivers import Receiver

APP = textwrap.dedent(
    """
    import json, threading, time
    t0 = time.monotonic()
    lock = threading.Lock()
    held = threading.Event()

    def holder():
        with lock:
            held.set()
            time.sleep(0.05)

    def waiter():
        held.wait()
        with lock:
            pass

    ts = [threading.Thread(target=holder, name="holder"),
          threading.Thread(target=waiter, name="waiter")]
    [t.start() for t in ts]
    [t.join() for t in ts]
    import tracedsync
    (s,) = [s for s in tracedsync.stats() if s.name.startswith("lock (app.py")]
    print("STATS " + json.dumps({"name": s.name, "acquisitions": s.acquisitions,
                                 "contentions": s.contentions}), flush=True)
    print("RAN", time.monotonic() - t0, flush=True)
    """
)


def _instrumented(tmp_path: Path, env_extra: dict[str, str]) -> tuple[dict[str, Any], str, str]:
    exe = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("opentelemetry-instrumentation is not installed")
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEDSYNC_", "OTEL_")) and "proxy" not in k.lower()
    }
    env.update(
        NO_PROXY="127.0.0.1,localhost",
        OTEL_SERVICE_NAME="instrumented-app",
        OTEL_LOGS_EXPORTER="none",
        # Far beyond the program's life: only the export at exit can bring them.
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    env.update(env_extra)
    result = subprocess.run(
        [exe, sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    stats = json.loads(next(x for x in lines if x.startswith("STATS "))[6:])
    ran = float(next(x for x in lines if x.startswith("RAN ")).split()[1])
    assert ran < 1.0
    return stats, result.stdout, result.stderr


def _otlp_env(receiver: Receiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": receiver.protocol,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "10",
    }


def _tracedsync_metrics(receiver: Receiver) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for request in receiver.received.metrics:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                if sm.scope.name != "tracedsync":
                    continue
                for metric in sm.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    out.setdefault(metric.name, []).extend(data.data_points)
    return out


def _named(points: list[Any], name: str) -> list[Any]:
    return [
        p
        for p in points
        if any(kv.key == "sync.name" and kv.value.string_value == name for kv in p.attributes)
    ]


def test_histograms_arrive_over_otlp_from_a_short_program(
    tmp_path: Path, receiver: Receiver
) -> None:
    """OTEL_METRICS_EXPORTER=otlp: the wait and hold histograms and the sums of
    the program's lock arrive at the OTLP receiver (the export at exit), equal to
    its stats; its lock spans arrive through the distro's tracer provider."""
    stats, _, err = _instrumented(
        tmp_path,
        {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp", **_otlp_env(receiver)},
    )
    # Exported before the program exited (the receiver stores before answering).
    metrics = _tracedsync_metrics(receiver)
    name = stats["name"]
    (hold,) = _named(metrics["tracedsync.hold.duration"], name)[-1:]
    (wait,) = _named(metrics["tracedsync.wait.duration"], name)[-1:]
    (acquisitions,) = _named(metrics["tracedsync.acquisitions"], name)[-1:]
    assert hold.count == acquisitions.as_int == stats["acquisitions"] == 2
    assert wait.count == 2 and sum(wait.bucket_counts) == 2
    assert sum(hold.bucket_counts) == 2 and hold.sum >= 0.05
    (contentions,) = _named(metrics["tracedsync.contentions"], name)[-1:]
    assert contentions.as_int == stats["contentions"] == 1
    assert {s.name for _, _, s in receiver.received.spans()} >= {"lock.wait", "lock.hold"}
    assert "Traceback" not in err


def test_console_metrics_exporter_prints_the_histograms(tmp_path: Path) -> None:
    """OTEL_METRICS_EXPORTER=console: the SDK's console metric exporter prints
    tracedsync's histograms at exit."""
    stats, out, _ = _instrumented(
        tmp_path, {"OTEL_METRICS_EXPORTER": "console", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert '"name": "tracedsync.wait.duration"' in out
    assert '"name": "tracedsync.hold.duration"' in out
    assert stats["name"] in out


def test_none_sends_no_tracedsync_metric(tmp_path: Path, http_receiver: Receiver) -> None:
    """OTEL_METRICS_EXPORTER=none: spans still arrive, no tracedsync metric does."""
    _instrumented(
        tmp_path,
        {
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_TRACES_EXPORTER": "otlp",
            **_otlp_env(http_receiver),
        },
    )
    assert http_receiver.received.traces
    assert _tracedsync_metrics(http_receiver) == {}
