"""Every example runs both ways and its telemetry tells the story it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDSYNC_", "OTEL_"))}


def run_direct(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 30  # "under 10 s" on a quiet machine
    return result


def run_traced(
    tmp_path: Path,
    name: str,
    *args: str,
    options: Sequence[str] = (),
    timeout: float = 60,
) -> tuple[str, dict[str, list[Any]]]:
    """``tracedsync run --output-dir tmp_path/out [options] -- python examples/name args``:
    its stdout and what it wrote."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracedsync",
            "run",
            "--output-dir",
            str(out),
            *options,
            "--",
            sys.executable,
            str(EXAMPLES / name),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, read_output(out)


def read_output(out: Path) -> dict[str, list[Any]]:
    spans, events = [], []
    for path in out.glob("spans-*.jsonl"):
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        span["attrs"] = {
                            a["key"]: next(iter(a["value"].values())) for a in span["attributes"]
                        }
                        spans.append(span)
    for path in out.glob("logs-*.jsonl"):
        events.extend(json.loads(line) for line in path.read_text().splitlines())
    return {"spans": spans, "events": events}


def named(output: dict[str, list[Any]], span_name: str, prefix: str = "") -> list[Any]:
    return [
        s
        for s in output["spans"]
        if s["name"] == span_name and s["attrs"]["sync.name"].startswith(prefix)
    ]


def test_counter(tmp_path: Path) -> None:
    """counter.py: the locked version is exact; lock.wait spans show the contention."""
    direct = run_direct("counter.py")
    assert "with a lock:    200000 of 200000 increments" in direct.stdout
    lost = int(direct.stdout.split(" lost)")[0].rsplit("(", 1)[1])
    assert lost > 0  # the race, made visible by a short switch interval
    assert contended(direct.stdout) > 0
    stdout, _ = run_traced(tmp_path, "counter.py")
    assert "with a lock:    200000 of 200000" in stdout
    # Contention is in the stats (every acquisition) and in the metrics file;
    # waits long enough to be spans are very likely but up to the scheduler.
    assert contended(stdout) > 0
    assert metric_total(tmp_path / "out", "tracedsync.contentions", "counter_lock") > 0


def test_counter_s_slowest_wait_is_kept_as_a_span(tmp_path: Path) -> None:
    """With thresholds 0 the span budget keeps the slowest waits of each
    second, not the first: the slowest lock.wait span is the counters'
    longest wait (counter.py prints it from tracedsync.stats()). Whether the
    lock is contended at all is up to the scheduler: up to three runs."""
    thresholds = ["--wait-threshold-ms", "0", "--hold-threshold-ms", "0"]
    for attempt in range(3):
        stdout, output = run_traced(
            tmp_path / f"attempt-{attempt}", "counter.py", options=thresholds, timeout=120
        )
        if contended(stdout):
            break
    else:
        pytest.fail("counter_lock was never contended in three runs")
    longest_ms = float(stdout.split("longest wait ")[1].split(" ms")[0])
    waits = named(output, "lock.wait", "counter_lock")
    assert waits
    slowest_ns = max(int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) for s in waits)
    assert abs(slowest_ns / 1e6 - longest_ms) <= 0.05  # printed to 0.1 ms


def contended(stdout: str) -> int:
    """The contended count from counter.py's last line."""
    return int(stdout.split(" acquisitions, ")[1].split(" contended")[0])


def metric_total(out: Path, metric: str, name_prefix: str) -> float:
    """The last exported value of ``metric`` for primitives named ``name_prefix...``."""
    total = 0.0
    for path in out.glob("metrics-*.jsonl"):
        request = json.loads(path.read_text().splitlines()[-1])
        for rm in request["resourceMetrics"]:
            for sm in rm["scopeMetrics"]:
                for m in sm["metrics"]:
                    if m["name"] != metric:
                        continue
                    for point in m["sum"]["dataPoints"]:
                        attrs = {a["key"]: a["value"]["stringValue"] for a in point["attributes"]}
                        if attrs["sync.name"].startswith(name_prefix):
                            total += float(point.get("asInt", point.get("asDouble", 0)))
    return total


def test_both_parts(tmp_path: Path) -> None:
    """both_parts.py: the self-deadlock is reported with both sites; RLock works."""
    direct = run_direct("both_parts.py")
    assert "self-deadlock suspected" in direct.stderr
    assert "with an RLock: ('first', 'second')" in direct.stdout
    _, output = run_traced(tmp_path, "both_parts.py")
    events = [e for e in output["events"] if e["event"] == "self_deadlock_suspected"]
    assert len(events) == 2
    assert events[0]["held_site"] == "both_parts.py:48"
    assert events[0]["site"] == "both_parts.py:32"
    assert events[0]["thread.name"] == "MainThread"
    (rlock_hold,) = named(output, "rlock.hold", "lock (both_parts.py:")
    assert int(rlock_hold["attrs"]["sync.rlock.depth"]) == 2


def test_connection_pool(tmp_path: Path) -> None:
    """connection_pool.py: semaphore waits show the queueing; over-release raises."""
    direct = run_direct("connection_pool.py")
    assert "ValueError: Semaphore released too many times" in direct.stdout
    assert "40 queries on 10 connections" in direct.stdout
    _, output = run_traced(tmp_path, "connection_pool.py")
    waits = named(output, "bounded_semaphore.wait", "semaphore (connection_pool.py:")
    assert len(waits) >= 20  # 30 of the 40 arrive to find the 10 connections taken
    assert {w["attrs"]["sync.outcome"] for w in waits} == {"acquired"}


def test_event_signal(tmp_path: Path) -> None:
    """event_signal.py: event.wait spans with outcomes set and timeout, by thread."""
    direct = run_direct("event_signal.py")
    assert "poller: timed out" in direct.stdout
    _, output = run_traced(tmp_path, "event_signal.py")
    outcomes = {
        (s["attrs"]["thread.name"], s["attrs"]["sync.outcome"])
        for s in named(output, "event.wait", "ready (event_signal.py:")
    }
    assert outcomes == {("blocker", "set"), ("poller", "timeout"), ("poller", "set")}


def test_web_service(tmp_path: Path) -> None:
    """web_service.py: lock waits are children of the request spans that waited."""
    direct = run_direct("web_service.py")
    assert "200 requests in" in direct.stdout and ", 0 failed" in direct.stdout
    ids_file = tmp_path / "ids.json"
    _, output = run_traced(tmp_path, "web_service.py", "--span-ids", str(ids_file))
    request_ids = set(json.loads(ids_file.read_text()))
    waits = named(output, "lock.wait", "cache_lock (web_service.py:")
    assert waits
    assert all(w.get("parentSpanId") in request_ids for w in waits)


def test_queue_pipeline(tmp_path: Path) -> None:
    """queue_pipeline.py: the queues' conditions are traced and named after queue.py."""
    direct = run_direct("queue_pipeline.py")
    assert "200 items processed" in direct.stdout
    _, output = run_traced(tmp_path, "queue_pipeline.py")
    queue_waits = [
        s
        for s in output["spans"]
        if s["name"] == "condition.wait"
        and s["attrs"]["sync.name"].split(" (")[0] in ("not_full", "not_empty")
    ]
    assert queue_waits


def test_deadlock(tmp_path: Path) -> None:
    """deadlock.py: the ABBA deadlock is detected and reported while it lasts."""
    direct = run_direct("deadlock.py")
    assert "deadlock between 2 threads" in direct.stderr
    _, output = run_traced(tmp_path, "deadlock.py")
    (event,) = [e for e in output["events"] if e["event"] == "deadlock_detected"]
    assert {t["thread.name"] for t in event["threads"]} == {"transfer_a_to_b", "transfer_b_to_a"}
    assert [s for s in output["spans"] if s["name"] == "tracedsync.deadlock"]


def test_config_reload(tmp_path: Path) -> None:
    """config_reload.py: the reloader's lock is contended; the pool waits on the queue."""
    direct = run_direct("config_reload.py")
    assert "served 400 requests" in direct.stdout
    _, output = run_traced(tmp_path, "config_reload.py")
    assert named(output, "lock.wait", "config_lock (config_reload.py:")
    assert named(output, "condition.wait", "not_empty (queue.py:")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_covered(name: str) -> None:
    """Each example in examples/ has its own test above."""
    assert f"test_{name[:-3]}" in globals()
