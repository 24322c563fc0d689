"""The OpenTelemetry instrumentor: `opentelemetry-instrument` traces locks too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import tracedsync
from tracedsync import _stdlib

APP = """
import threading, time
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
[t.start() for t in ts]; [t.join() for t in ts]
print("lock type:", type(lock).__module__)
"""


def test_entry_point_is_registered() -> None:
    """tracedsync is registered under the opentelemetry_instrumentor entry point."""
    found = [
        ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "tracedsync"
    ]
    assert len(found) == 1
    from tracedsync.instrumentation import TracedSyncInstrumentor

    assert found[0].load() is TracedSyncInstrumentor


def test_instrument_and_uninstrument_in_process() -> None:
    """instrument() installs with the given provider; uninstrument() restores threading."""
    from opentelemetry.sdk.trace import TracerProvider

    from tracedsync.instrumentation import TracedSyncInstrumentor

    provider = TracerProvider()
    instrumentor = TracedSyncInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert tracedsync.installed()
        assert tracedsync.lifecycle.active().tracer_provider is provider
    finally:
        instrumentor.uninstrument()
    assert not tracedsync.installed()
    assert __import__("threading").Lock is _stdlib.Lock


def test_opentelemetry_instrument_sends_lock_spans_to_the_distro_provider(tmp_path: Path) -> None:
    """Under `opentelemetry-instrument` (with the distro), lock spans go through the
    SDK the distro configured (here its console exporter)."""
    exe = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("opentelemetry-instrumentation is not installed")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDSYNC_", "OTEL_"))}
    env.update(
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="instrumented-app",
    )
    result = subprocess.run(
        [exe, sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "lock type: tracedsync" in result.stdout
    decoder = json.JSONDecoder()
    text = result.stdout[result.stdout.index("{") :]
    spans = []
    while text.strip():
        text = text.lstrip()
        if not text.startswith("{"):
            text = text[text.find("{") :] if "{" in text else ""
            continue
        obj, end = decoder.raw_decode(text)
        spans.append(obj)
        text = text[end:]
    names = {s["name"] for s in spans}
    assert {"lock.wait", "lock.hold"} <= names
    wait = next(s for s in spans if s["name"] == "lock.wait")
    assert wait["attributes"]["thread.name"] == "waiter"
    assert wait["resource"]["attributes"]["service.name"] == "instrumented-app"
    assert wait["links"] and wait["links"][0]["context"]["span_id"] == next(
        s["context"]["span_id"] for s in spans if s["name"] == "lock.hold"
    )
