"""What a traced process loads: jsonfile and console need no OpenTelemetry, and
an application's spans still parent tracedsync's whenever it imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

TRACEDSYNC = (sys.executable, "-m", "tracedsync")
PROGRAM = (sys.executable, "program.py")


def run(
    tmp_path: Path, program: str, *options: str, **env: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "program.py").write_text(textwrap.dedent(program))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDSYNC_", "OTEL_"))}
    full_env.update(env)
    proc = subprocess.run(
        [*TRACEDSYNC, "run", "--output-dir", str(tmp_path / "out"), *options, "--", *PROGRAM],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def requests(directory: Path, kind: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob(f"{kind}-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def attributes(resource: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in resource["attributes"]}


HOLD_AND_REPORT = """
    import json, sys, threading, time
    import tracedsync

    lock = threading.Lock()
    with lock:
        time.sleep(0.03)  # past the default hold threshold: a span and an event
    tracedsync.shutdown()  # every export done: spans, metrics, log events
    print(json.dumps(sorted({m.split(".")[0] + "." + m.split(".")[1]
                             for m in sys.modules if m.startswith("opentelemetry.")})))
"""


def test_a_jsonfile_run_never_imports_opentelemetry(tmp_path: Path) -> None:
    """Spans, metrics and log events written, the resource built from the
    OTEL_* variables, and no OpenTelemetry module loaded for any of it."""
    proc = run(
        tmp_path,
        HOLD_AND_REPORT,
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test, team=a%2Cb%3Dc,broken",
        OTEL_SERVICE_NAME="svc",
    )
    assert json.loads(proc.stdout.splitlines()[-1]) == []
    assert "OTEL_RESOURCE_ATTRIBUTES: 'broken' is not key=value" in proc.stderr
    out = tmp_path / "out"
    spans = requests(out, "spans")
    metrics = requests(out, "metrics")
    assert spans and metrics and requests(out, "logs")
    for request, key in ((spans[0], "resourceSpans"), (metrics[0], "resourceMetrics")):
        attrs = attributes(request[key][0]["resource"])
        assert attrs["service.name"] == "svc"
        assert attrs["deployment.environment"] == "test"
        assert attrs["team"] == "a,b=c"
        assert attrs["tracedsync.run_id"]
        assert int(attrs["process.pid"]) > 0


def test_the_default_service_name_without_opentelemetry(tmp_path: Path) -> None:
    run(tmp_path, HOLD_AND_REPORT)
    (request, *_) = requests(tmp_path / "out", "spans")
    name = attributes(request["resourceSpans"][0]["resource"])["service.name"]
    assert name == f"unknown_service:{os.path.basename(sys.executable)}"


LATE_OPENTELEMETRY = """
    import json, sys, threading, time
    import tracedsync

    assert "opentelemetry.context" not in sys.modules
    lock = threading.Lock()
    with lock:
        time.sleep(0.03)  # before OpenTelemetry: no parent

    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("app")
    with tracer.start_as_current_span("request") as span:
        with lock:
            time.sleep(0.03)
        context = span.get_span_context()
    tracedsync.shutdown()
    print(json.dumps({"trace": f"{context.trace_id:032x}", "span": f"{context.span_id:016x}"}))
"""


def test_an_application_importing_opentelemetry_later_parents_the_spans(tmp_path: Path) -> None:
    proc = run(tmp_path, LATE_OPENTELEMETRY)
    app = json.loads(proc.stdout.splitlines()[-1])
    holds = [
        span
        for request in requests(tmp_path / "out", "spans")
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
        if span["name"] == "lock.hold"
    ]
    assert len(holds) == 2, holds
    first, second = sorted(holds, key=lambda s: int(s["startTimeUnixNano"]))
    assert "parentSpanId" not in first
    assert first["traceId"] != app["trace"]
    assert second["parentSpanId"] == app["span"]
    assert second["traceId"] == app["trace"]
