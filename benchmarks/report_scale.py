"""How long ``tracedsync report`` takes on a large input, and how much memory.

Writes SPANS spans (default 1,000,000: waits with their holder, link and
site, and the holds they link to) over several processes of one run with the
real ``jsonfile`` exporter, plus each process's metrics line, then runs
``python -m tracedsync report`` on the directory for each format asked and
prints wall-clock seconds and the peak RSS of the report process::

    python benchmarks/report_scale.py                      # 1M spans, table
    python benchmarks/report_scale.py --formats table,json,html,perfetto
    python benchmarks/report_scale.py --spans 200000 --keep /tmp/scale

The goal (issue 6): under 60 s for 1,000,000 spans, with memory bounded by
the number of primitives, sites and threads, not spans.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

from tracedsync.exporters.base import SpanData
from tracedsync.exporters.jsonfile import JsonFileExporter
from tracedsync.recorder import HISTOGRAM_BOUNDS

RUN = "scale"
KINDS = ("lock", "rlock", "semaphore", "condition", "event")


def _attr(key: str, value: object) -> dict[str, object]:
    if isinstance(value, str):
        return {"key": key, "value": {"stringValue": value}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"intValue": str(value)}}


def write_input(directory: str, spans: int, processes: int, seed: int = 1) -> float:
    """Write the files; returns the seconds it took."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    primitives = [
        (i, KINDS[i % len(KINDS)], f"prim_{i} (app/module_{i % 40}.py:{10 + i})")
        for i in range(200)
    ]
    sites = [(f"/srv/app/module_{i % 40}.py", 100 + i, f"handler_{i}") for i in range(2000)]
    start_ns = 1_800_000_000_000_000_000
    per_process = spans // processes
    scope = SimpleNamespace(name="tracedsync", version="0.1.0")
    for p in range(processes):
        pid = 4000 + p
        resource_ = SimpleNamespace(attributes={"process.pid": pid, "tracedsync.run_id": RUN})
        exporter = JsonFileExporter(directory, RUN, resource_, scope, pid=pid, max_bytes=256 << 20)
        now = start_ns
        batch: list[SpanData] = []
        made = 0
        stats: dict[tuple[str, str], list[float]] = {}
        while made < per_process:
            prim_id, kind, name = primitives[rng.randrange(len(primitives))]
            # Code touches a lock at a few places: 10 sites per primitive.
            holder_site = sites[prim_id * 10 + rng.randrange(10)]
            waiter_site = sites[prim_id * 10 + rng.randrange(10)]
            holder, waiter = rng.randrange(64), rng.randrange(64)
            hold_span = rng.getrandbits(63) | 1
            wait_ns = int(rng.lognormvariate(14, 1.5))
            hold_ns = wait_ns + int(rng.lognormvariate(13, 1))
            base = {"sync.kind": kind, "sync.name": name, "sync.id": prim_id}
            hold_attrs = {
                **base,
                "thread.id": 140_000_000 + holder,
                "thread.name": f"worker-{holder}",
                "code.function.name": holder_site[2],
                "code.file.path": holder_site[0],
                "code.line.number": holder_site[1],
            }
            wait_attrs = {
                **base,
                "sync.outcome": "acquired",
                "thread.id": 140_000_000 + waiter,
                "thread.name": f"worker-{waiter}",
                "code.function.name": waiter_site[2],
                "code.file.path": waiter_site[0],
                "code.line.number": waiter_site[1],
                "sync.holder.thread.name": f"worker-{holder}",
                "sync.holder.thread.id": 140_000_000 + holder,
                "sync.holder.site": f"app/module_{holder_site[1] % 40}.py:{holder_site[1]}",
            }
            trace = rng.getrandbits(127) | 1
            batch.append(
                SpanData(f"{kind}.hold", trace, hold_span, 0, now, now + hold_ns, hold_attrs)
            )
            wait_start = now + hold_ns - wait_ns
            batch.append(
                SpanData(
                    f"{kind}.wait",
                    rng.getrandbits(127) | 1,
                    rng.getrandbits(63) | 1,
                    0,
                    wait_start,
                    now + hold_ns + 2000,
                    wait_attrs,
                    links=[(trace, hold_span, {})],
                )
            )
            made += 2
            entry = stats.setdefault((kind, name), [0, 0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += 1
            entry[2] += wait_ns / 1e9
            entry[3] += hold_ns / 1e9
            now += rng.randrange(10_000, 200_000)
            if len(batch) >= 4096:
                exporter.export_spans(batch)
                batch = []
        if batch:
            exporter.export_spans(batch)
        exporter.metrics_file.write_lines([_metrics_line(pid, start_ns, now, stats)])
        exporter.shutdown(1.0)
    return time.perf_counter() - t0


def _metrics_line(
    pid: int, start_ns: int, now: int, stats: dict[tuple[str, str], list[float]]
) -> str:
    def point(kind: str, name: str, **value: object) -> dict[str, object]:
        return {
            "attributes": [_attr("sync.kind", kind), _attr("sync.name", name)],
            "startTimeUnixNano": str(start_ns),
            "timeUnixNano": str(now),
            **value,
        }

    def hist(kind: str, name: str, count: int, total: float) -> dict[str, object]:
        counts = [0] * (len(HISTOGRAM_BOUNDS) + 1)
        counts[0] = count // 2
        counts[17] = count - count // 2
        return point(
            kind,
            name,
            count=str(count),
            sum=total,
            bucketCounts=[str(c) for c in counts],
            explicitBounds=list(HISTOGRAM_BOUNDS),
            min=0.0,
            max=HISTOGRAM_BOUNDS[17],
        )

    def sum_metric(metric: str, points: list[dict[str, object]]) -> dict[str, object]:
        return {
            "name": metric,
            "sum": {"dataPoints": points, "aggregationTemporality": 2, "isMonotonic": True},
        }

    items = sorted(stats.items())
    metrics = [
        sum_metric(
            "tracedsync.acquisitions",
            [point(k, n, asInt=str(int(v[0]) * 3)) for (k, n), v in items],
        ),
        sum_metric(
            "tracedsync.contentions", [point(k, n, asInt=str(int(v[1]))) for (k, n), v in items]
        ),
        sum_metric("tracedsync.timeouts", [point(k, n, asInt="0") for (k, n), _ in items]),
        sum_metric("tracedsync.wait.time", [point(k, n, asDouble=v[2]) for (k, n), v in items]),
        sum_metric("tracedsync.hold.time", [point(k, n, asDouble=v[3]) for (k, n), v in items]),
        {
            "name": "tracedsync.wait.duration",
            "histogram": {
                "dataPoints": [hist(k, n, int(v[0]) * 3, v[2]) for (k, n), v in items],
                "aggregationTemporality": 2,
            },
        },
        {
            "name": "tracedsync.hold.duration",
            "histogram": {
                "dataPoints": [hist(k, n, int(v[0]) * 3, v[3]) for (k, n), v in items],
                "aggregationTemporality": 2,
            },
        },
    ]
    doc = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [_attr("process.pid", pid), _attr("tracedsync.run_id", RUN)]
                },
                "scopeMetrics": [{"scope": {"name": "tracedsync"}, "metrics": metrics}],
            }
        ]
    }
    return json.dumps(doc, separators=(",", ":"))


def time_report(
    directory: str, fmt: str, out_dir: str, jobs: int | None
) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds of it and its workers, peak RSS in MiB of the
    report process, exit code) of one ``tracedsync report`` run."""
    output = os.path.join(out_dir, f"report.{ {'perfetto': 'json', 'table': 'txt'}.get(fmt, fmt) }")
    code = (
        "import resource, sys\n"
        "from tracedsync.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "sys.stderr.write('maxrss_kib=%d\\n' % peak)\n"
        "sys.exit(rc)\n"
    )
    cmd = [sys.executable, "-c", code, "report", directory, "--format", fmt, "-o", output]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    rss = 0
    for line in proc.stderr.splitlines():
        if line.startswith("maxrss_kib="):
            rss = int(line.split("=")[1])
        else:
            sys.stderr.write(line + "\n")
    return seconds, cpu, rss / 1024, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--formats", default="table", help="comma list: table,json,html,perfetto")
    parser.add_argument("--jobs", type=int, help="passed to tracedsync report --jobs")
    parser.add_argument("--keep", metavar="DIR", help="write the input here and keep it")
    args = parser.parse_args()
    directory = args.keep or tempfile.mkdtemp(prefix="tracedsync-scale-")
    out_dir = tempfile.mkdtemp(prefix="tracedsync-scale-out-")
    try:
        existing = os.path.isdir(directory) and any(
            n.startswith("spans-") for n in os.listdir(directory)
        )
        if not existing:
            seconds = write_input(directory, args.spans, args.processes)
            print(f"wrote {args.spans:,} spans in {seconds:.1f} s to {directory}")
        size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
        print(f"input: {size / 2**20:.0f} MiB in {len(os.listdir(directory))} files")
        failed = False
        cores = os.cpu_count() or 1
        for fmt in args.formats.split(","):
            load = os.getloadavg()[0]
            seconds, cpu, rss, rc = time_report(directory, fmt.strip(), out_dir, args.jobs)
            print(
                f"tracedsync report --format {fmt}: {seconds:.1f} s wall, {cpu:.1f} s CPU "
                f"(with workers), peak RSS {rss:.0f} MiB, exit {rc} "
                f"[load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {cores} cores]"
            )
            failed = failed or rc != 0 or seconds > 60
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest peak RSS of a report process or worker: {peak:.0f} MiB")
        return 1 if failed else 0
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
