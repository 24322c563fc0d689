"""The prometheus exporter: scraped over real HTTP, and by Debian's real Prometheus.

The end-to-end test runs ``tracedsync run --exporters prometheus,jsonfile`` on
a program that keeps two threads contending for a lock and starts a traced
child doing the same; a real ``prometheus`` (its own data directory and a free
port) finds both through the ``file_sd`` targets file, scrapes them, and
answers the queries of the Grafana dashboard shipped in ``dashboards/``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.helpers import Contention
from tests.otlp_proto import parse_trace_line
from tracedsync import records
from tracedsync.exporters import dashboard, prometheus

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, accept: str | None = None, timeout: float = 10.0) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return str(response.read().decode("utf-8"))


def _scrape(port: int, openmetrics: bool = False) -> str:
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else None
    return _get(f"http://127.0.0.1:{port}/metrics", accept)


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float, str]]:
    """(labels, value, rest of line) of the samples of series ``name``."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)(.*)$", line)
        if not match or match.group(1) != name:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', match.group(2) or ""))
        out.append((labels, float(match.group(3)), match.group(4)))
    return out


@pytest.fixture
def prom_port(monkeypatch: pytest.MonkeyPatch) -> int:
    port = _free_port()
    monkeypatch.setenv("TRACEDSYNC_PROMETHEUS_PORT", str(port))
    return port


def test_metrics_are_served_with_prometheus_names(tmp_path: Path, prom_port: int) -> None:
    """/metrics on 127.0.0.1 serves the counters (``_total``), seconds and the
    wait/hold histograms (cumulative ``le`` buckets, ``+Inf`` = count) by sync_kind
    and sync_name, equal to tracedsync.stats(); in OpenMetrics, a wait bucket
    carries the waiting span's trace and span id as exemplar."""
    tracedsync.configure(exporters=["prometheus", "jsonfile"], output_dir=str(tmp_path))
    assert "tracedsync-prometheus" in {t.name for t in threading.enumerate()}
    pool_lock = tracedsync.Lock(name="pool_lock")
    Contention(pool_lock).run()
    assert tracedsync.flush(10)
    text = _scrape(prom_port)
    s = pool_lock.statistics()
    ours = {"sync_kind": "lock", "sync_name": "pool_lock"}
    for name, expected in (
        ("tracedsync_acquisitions_total", s.acquisitions),
        ("tracedsync_contentions_total", s.contentions),
        ("tracedsync_timeouts_total", 0),
    ):
        assert [v for labels, v, _ in _samples(text, name) if labels == ours] == [expected], name
    (wait_total,) = [
        v for lb, v, _ in _samples(text, "tracedsync_wait_time_seconds_total") if lb == ours
    ]
    assert wait_total == pytest.approx(s.wait_total)
    for hist, count in (("wait", s.contentions or s.acquisitions), ("hold", s.acquisitions)):
        buckets = [
            (lb["le"], v)
            for lb, v, _ in _samples(text, f"tracedsync_{hist}_duration_seconds_bucket")
            if lb["sync_name"] == "pool_lock"
        ]
        values = [v for _, v in buckets]
        assert values == sorted(values)  # cumulative
        assert buckets[-1][0] == "+Inf"
        (total,) = [
            v
            for lb, v, _ in _samples(text, f"tracedsync_{hist}_duration_seconds_count")
            if lb["sync_name"] == "pool_lock"
        ]
        assert buckets[-1][1] == total
        assert len(buckets) == len(tracedsync.HISTOGRAM_BOUNDS) + 1
        assert total >= count
    for name in ("produced", "dropped", "suppressed"):
        ((labels, _, _),) = _samples(text, f"tracedsync_telemetry_{name}_total")
        assert labels == {}
    for name in ("offered", "exported", "lane_dropped", "failed"):
        series = _samples(text, f"tracedsync_telemetry_{name}_total")
        # Per process and exporter name: earlier configurations' exporters stay.
        assert "jsonfile" in {lb["exporter"] for lb, _, _ in series}, name

    om = _scrape(prom_port, openmetrics=True)
    (wait_span,) = [
        span
        for path in glob.glob(str(tmp_path / "spans-*.jsonl"))
        for line in Path(path).read_text().splitlines()
        for rs in parse_trace_line(line).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
        if span.name == "lock.wait"
    ]
    with_exemplar = [
        rest
        for lb, _, rest in _samples(om, "tracedsync_wait_duration_seconds_bucket")
        if lb.get("sync_name") == "pool_lock" and "#" in rest
    ]
    assert len(with_exemplar) == 1
    assert f'trace_id="{wait_span.trace_id.hex()}"' in with_exemplar[0]
    assert f'span_id="{wait_span.span_id.hex()}"' in with_exemplar[0]


def test_scrapes_record_nothing_and_show_no_primitive_of_their_own(
    tmp_path: Path, prom_port: int
) -> None:
    """The server's thread is internal and everything prometheus_client and the
    HTTP server create is untraced: scraping produces no record and no primitive
    in tracedsync.stats()."""
    tracedsync.install(
        exporters=["prometheus"],
        output_dir=str(tmp_path),
        wait_threshold_ms=0,
        hold_threshold_ms=0,
    )
    try:
        before = records.accounting.produced
        for _ in range(3):
            _scrape(prom_port)
        assert records.accounting.produced == before
        names = {s.name for s in tracedsync.stats()}
        assert not [n for n in names if "prometheus" in n or "socketserver" in n], names
    finally:
        tracedsync.uninstall()


def test_a_taken_port_means_a_free_one_listed_in_the_targets_file(
    tmp_path: Path, prom_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """When TRACEDSYNC_PROMETHEUS_PORT is taken (by a parent, or anything), the
    exporter serves on a free port, says so once, and lists itself in
    prometheus-targets.json (file_sd format); shutdown removes the entry."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", prom_port))
        taken.listen(1)
        tracedsync.configure(exporters=["prometheus"], output_dir=str(tmp_path))
        targets_file = tmp_path / "prometheus-targets.json"
        (entry,) = json.loads(targets_file.read_text())
        (target,) = entry["targets"]
        host, port = target.split(":")
        assert host == "127.0.0.1" and int(port) != prom_port
        assert entry["labels"]["tracedsync_pid"] == str(os.getpid())
        assert "tracedsync_telemetry_produced_total" in _scrape(int(port))
        err = capsys.readouterr().err
        assert err.count(f"port {prom_port} is in use; serving /metrics on {target}") == 1
        tracedsync.shutdown()
    assert json.loads(targets_file.read_text()) == []
    with pytest.raises(OSError):
        _scrape(int(port))


def test_bad_port_variable_warns_and_uses_the_default() -> None:
    """A port that is not 0-65535 in ASCII digits: one warning, the default."""
    assert prometheus.configured_port({}) == 9464
    assert prometheus.configured_port({"TRACEDSYNC_PROMETHEUS_PORT": "9100"}) == 9100
    for bad in ("70000", "-1", "http", "٩٤٦٤"):
        assert prometheus.configured_port({"TRACEDSYNC_PROMETHEUS_PORT": bad}) == 9464


UPDATER = """
import os, sys
sys.path.insert(0, sys.argv[1])
from tracedsync.exporters.prometheus import update_targets
path, port = sys.argv[2], int(sys.argv[3])
entry = {"targets": [f"127.0.0.1:{port}"], "labels": {"tracedsync_pid": str(os.getpid())}}
for _ in range(100):
    update_targets(path, add=entry)
    update_targets(path, remove=entry)
update_targets(path, add=entry)
print("done", flush=True)
sys.stdin.readline()
"""


def test_targets_file_survives_processes_updating_it_at_once(tmp_path: Path) -> None:
    """Eight processes adding and removing their entries 100 times at once: the
    file is always valid JSON and ends with each live process listed once; entries
    of processes that ended are dropped at the next update."""
    path = str(tmp_path / "prometheus-targets.json")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", UPDATER, str(REPO), path, str(10000 + i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "done"
        entries = json.loads(Path(path).read_text())
        assert sorted(e["targets"][0] for e in entries) == [
            f"127.0.0.1:{10000 + i}" for i in range(8)
        ]
    finally:
        for p in procs:
            p.communicate("\n", timeout=30)
    prometheus.update_targets(path, add={"targets": ["127.0.0.1:1"], "labels": {}})
    assert json.loads(Path(path).read_text()) == [{"targets": ["127.0.0.1:1"], "labels": {}}]


def test_dashboard_command_prints_the_shipped_dashboard(tmp_path: Path) -> None:
    """`tracedsync dashboard` prints dashboards/tracedsync.json (package data)."""
    shipped = (REPO / "dashboards" / "tracedsync.json").read_text()
    assert dashboard.dashboard_json() == shipped
    result = subprocess.run(
        [sys.executable, "-m", "tracedsync", "dashboard"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shipped
    out = tmp_path / "d.json"
    assert (
        subprocess.run(
            [sys.executable, "-m", "tracedsync", "dashboard", "-o", str(out)], timeout=60
        ).returncode
        == 0
    )
    assert json.loads(out.read_text())["uid"] == "tracedsync-contention"


# --------------------------------------------------------------------------
# Debian's real Prometheus
# --------------------------------------------------------------------------

APP = """
import os, subprocess, sys, threading, time
role = sys.argv[1]
pool_lock = threading.Lock()
stop = threading.Event()

def worker():
    while not stop.is_set():
        with pool_lock:
            time.sleep(0.002)

threads = [threading.Thread(target=worker, name=f"{role}-{i}") for i in range(3)]
for t in threads:
    t.start()
child = None
if role == "parent":
    child = subprocess.Popen([sys.executable, __file__, "child"], stdin=subprocess.PIPE)
print("ready", flush=True)
sys.stdin.readline()
stop.set()
for t in threads:
    t.join()
if child is not None:
    child.communicate(b"\\n", timeout=60)
"""


class PromServer:
    """A real ``prometheus`` on 127.0.0.1 with its own storage, scraping ``targets``."""

    def __init__(self, binary: str, workdir: Path, targets: Path) -> None:
        self.port = _free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            textwrap.dedent(
                f"""
                global:
                  scrape_interval: 1s
                  evaluation_interval: 1s
                scrape_configs:
                  - job_name: tracedsync
                    file_sd_configs:
                      - files: ["{targets}"]
                        refresh_interval: 1s
                """
            )
        )
        self.log = open(workdir / "prometheus.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(self.url + "/-/ready", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"prometheus did not start: {self.logs()}") from None
                time.sleep(0.2)

    def api(self, path: str, **params: str) -> Any:
        answer = json.loads(_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"))
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, promql: str, ok: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if ok(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql} never satisfied: {result}\n{self.logs()[-3000:]}")
            time.sleep(0.5)

    def logs(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def traced_program(tmp_path: Path) -> Iterator[Path]:
    """`tracedsync run --exporters prometheus,jsonfile` of APP (a parent and a traced
    child, each contending); yields the output directory while both run."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDSYNC_", "OTEL_"))}
    env["TRACEDSYNC_PROMETHEUS_PORT"] = str(_free_port())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracedsync",
            "run",
            "--exporters",
            "prometheus,jsonfile",
            "--output-dir",
            str(out),
            "--",
            sys.executable,
            str(script),
            "parent",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield out
    finally:
        try:
            _, err = proc.communicate("\n", timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert proc.returncode == 0, err


def _substitute(expr: str) -> str:
    """A dashboard query as Grafana would send it: every variable at "All" (its
    allValue), ``$__rate_interval`` and ``$__range`` as with a 1 s scrape."""
    for name, value in (
        ("$__rate_interval", "10s"),
        ("$__range", "1m"),
        ("$job", ".*"),
        ("$kind", ".*"),
        ("$lock", ".*"),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def _dashboard_queries() -> tuple[list[tuple[str, str]], list[str]]:
    """(panel title, PromQL) of every panel target, and the variables' queries."""
    board = json.loads(dashboard.dashboard_json())
    panels = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]
    variables = [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return panels, variables


def test_real_prometheus_scrapes_every_process_and_answers_the_dashboard(
    tmp_path: Path, traced_program: Path
) -> None:
    """Debian's prometheus, pointed at the run's targets file, scrapes the traced
    program and its traced child; tracedsync_contentions_total and the p99 of the
    wait histogram come back per process; the wait buckets' exemplars name wait
    spans the jsonfile exporter wrote; and every PromQL query of
    dashboards/tracedsync.json (variables substituted) returns data."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (apt-get install prometheus)")
    targets = traced_program / "prometheus-targets.json"
    deadline = time.monotonic() + 30
    while len(json.loads(targets.read_text()) if targets.exists() else []) < 2:
        assert time.monotonic() < deadline, "parent and child never both listed"
        time.sleep(0.1)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = PromServer(binary, workdir, targets)
    try:
        # Two scrapes of each process.
        server.wait_for(
            'count_over_time(up{job="tracedsync"}[1m]) >= 2',
            lambda r: len(r) == 2 and all(float(x["value"][1]) >= 2 for x in r),
        )
        contentions = server.wait_for(
            'tracedsync_contentions_total{sync_kind="lock", sync_name=~"pool_lock .*"}',
            lambda r: len(r) == 2 and all(float(x["value"][1]) > 0 for x in r),
        )
        names = {x["metric"]["sync_name"] for x in contentions}
        assert len(names) == 1 and names.pop().startswith("pool_lock (app.py:")
        assert {x["metric"]["tracedsync_pid"] for x in contentions} == {
            e["labels"]["tracedsync_pid"] for e in json.loads(targets.read_text())
        }
        p99 = server.wait_for(
            "histogram_quantile(0.99, sum by (le, instance, sync_name) "
            '(rate(tracedsync_wait_duration_seconds_bucket{sync_name=~"pool_lock .*"}[10s])))',
            lambda r: len(r) == 2 and all(0 < float(x["value"][1]) < 10 for x in r),
        )
        for x in p99:  # each holder sleeps 2 ms in the lock: waits are longer
            assert float(x["value"][1]) >= 0.002, x

        now = time.time()
        exemplars = server.api(
            "query_exemplars",
            query="tracedsync_wait_duration_seconds_bucket",
            start=str(now - 300),
            end=str(now + 60),
        )
        trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
        assert trace_ids, exemplars
        written = {
            span.trace_id.hex()
            for path in glob.glob(str(traced_program / "spans-*.jsonl"))
            for line in Path(path).read_text().splitlines()
            for rs in parse_trace_line(line).resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        }
        assert trace_ids & written

        panels, variables = _dashboard_queries()
        assert len(panels) >= 8
        for title, expr in panels:
            promql = _substitute(expr)
            server.wait_for(promql, lambda r: len(r) > 0, timeout=30)
            assert title
        for query in variables:
            match = re.fullmatch(r"label_values\((.*), *(\w+)\)", query)
            assert match, query
            values = server.api(
                f"label/{match.group(2)}/values", **{"match[]": _substitute(match.group(1))}
            )
            assert values, query
    finally:
        server.stop()
