"""The jsonfile exporter: OTLP JSON Lines that the protobuf schema accepts."""

from __future__ import annotations

import glob
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.conftest import run_threads
from tests.helpers import Contention
from tests.otlp_proto import parse_metrics_line, parse_trace_line
from tests.telemetry_counts import counted


def _files(directory: Path, kind: str) -> list[str]:
    return sorted(glob.glob(str(directory / f"{kind}-*.jsonl")))


def _lines(paths: list[str]) -> list[str]:
    out = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            out.extend(line for line in f.read().splitlines())
    return out


def _contended_workload() -> tracedsync.Lock:
    pool_lock = tracedsync.Lock()
    Contention(pool_lock).run()
    with pool_lock:
        pass
    return pool_lock


def test_files_are_per_process_private_and_parse_as_otlp(tmp_path: Path) -> None:
    """spans/metrics/logs files are named per run and pid, 0o600, and every line
    parses into the opentelemetry.proto messages."""
    cfg = tracedsync.configure(exporters=["jsonfile"], output_dir=str(tmp_path))
    _contended_workload()
    assert tracedsync.flush(10)
    pid = os.getpid()
    for kind in ("spans", "metrics", "logs"):
        (path,) = _files(tmp_path, kind)
        assert os.path.basename(path) == f"{kind}-{cfg.run_id}-{pid}.jsonl"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    spans = []
    for line in _lines(_files(tmp_path, "spans")):
        request = parse_trace_line(line)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                assert ss.scope.name == "tracedsync"
                spans.extend(ss.spans)
    names = sorted(s.name for s in spans)
    assert names == ["lock.hold", "lock.wait"]
    wait = next(s for s in spans if s.name == "lock.wait")
    hold = next(s for s in spans if s.name == "lock.hold")
    assert wait.kind == 1  # SPAN_KIND_INTERNAL
    assert wait.links[0].span_id == hold.span_id
    attrs = {kv.key: kv.value for kv in wait.attributes}
    assert attrs["sync.outcome"].string_value == "acquired"
    assert attrs["sync.id"].int_value > 0
    for line in _lines(_files(tmp_path, "metrics")):
        parse_metrics_line(line)
    events = [json.loads(line) for line in _lines(_files(tmp_path, "logs"))]
    assert sorted(e["event"] for e in events) == ["long_hold", "long_wait"]
    assert all(list(e)[:3] == ["timestamp", "level", "event"] for e in events)
    (wait_event,) = [e for e in events if e["event"] == "long_wait"]
    assert wait_event["span_id"] == f"{int.from_bytes(wait.span_id, 'big'):016x}"


def test_ids_are_hex_and_int64_are_strings(tmp_path: Path) -> None:
    """The raw JSON follows the OTLP file format: hex ids, int64 as decimal strings."""
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(tmp_path))
    _contended_workload()
    assert tracedsync.flush(10)
    request = json.loads(_lines(_files(tmp_path, "spans"))[0])
    span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
    assert len(span["spanId"]) == 16
    assert isinstance(span["startTimeUnixNano"], str) and span["startTimeUnixNano"].isdigit()
    assert span["kind"] == 1
    link_spans = [
        s for s in request["resourceSpans"][0]["scopeSpans"][0]["spans"] if s.get("links")
    ]
    assert len(link_spans[0]["links"][0]["spanId"]) == 16


def test_metrics_file_totals_equal_stats(tmp_path: Path) -> None:
    """The last metrics line holds the same totals tracedsync.stats() reports."""
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(tmp_path))
    lock = tracedsync.Lock()
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(500):
            with lock:
                pass

    run_threads(*[work] * 4)
    assert tracedsync.flush(10)
    request = json.loads(_lines(_files(tmp_path, "metrics"))[-1])
    metrics = {m["name"]: m for m in request["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]}

    def point(metric: str) -> dict[str, Any]:
        data = metrics[metric].get("sum") or metrics[metric].get("histogram")
        (p,) = [
            p
            for p in data["dataPoints"]
            if {"key": "sync.name", "value": {"stringValue": lock.name}} in p["attributes"]
        ]
        return p

    s = lock.statistics()
    assert int(point("tracedsync.acquisitions")["asInt"]) == s.acquisitions == 2000
    assert int(point("tracedsync.contentions")["asInt"]) == s.contentions
    assert point("tracedsync.wait.time")["asDouble"] == pytest.approx(s.wait_total)
    assert point("tracedsync.hold.time")["asDouble"] == pytest.approx(s.hold_total)
    hold = point("tracedsync.hold.duration")
    assert int(hold["count"]) == s.acquisitions
    assert [int(c) for c in hold["bucketCounts"]] == list(s.hold_histogram)
    assert hold["explicitBounds"] == list(tracedsync.HISTOGRAM_BOUNDS)
    assert metrics["tracedsync.hold.duration"]["histogram"]["aggregationTemporality"] == 2
    assert metrics["tracedsync.acquisitions"]["sum"]["isMonotonic"] is True


def test_rotation_keeps_every_line(tmp_path: Path) -> None:
    """Past TRACEDSYNC_FILE_MAX_BYTES a file is rotated; no span is lost."""
    tracedsync.configure(
        exporters=["jsonfile"],
        output_dir=str(tmp_path),
        hold_threshold_ms=0,
        max_spans_per_second=0,
        file_max_bytes=4096,
    )
    lock = tracedsync.Lock()
    for _ in range(20):
        for _ in range(10):
            with lock:
                pass
        assert tracedsync.flush(10)
    spans_files = _files(tmp_path, "spans")
    assert len(spans_files) > 3
    rotated = [f for f in spans_files if f.count(".") == 2]
    assert rotated, spans_files
    total = 0
    for line in _lines(spans_files):
        request = parse_trace_line(line)
        total += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    assert total == 200
    for path in spans_files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_unwritable_output_dir_is_one_line_and_app_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output directory that cannot be created: one warning line, app unaffected."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(blocker / "out"))
    lock = tracedsync.Lock()
    with lock:
        pass
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "cannot create output directory" in err[0] and str(blocker) in err[0]
    assert "jsonfile exporter is off" in err[0]


def test_disk_full_is_reported_once_and_app_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writes failing with ENOSPC (the file is /dev/full): exporter_failed once,
    records counted as failed, the program unaffected."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    cfg = tracedsync.configure(
        exporters=["jsonfile"], output_dir=str(tmp_path), hold_threshold_ms=0
    )
    os.symlink("/dev/full", tmp_path / f"spans-{cfg.run_id}-{os.getpid()}.jsonl")
    lock = tracedsync.Lock()
    with counted() as out:
        for _ in range(3):
            with lock:
                pass
            assert tracedsync.flush(10)
    assert out[0].of("jsonfile")["failed"] == 3
    err = capsys.readouterr().err
    assert err.count("exporter jsonfile failed: OSError") == 1
    events = [json.loads(line) for line in _lines(_files(tmp_path, "logs"))]
    failures = [e for e in events if e["event"] == "exporter_failed"]
    assert len(failures) == 1 and "No space left" in failures[0]["detail"]


def test_killed_process_leaves_whole_lines(tmp_path: Path) -> None:
    """SIGKILL mid-run: every line already written is complete JSON."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, tracedsync
            tracedsync.configure(exporters=["jsonfile"], output_dir={str(tmp_path / "out")!r},
                                 hold_threshold_ms=0, max_spans_per_second=0)
            lock = tracedsync.Lock()
            for i in range(20000):
                with lock:
                    pass
                if i == 10000:
                    tracedsync.flush()
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    assert result.returncode == -9
    lines = _lines(_files(tmp_path / "out", "spans"))
    assert lines
    for line in lines:
        parse_trace_line(line)
