"""The resource: read from the OTEL_* variables by tracedsync (no SDK), and the
SDK exporters' resource made from it."""

from __future__ import annotations

import os
import sys

import pytest
from opentelemetry.sdk.resources import OTELResourceDetector

from tracedsync.exporters.sdk import sdk_resource
from tracedsync.pipeline import build_resource

TRICKY = " k1 = v%201 ,k2=a=b,k3=%2C%3D,k4=,deployment.environment=prod"


def test_the_variables_read_as_the_sdk_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", TRICKY)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    ours = build_resource("run1").attributes
    sdk = dict(OTELResourceDetector().detect().attributes)
    assert {k: v for k, v in ours.items() if k in sdk} == sdk
    assert set(ours) - set(sdk) == {"process.pid", "tracedsync.run_id"}
    assert ours["process.pid"] == os.getpid()
    assert ours["tracedsync.run_id"] == "run1"


def test_a_pair_without_equals_is_named_and_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    attrs = build_resource("r", {"OTEL_RESOURCE_ATTRIBUTES": "a=1,oops,b=2"}).attributes
    assert attrs["a"] == "1" and attrs["b"] == "2" and "oops" not in attrs
    err = capsys.readouterr().err
    assert "OTEL_RESOURCE_ATTRIBUTES: 'oops' is not key=value" in err


def test_service_name_default() -> None:
    resource = build_resource("r", {})
    name = f"unknown_service:{os.path.basename(sys.executable)}"
    assert resource.attributes["service.name"] == name
    assert resource.defaulted == {"service.name"}
    assert build_resource("r", {"OTEL_SERVICE_NAME": "x"}).defaulted == frozenset()


def test_the_sdk_resource_is_made_from_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's attributes and detectors under ours; the variables are read
    once, by tracedsync: the SDK's own detector of them is left out."""
    ours = build_resource("r", {"OTEL_RESOURCE_ATTRIBUTES": "a=1", "OTEL_SERVICE_NAME": "svc"})
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "a=2,b=3")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "other")
    attrs = sdk_resource(ours).attributes
    assert attrs["a"] == "1" and "b" not in attrs
    assert attrs["service.name"] == "svc"
    assert attrs["telemetry.sdk.language"] == "python"
    assert attrs["tracedsync.run_id"] == "r"
    assert sdk_resource(ours) is sdk_resource(ours)
