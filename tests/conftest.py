"""Fixtures: a clean tracedsync per test, real exporters."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracedsync import _stdlib
from tracedsync.testing import LogCollector, reset


@pytest.fixture(autouse=True)
def _clean_tracedsync() -> Iterator[None]:
    """Every test starts unconfigured and must leave ``threading`` unpatched."""
    reset()
    yield
    reset()
    for name, original in _stdlib.ORIGINALS.items():
        assert getattr(threading, name) is original, f"threading.{name} left patched"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def logs() -> LogCollector:
    return LogCollector()
