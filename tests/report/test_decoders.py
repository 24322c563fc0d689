"""The standard library's decoder and msgspec's typed one give the same report
(the stdlib path is the reference; ``tracedsync[fast]`` only makes it faster)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.report import files
from tests.report.test_fuzz import valid_spans_request
from tests.report.test_profiles import run_app
from tests.report.test_report import record, report
from tests.report.test_sections import deadlocked_run
from tracedsync.report.read import available_decoders

pytestmark = pytest.mark.skipif(
    "msgspec" not in available_decoders(), reason="msgspec not installed (tracedsync[fast])"
)


def both(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[tuple[int, str, str]]:
    out = []
    for decoder in ("stdlib", "msgspec"):
        monkeypatch.setenv("TRACEDSYNC_REPORT_DECODER", decoder)
        out.append(report(capsys, *args, "-f", "json"))
    return out


def both_profiles(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[list[tuple[int, str, str]]]:
    """The folded profiles (waiter and holder side) by each decoder."""
    out = []
    for decoder in ("stdlib", "msgspec"):
        monkeypatch.setenv("TRACEDSYNC_REPORT_DECODER", decoder)
        out.append(
            [
                report(capsys, *args, "-f", "folded", "--profile-side", side)
                for side in ("waiter", "holder")
            ]
        )
    return out


def test_same_report_on_real_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real jsonfile run, a deadlocked program and a program with stacks and
    hand-offs: identical documents and profiles."""
    run = record(tmp_path / "real")
    (tmp_path / "dl").mkdir()
    (tmp_path / "profile").mkdir()
    for path in (run.out, deadlocked_run(tmp_path / "dl"), run_app(tmp_path / "profile")):
        (a, b) = both(capsys, monkeypatch, str(path))
        assert a[0] == b[0] == 0
        assert json.loads(a[1]) == json.loads(b[1])
        (pa, pb) = both_profiles(capsys, monkeypatch, str(path))
        assert pa == pb and all(rc == 0 and text for rc, text, _ in pa)


def _variants() -> st.SearchStrategy[dict[str, Any]]:
    """A valid span with one attribute re-encoded another legal way, or broken."""
    keys = [
        "thread.name", "thread.id", "sync.outcome", "sync.holder.thread.name",
        "sync.holder.site", "code.line.number", "code.file.path", "sync.name", "sync.site",
        "sync.stack", "sync.wait.handoff", "sync.holder.released_before_wait",
    ]  # fmt: skip
    values = st.sampled_from(
        [
            {"intValue": 7},
            {"intValue": "7"},
            {"stringValue": "x" * 2000},
            {"stringValue": "w\u202eorker"},
            {"doubleValue": 1.5},
            {"doubleValue": -1.0},
            {"doubleValue": "0.25"},
            {"boolValue": True},
            {"boolValue": "true"},
            {"arrayValue": {"values": [{"stringValue": "a"}]}},
            {"arrayValue": {"values": [{"stringValue": "app.py:3 in f"}, {"intValue": "7"}]}},
            {"arrayValue": {"values": []}},
            {"arrayValue": "app.py:3 in f"},
            {},
            {"stringValue": None},
        ]
    )
    return st.builds(lambda k, v: (k, v), st.sampled_from(keys), values).map(_apply)


def _apply(change: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    doc = valid_spans_request()
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    key, value = change
    attrs = [a for a in span["attributes"] if a["key"] != key]
    attrs.append({"key": key, "value": copy.deepcopy(value)})
    span["attributes"] = attrs
    if key == "sync.site":
        span["attributes"] = [a for a in attrs if a["key"] != "code.file.path"] + [
            {"key": "code.file.path", "value": {"stringValue": "/srv/app.py"}}
        ]
    return doc


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=_variants())
def test_same_result_for_every_legal_or_broken_encoding(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    doc: dict[str, Any],
) -> None:
    """Re-encoded or broken attributes: the same document, or the same error line."""
    d = tmp_path_factory.mktemp("dec")
    good = json.dumps(valid_spans_request())
    files.write(d / "spans-r1-42.jsonl", [good, json.dumps(doc), good])
    (a, b) = both(capsys, monkeypatch, str(d))
    assert a[0] == b[0]
    if a[0] == 0:
        assert json.loads(a[1]) == json.loads(b[1])
        (pa, pb) = both_profiles(capsys, monkeypatch, str(d))
        assert pa == pb
    else:
        assert a[2] == b[2]
