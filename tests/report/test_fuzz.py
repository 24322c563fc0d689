"""`tracedsync report` fuzzed: any input gives a report, a warning or one clear
error line — never a traceback (issue 9)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracedsync import cli


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def valid_spans_request() -> dict[str, Any]:
    attrs = {
        "sync.kind": "lock",
        "sync.name": "pool_lock (app.py:3)",
        "sync.id": 1,
        "sync.outcome": "acquired",
        "thread.id": 7,
        "thread.name": "worker-1",
        "code.function.name": "work",
        "code.file.path": "/srv/app.py",
        "code.line.number": 9,
        "sync.holder.thread.name": "worker-2",
        "sync.holder.site": "app.py:12",
    }
    extra = [
        {"key": "sync.wait.handoff", "value": {"doubleValue": 0.000125}},
        {
            "key": "sync.stack",
            "value": {
                "arrayValue": {
                    "values": [
                        {"stringValue": "app.py:9 in work"},
                        {"stringValue": "app.py:30 in main"},
                    ]
                }
            },
        },
    ]
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [_attr("process.pid", 42), _attr("tracedsync.run_id", "r1")]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "tracedsync", "version": "0.1.0"},
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "lock.wait",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000050000000",
                                "attributes": [_attr(k, v) for k, v in attrs.items()] + extra,
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "00f067aa0ba902b7",
                                    }
                                ],
                                "status": {},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def valid_metrics_request() -> dict[str, Any]:
    point = {
        "attributes": [_attr("sync.kind", "lock"), _attr("sync.name", "pool_lock (app.py:3)")],
        "startTimeUnixNano": "1700000000000000000",
        "timeUnixNano": "1700000001000000000",
    }
    return {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [_attr("process.pid", 42), _attr("tracedsync.run_id", "r1")]
                },
                "scopeMetrics": [
                    {
                        "scope": {"name": "tracedsync"},
                        "metrics": [
                            {
                                "name": "tracedsync.acquisitions",
                                "sum": {
                                    "dataPoints": [dict(point, asInt="10")],
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                },
                            },
                            {
                                "name": "tracedsync.wait.duration",
                                "histogram": {
                                    "dataPoints": [
                                        dict(
                                            point,
                                            count="10",
                                            sum=0.5,
                                            bucketCounts=["5", "5"],
                                            explicitBounds=[0.001],
                                            max=0.2,
                                        )
                                    ],
                                    "aggregationTemporality": 2,
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def run_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, *extra: str) -> int:
    out = tmp_path / f"out.{fmt}"
    args = ["report", str(tmp_path), "--format", fmt, *extra]
    if fmt in ("html", "perfetto", "pprof"):
        args += ["-o", str(out)]
    code = cli.main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code in (0, 2), (code, captured.err)
    if code == 2:
        lines = [
            line
            for line in captured.err.splitlines()
            if not line.startswith("tracedsync report: warning")
        ]
        assert len(lines) == 1, captured.err
        assert str(tmp_path) in lines[0]
    return code


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FORMATS = st.sampled_from(["table", "json", "html", "perfetto", "pprof", "folded"])


@FUZZ
@given(data=st.data(), fmt=FORMATS, which=st.sampled_from(["spans", "metrics"]))
def test_wrong_types_in_every_field(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    data: st.DataObject,
    fmt: str,
    which: str,
) -> None:
    """Any field of a valid request replaced by any JSON value: a report or one
    error line naming file and line, never a traceback."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    doc = valid_spans_request() if which == "spans" else valid_metrics_request()
    path = data.draw(st.sampled_from(_paths(doc)))
    bad = _replace(doc, path, data.draw(json_values))
    good = valid_spans_request() if which == "spans" else valid_metrics_request()
    lines = [json.dumps(good), json.dumps(bad), json.dumps(good)]
    (tmp_path / f"{which}-r1-42.jsonl").write_text("\n".join(lines) + "\n")
    run_report(tmp_path, capsys, fmt)


@FUZZ
@given(
    blob=st.binary(max_size=2000), fmt=FORMATS, kind=st.sampled_from(["spans", "metrics", "logs"])
)
def test_random_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    blob: bytes,
    fmt: str,
    kind: str,
) -> None:
    """Random bytes in any file: one clear error (or an empty report), never a traceback."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    (tmp_path / f"{kind}-r1-42.jsonl").write_bytes(blob + b"\n")
    run_report(tmp_path, capsys, fmt)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int) -> None:
    """Deeply nested JSON (past the parser's recursion limit too) is one clear error."""
    (tmp_path / "spans-r1-42.jsonl").write_text("[" * depth + "]" * depth + "\n")
    assert run_report(tmp_path, capsys, "table") == 2


def test_huge_line_is_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line over the cap is refused without reading it whole."""
    (tmp_path / "spans-r1-42.jsonl").write_text('{"resourceSpans": [' + " " * 5000 + "]}\n")
    assert run_report(tmp_path, capsys, "table", "--max-line-bytes", "1024") == 2
