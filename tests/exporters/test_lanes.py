"""One lane per exporter, end to end: a hung, refusing or failing collector next
to the jsonfile exporter, in a real program that exits through ``atexit``.

The program (a subprocess) records a known number of holds, then simply ends:
tracedsync's exit hook flushes and shuts down within ``shutdown_timeout_ms``.
An ``atexit`` hook registered before tracedsync's own (so it runs after it)
prints the record counts. The jsonfile files must hold exactly what a
jsonfile-only run writes, whatever the OTLP exporter's collector does.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.otlp_proto import parse_metrics_line, parse_trace_line
from tests.receivers import HOST, HttpReceiver, HungServer

#: Holds the program records (hold_threshold_ms=0: one record each).
HOLDS = 3000
SHUTDOWN_TIMEOUT_MS = 2000

APP = (
    textwrap.dedent(
        """
    import atexit, json, sys, time

    def report():
        # Registered before tracedsync's exit hook, so it runs after it.
        from tracedsync import records
        from tracedsync.exporters import lanes
        acc = records.accounting
        print("COUNTS " + json.dumps({
            "produced": acc.produced, "dropped": acc.dropped,
            "exporters": lanes.record_totals(), "at": time.monotonic(),
        }), flush=True)

    atexit.register(report)

    import tracedsync
    tracedsync.configure(
        exporters=sys.argv[1].split(","), output_dir=sys.argv[2],
        hold_threshold_ms=0, max_spans_per_second=0, shutdown_timeout_ms=TIMEOUT,
    )
    lock = tracedsync.Lock(name="work")
    for i in range(HOLDS):
        with lock:
            pass
        if i % 500 == 499:
            time.sleep(0.05)  # several pipeline cycles: several batches
    print("END", time.monotonic(), flush=True)
    """
    )
    .replace("TIMEOUT", str(SHUTDOWN_TIMEOUT_MS))
    .replace("HOLDS", str(HOLDS))
)


def _env(endpoint: str | None, protocol: str, timeout_s: float) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEDSYNC_", "OTEL_")) and "proxy" not in k.lower()
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if endpoint is not None:
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_TIMEOUT=f"{timeout_s:g}",
            OTEL_EXPORTER_OTLP_INSECURE="true",
        )
    return env


class Outcome:
    """What one run of the program left: its counts, timings, files, stderr."""

    def __init__(self, result: subprocess.CompletedProcess[str], out: Path, ended: float) -> None:
        assert result.returncode == 0, result.stderr
        self.stderr = result.stderr
        lines = result.stdout.splitlines()
        self.end = float(next(line for line in lines if line.startswith("END ")).split()[1])
        self.counts: dict[str, Any] = json.loads(
            next(line for line in lines if line.startswith("COUNTS "))[len("COUNTS ") :]
        )
        self.exited = ended
        self.out = out

    def files(self, kind: str) -> list[str]:
        return sorted(glob.glob(str(self.out / f"{kind}-*.jsonl")))

    def lines(self, kind: str) -> list[str]:
        out = []
        for path in self.files(kind):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            assert not text or text.endswith("\n"), f"{path} ends in a partial line"
            out.extend(text.splitlines())
        return out

    def spans_of_work(self) -> int:
        n = 0
        for line in self.lines("spans"):
            request = parse_trace_line(line)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    n += sum(
                        1
                        for s in ss.spans
                        if any(
                            kv.key == "sync.name" and kv.value.string_value == "work"
                            for kv in s.attributes
                        )
                    )
        return n

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in map(json.loads, self.lines("logs")) if e.get("event") == name]


def _run(tmp_path: Path, exporters: str, env: dict[str, str]) -> Outcome:
    script = tmp_path / "app.py"
    script.write_text(APP)
    out = tmp_path / f"out-{exporters.replace(',', '-')}"
    result = subprocess.run(
        [sys.executable, str(script), exporters, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return Outcome(result, out, time.monotonic())


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The reference: the same program with the jsonfile exporter alone."""
    return _run(tmp_path_factory.mktemp("alone"), "jsonfile", _env(None, "", 0))


@pytest.fixture(params=["hung-grpc", "hung-http", "http-503"])
def collector(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str, float]]:
    """(kind, endpoint, protocol, OTLP timeout): a collector that accepts TCP and
    never answers (its timeout far beyond the shutdown timeout), or one answering
    every export with HTTP 503 (retries within a 1 s timeout)."""
    if request.param == "http-503":
        receiver = HttpReceiver()
        receiver.refusing = True
        receiver.start()
        try:
            yield request.param, receiver.endpoint, "http/protobuf", 1.0
        finally:
            receiver.stop()
        assert receiver.received.refused["traces"] >= 1
        assert receiver.received.traces == []
    else:
        protocol = "grpc" if request.param == "hung-grpc" else "http/protobuf"
        with HungServer() as server:
            yield request.param, server.endpoint, protocol, 30.0
            assert server.accepted() >= 1


def test_a_bad_collector_costs_the_jsonfile_exporter_nothing(
    tmp_path: Path, alone: Outcome, collector: tuple[str, str, str, float]
) -> None:
    """`otlp,jsonfile` with a collector that hangs or refuses: jsonfile gets every
    record a jsonfile-only run gets (spans and events, whole lines), the metrics
    file is written, the process ends within the shutdown timeout of its end, and
    per exporter offered = exported + lane_dropped + failed = records taken, exactly;
    the OTLP exporter's loss is said in words that name the cause."""
    kind, endpoint, protocol, otlp_timeout = collector
    run = _run(tmp_path, "otlp,jsonfile", _env(endpoint, protocol, otlp_timeout))

    assert alone.spans_of_work() == HOLDS
    assert run.spans_of_work() == alone.spans_of_work()
    work_events = [e for e in run.events("long_hold") if e["sync.name"] == "work"]
    assert len(work_events) == HOLDS
    metrics = run.lines("metrics")
    assert metrics and alone.lines("metrics")
    for line in metrics:
        parse_metrics_line(line)
    # The last metrics line, written after jsonfile's lane drained, has its
    # final counts.
    assert _telemetry(metrics[-1], "jsonfile") == {
        "offered": HOLDS,
        "exported": HOLDS,
        "lane_dropped": 0,
        "failed": 0,
    }

    # The exit hook ran within the shutdown timeout; the interpreter then ended.
    assert run.counts["at"] - run.end < SHUTDOWN_TIMEOUT_MS / 1000 + 1.0, run.stderr
    assert run.exited - run.end < SHUTDOWN_TIMEOUT_MS / 1000 + 3.0, run.stderr

    counts = run.counts
    taken = counts["produced"] - counts["dropped"]
    assert counts["dropped"] == 0 and taken == HOLDS
    traces = f"otlp-traces-{protocol}"
    assert set(counts["exporters"]) == {"jsonfile", traces}
    for name, c in counts["exporters"].items():
        assert c["offered"] == taken, (name, c)
        assert c["offered"] == c["exported"] + c["lane_dropped"] + c["failed"], (name, c)
    assert counts["exporters"]["jsonfile"]["exported"] == HOLDS
    assert counts["exporters"][traces]["exported"] == 0

    err = run.stderr
    assert "Exporter already shutdown" not in err
    if kind == "http-503":
        assert f"exporter {traces} failed: ExportError" in err
        assert "Service Unavailable" in err
    else:
        # Still waiting for an answer at shutdown: cut short (gRPC cancels the
        # call) or given up (an HTTP request cannot be cancelled); said once,
        # naming the collector.
        (line,) = [line for line in err.splitlines() if f"exporter {traces} " in line]
        assert (
            "did not finish within the shutdown timeout of 2 s" in line
            and "records it held count as failed" in line
        ) or "when shutdown cut it short" in line, line
        assert endpoint.rsplit(":", 1)[1] in line
    for line in err.splitlines():
        assert line.startswith("tracedsync: "), line
    jsonfile_failures = [e for e in run.events("exporter_failed") if e["exporter"] == "jsonfile"]
    assert jsonfile_failures == []


def _telemetry(line: str, exporter: str) -> dict[str, int]:
    """The tracedsync.telemetry.* counts of ``exporter`` in one metrics line."""
    out = {}
    for rm in json.loads(line)["resourceMetrics"]:
        for sm in rm["scopeMetrics"]:
            for metric in sm["metrics"]:
                name = metric["name"]
                if not name.startswith("tracedsync.telemetry.") or "sum" not in metric:
                    continue
                for point in metric["sum"]["dataPoints"]:
                    attrs = {a["key"]: a["value"].get("stringValue") for a in point["attributes"]}
                    if attrs.get("exporter") == exporter:
                        out[name.rsplit(".", 1)[1]] = int(point["asInt"])
    return out


def test_hung_server_accepts_and_never_answers() -> None:
    """The hung collector used above really accepts the connection and sends nothing."""
    import socket

    with HungServer() as server:
        conn = socket.create_connection((HOST, server.port), timeout=5)
        try:
            conn.settimeout(0.3)
            conn.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            with pytest.raises(socket.timeout):
                conn.recv(1)
        finally:
            conn.close()
        deadline = time.monotonic() + 5
        while server.accepted() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.accepted() == 1


FORK_APP = textwrap.dedent(
    """
    import json, os, sys, urllib.request
    import tracedsync
    from tracedsync import lifecycle
    from tracedsync.exporters import lanes

    def holds(n):
        lock = tracedsync.Lock(name="forked")
        for _ in range(n):
            with lock:
                pass
        assert tracedsync.flush(30)

    def port():
        (lane,) = [l for l in lifecycle.pipeline().lanes if l.name == "prometheus"]
        return lane.exporter.port

    def scrape(p):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return opener.open(f"http://127.0.0.1:{p}/metrics", timeout=10).read().decode()

    tracedsync.configure(exporters=["jsonfile", "prometheus"], output_dir=sys.argv[1],
                         hold_threshold_ms=0, max_spans_per_second=0)
    holds(5)
    parent_port = port()
    pid = os.fork()
    if pid == 0:
        holds(3)
        child_port = port()
        ok = child_port != parent_port and "tracedsync_acquisitions_total" in scrape(child_port)
        print("CHILD " + json.dumps({"jsonfile": lanes.record_totals()["jsonfile"],
                                     "port": child_port, "ok": ok}), flush=True)
        tracedsync.shutdown()
        os._exit(0)
    os.waitpid(pid, 0)
    assert "tracedsync_acquisitions_total" in scrape(parent_port)
    holds(1)
    print("PARENT " + json.dumps({"jsonfile": lanes.record_totals()["jsonfile"],
                                  "port": parent_port}), flush=True)
    """
)


def test_a_fork_child_counts_from_zero_and_serves_its_own_port(tmp_path: Path) -> None:
    """After fork, the child's lanes count only the child's records, its prometheus
    exporter serves on a port of its own (the parent's keeps answering), and the
    parent's counts go on."""
    script = tmp_path / "app.py"
    script.write_text(FORK_APP)
    env = _env(None, "", 0)
    env["TRACEDSYNC_PROMETHEUS_PORT"] = "0"
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    child = json.loads(next(x for x in lines if x.startswith("CHILD "))[6:])
    parent = json.loads(next(x for x in lines if x.startswith("PARENT "))[7:])
    assert child["ok"], child
    assert child["jsonfile"] == {"offered": 3, "exported": 3, "lane_dropped": 0, "failed": 0}
    assert parent["jsonfile"] == {"offered": 6, "exported": 6, "lane_dropped": 0, "failed": 0}
    assert child["port"] != parent["port"]
