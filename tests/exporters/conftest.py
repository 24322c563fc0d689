"""Fixtures for exporter tests: real OTLP receivers, and the environment that points at them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tracedsync
from tests.receivers import RECEIVERS, GrpcReceiver, HttpReceiver, Receiver

#: Signal-specific variables that would override the generic ones we set.
_OVERRIDES = [
    f"OTEL_EXPORTER_OTLP_{signal}_{what}"
    for signal in ("TRACES", "METRICS", "LOGS")
    for what in (
        "ENDPOINT",
        "PROTOCOL",
        "TIMEOUT",
        "INSECURE",
        "HEADERS",
        "COMPRESSION",
        "CERTIFICATE",
    )
] + ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_RESOURCE_ATTRIBUTES"]


def point_otlp_at(
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,
    *,
    timeout_s: float = 10.0,
    service: str = "tracedsync-tests",
) -> None:
    """Set the standard OTLP variables so ``exporters=["otlp"]`` talks to ``receiver``.

    The official exporters read them when they are built, in ``configure()``.
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` is in seconds for the Python exporters.
    """
    for name in _OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    # Local receivers are reached directly, whatever proxy the machine sets
    # (requests and grpc both honour these).
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", receiver.protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", f"{timeout_s:g}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", service)
    if receiver.protocol == "grpc":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    else:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_INSECURE", raising=False)


def _serve(receiver: Receiver) -> Iterator[Receiver]:
    receiver.start()
    try:
        yield receiver
    finally:
        # Exporters pointing here flush and close before the collector goes.
        tracedsync.shutdown()
        receiver.stop()
        assert not receiver.threads(), f"receiver threads left running: {receiver.threads()}"


@pytest.fixture
def grpc_receiver() -> Iterator[Receiver]:
    """An OTLP/gRPC receiver on 127.0.0.1, port chosen by the system."""
    yield from _serve(GrpcReceiver())


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1, port chosen by the system."""
    yield from _serve(HttpReceiver())


@pytest.fixture(params=list(RECEIVERS), ids=["grpc", "http"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """Each receiver in turn: the test runs once over gRPC, once over HTTP/protobuf."""
    yield from _serve(RECEIVERS[request.param]())
