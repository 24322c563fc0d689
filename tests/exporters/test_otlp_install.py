"""install() with the OTLP exporter on: telemetry never traces itself."""

from __future__ import annotations

import os
import threading

import pytest

import tracedsync
from tests.receivers import Receiver, point_otlp_at
from tracedsync.testing import run_threads

#: Path fragments of code whose locks must never show up in tracedsync's spans.
INTERNALS = ("opentelemetry", "grpc", "urllib3", "requests", "google/protobuf", "structlog")

#: The installed package (a clone is called tracedsync too: compare whole paths).
PACKAGE_DIR = os.path.dirname(os.path.abspath(tracedsync.__file__)) + os.sep


def test_install_with_otlp_terminates_and_never_describes_sdk_locks(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of spans through the official OTLP exporter with threading patched:
    the workload ends, everything arrives, and no span is about a lock of the SDK,
    the exporter's transport or tracedsync itself."""
    point_otlp_at(monkeypatch, receiver)
    tracedsync.install(exporters=["otlp"], hold_threshold_ms=0, max_spans_per_second=0)
    try:
        lock = threading.Lock()
        start = threading.Barrier(4)

        def work() -> None:
            start.wait()
            for _ in range(1000):
                with lock:
                    pass

        run_threads(*[work] * 4, timeout=120)
        assert tracedsync.flush(60)
    finally:
        tracedsync.uninstall()
    spans = [span for _, _, span in receiver.received.spans()]
    assert len(spans) >= 4000
    for span in spans:
        attrs = {kv.key: kv.value for kv in span.attributes}
        path = attrs["code.file.path"].string_value if "code.file.path" in attrs else ""
        name = attrs["sync.name"].string_value
        assert not any(part in path or part in name for part in INTERNALS), (name, path)
        assert not path.startswith(PACKAGE_DIR), path  # no span is about tracedsync itself
    names = {kv.value.string_value for s in spans for kv in s.attributes if kv.key == "sync.name"}
    assert lock.name in names
