"""Shared fixtures: a clean tracedsync per test, real exporters, thread helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tracedsync import _stdlib, recorder
from tracedsync.exporters import Exporter


@pytest.fixture(autouse=True)
def _clean_tracedsync() -> Iterator[None]:
    """Every test starts unconfigured and must leave ``threading`` unpatched."""
    tracedsync.shutdown()
    recorder.reset_stats()
    yield
    tracedsync.shutdown()
    for name, original in _stdlib.ORIGINALS.items():
        assert getattr(threading, name) is original, f"threading.{name} left patched"


class LogCollector(Exporter):
    """An exporter keeping the log events it receives."""

    name = "collector"
    wants_logs = True

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def export_logs(self, events: Any) -> None:
        self.events.extend(events)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def logs() -> LogCollector:
    return LogCollector()


def run_threads(
    *targets: Callable[[], Any], timeout: float = 30.0, names: list[str] | None = None
) -> None:
    """Start one thread per target, join each with a timeout, assert all ended."""
    threads = [
        threading.Thread(target=t, name=(names[i] if names else None), daemon=True)
        for i, t in enumerate(targets)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {timeout}s: {alive}"
