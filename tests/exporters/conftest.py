"""Fixtures for exporter tests: real OTLP receivers (see tests/receivers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tracedsync
from tests.receivers import RECEIVERS, GrpcReceiver, HttpReceiver, Receiver


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
