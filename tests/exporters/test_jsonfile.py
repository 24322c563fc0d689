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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.helpers import Contention
from tests.otlp_proto import parse_metrics_line, parse_trace_line
from tracedsync.testing import run_threads


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


def test_planted_link_and_foreign_file_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a shared (1777) output directory, a symlink planted at the spans file's
    name and a file someone else left at the logs file's name are left alone, with
    one warning each; fresh names (0o600) get the telemetry, and the victim file
    keeps its content and mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    monkeypatch.setenv("TRACEDSYNC_RUN_ID", "sharedrun")
    pid = os.getpid()
    os.symlink(victim, shared / f"spans-sharedrun-{pid}.jsonl")
    foreign = shared / f"logs-sharedrun-{pid}.jsonl"
    foreign.write_text("someone else's\n")
    tracedsync.configure(exporters=["jsonfile"], output_dir=str(shared))
    _contended_workload()
    assert tracedsync.flush(10)
    tracedsync.shutdown()

    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert foreign.read_text() == "someone else's\n"
    err = capsys.readouterr().err.splitlines()
    refusals = [line for line in err if "was not created by this process" in line]
    assert len(refusals) == 2, err
    spans_file = shared / f"spans-sharedrun-{pid}.1.jsonl"
    logs_file = shared / f"logs-sharedrun-{pid}.1.jsonl"
    assert any(str(spans_file) in line for line in refusals)
    for path in (spans_file, logs_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not path.is_symlink()
    names = sorted(s.name for s in _span_list(_lines([str(spans_file)])))
    assert names == ["lock.hold", "lock.wait"]
    events = [json.loads(line) for line in _lines([str(logs_file)])]
    assert sorted(e["event"] for e in events) == ["long_hold", "long_wait"]


def _span_list(lines: list[str]) -> list[Any]:
    return [
        span
        for line in lines
        for rs in parse_trace_line(line).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def test_a_new_configuration_appends_to_its_own_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """configure() again in the same process (same run, same pid) appends to the
    files this process created, without a warning."""
    for _ in range(2):
        tracedsync.configure(exporters=["jsonfile"], output_dir=str(tmp_path))
        _contended_workload()
        assert tracedsync.flush(10)
        tracedsync.shutdown()
    (spans_file,) = _files(tmp_path, "spans")
    assert len(_span_list(_lines([spans_file]))) == 4
    assert "was not created by this process" not in capsys.readouterr().err


DISK_FULL_APP = """
import glob, json, os, resource, signal, sys, time
import tracedsync
from tracedsync import recorder, records
from tracedsync.exporters import lanes

out, how = sys.argv[1], sys.argv[2]
tracedsync.configure(exporters=["jsonfile"], output_dir=out, hold_threshold_ms=0,
                     max_spans_per_second=0, buffer_size=100000)

def holds(name, n):
    lock = tracedsync.Lock(name=name)
    for _ in range(n):
        with lock:
            pass
    assert tracedsync.flush(30)

def step(word):
    print(word, flush=True)
    assert sys.stdin.readline().strip() == "go"

holds("before", 200)
if how == "rlimit":
    # The spans file may grow 4 KiB more: the next batch is cut short (EFBIG).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    (spans,) = glob.glob(os.path.join(out, "spans-*.jsonl"))
    limit = os.path.getsize(spans) + 4096
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
else:
    step("fill")  # the test fills the file system, leaving a few KiB
holds("while_full", 2000)
if how == "rlimit":
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
else:
    step("free")  # the test frees the space
holds("after", 200)
tracedsync.shutdown()
acc = records.accounting
print("COUNTS " + json.dumps({"produced": acc.produced, "dropped": acc.dropped,
                              "jsonfile": lanes.record_totals()["jsonfile"]}), flush=True)
"""


@pytest.fixture(params=["rlimit", "tmpfs"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An output directory where writes will fail part way: under RLIMIT_FSIZE
    (EFBIG, anywhere) or on a real 4 MiB tmpfs that the test fills (ENOSPC; needs
    the right to mount, as root has here)."""
    if request.param == "rlimit":
        yield "rlimit", tmp_path / "out"
        return
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield "tmpfs", mount / "out"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_cuts_back_to_whole_lines_counts_and_resumes(
    small_disk: tuple[str, Path],
) -> None:
    """A write that fails part way (ENOSPC on a full file system, EFBIG past
    RLIMIT_FSIZE) is cut back to the last whole line: every file ends in a whole
    line and parses; the lost batches count as failed (offered = exported + failed
    exactly); exporter_failed is logged once (written when space returns) and said
    once on stderr; writing resumes in the same files once space is back."""
    how, out = small_disk
    script = out.parent / "app.py"
    script.write_text(DISK_FULL_APP)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")},
    )
    assert proc.stdin is not None and proc.stdout is not None
    filler = out.parent / "filler"
    try:
        if how == "tmpfs":
            assert proc.stdout.readline().strip() == "fill"
            _fill(filler, leave=8192)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "free"
            filler.unlink()
            proc.stdin.write("go\n")
            proc.stdin.flush()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    counts = json.loads(next(x for x in stdout.splitlines() if x.startswith("COUNTS "))[7:])
    c = counts["jsonfile"]
    taken = counts["produced"] - counts["dropped"]
    assert counts["dropped"] == 0 and taken == 2400
    assert c["offered"] == taken == c["exported"] + c["lane_dropped"] + c["failed"]
    assert c["failed"] > 0 and c["lane_dropped"] == 0

    for kind in ("spans", "logs", "metrics"):
        for path in _files(out, kind):
            with open(path, "rb") as f:
                data = f.read()
            assert not data or data.endswith(b"\n"), f"{path} ends in a partial line"
    spans = _span_list(_lines(_files(out, "spans")))
    by_name: dict[str, int] = {}
    for span in spans:
        attrs = {kv.key: kv.value.string_value for kv in span.attributes}
        by_name[attrs["sync.name"]] = by_name.get(attrs["sync.name"], 0) + 1
    assert by_name.get("before") == 200
    assert by_name.get("after") == 200  # written again once space returned
    assert by_name.get("while_full", 0) < 2000
    for line in _lines(_files(out, "metrics")):
        parse_metrics_line(line)
    events = [json.loads(line) for line in _lines(_files(out, "logs"))]
    failures = [e for e in events if e["event"] == "exporter_failed"]
    assert len(failures) == 1, failures
    reason = "No space left on device" if how == "tmpfs" else "File too large"
    assert reason in failures[0]["detail"]
    assert stderr.count("exporter jsonfile failed: OSError") == 1, stderr


def _fill(path: Path, leave: int) -> None:
    """Fill the file system holding ``path`` but ``leave`` bytes (about)."""
    chunk = b"\0" * 65536
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    size = path.stat().st_size
    os.truncate(path, max(0, size - leave))


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
