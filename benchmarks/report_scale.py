"""How long ``tracedsync report`` takes on a large input, and how much memory.

For each size (default 100,000, 1,000,000 and 3,000,000 spans) writes a run
of several processes with the real ``jsonfile`` exporter, drawn as a
threaded service makes them, so that attribute lists repeat as in real
files: 200 primitives of which a few are hot (Zipf weights), mostly locks
and queue conditions; 64 worker threads, some busier; one to five call
sites per primitive and one to four stacks (9 to 19 frames) per site. Lock
waits carry their holder (or, one in ten, that it released before the
waiter looked), their own hand-off time and a link to the hold span that
blocked them; each span has its ``long_wait``/``long_hold`` log event; a
few findings; each process's metrics line. Then runs ``tracedsync report``
on it for each format, with the standard library's JSON decoder and with
the fast one when installed (``pip install tracedsync[fast]``), one after
the other in this run, and prints wall-clock seconds, CPU seconds, the peak
RSS of the report process and of its worker processes, and throughput::

    python benchmarks/report_scale.py                        # 100k, 1M, 3M; table, json
    python benchmarks/report_scale.py --sizes 1000000 --formats table,json,html,perfetto
    python benchmarks/report_scale.py --sizes 200000 --keep /tmp/scale

Inputs are written under --tmp (default the system's temporary directory)
and deleted after each size unless --keep. Targets (issue 20 §3): 1,000,000
spans in <= 8 s (table, json) with a fast decoder, <= 30 s with the standard
library, <= 15 s for html and perfetto; peak memory <= 200 MB; time linear
in the input size.
"""

from __future__ import annotations

import argparse
import itertools
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
from typing import Any

from tracedsync import HISTOGRAM_BOUNDS
from tracedsync.exporters.base import SharedAttributes, SpanData
from tracedsync.exporters.jsonfile import JsonFileExporter

RUN = "scale"


def _attr(key: str, value: object) -> dict[str, object]:
    if isinstance(value, str):
        return {"key": key, "value": {"stringValue": value}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"intValue": str(value)}}


#: Kinds by how often their spans come, as in a threaded service: mostly
#: locks, queues (a condition's wait and its mutex), a few events and
#: semaphores.
KIND_WEIGHTS = {
    "lock": 45,
    "rlock": 10,
    "condition": 20,
    "semaphore": 8,
    "bounded_semaphore": 4,
    "event": 8,
    "barrier": 1,
}
PRIMITIVES = 200
THREADS = 64
#: Frames shared by every stack (the thread's bootstrap and a framework),
#: outermost last as sync.stack lists them.
BASE_FRAMES = [
    "threading.py:1002 in _bootstrap",
    "threading.py:1045 in _bootstrap_inner",
    "threading.py:982 in run",
    "concurrent/futures/thread.py:83 in _worker",
    "concurrent/futures/thread.py:58 in run",
    "app/server.py:212 in handle",
    "app/middleware.py:57 in __call__",
]


def _zipf(rng: random.Random, n: int, s: float = 1.1) -> list[float]:
    """Cumulative weights of ranks 1..n ~ 1/rank^s, shuffled ranks."""
    weights = [1 / (rank**s) for rank in range(1, n + 1)]
    rng.shuffle(weights)
    return list(itertools.accumulate(weights))


class Workload:
    """Who waits where on what, drawn once: a realistic repetition of
    primitives (a few hot ones), threads (a pool of workers), call sites (a
    few per primitive) and stacks (a few per site)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        kinds = list(KIND_WEIGHTS)
        kind_cum = list(itertools.accumulate(KIND_WEIGHTS.values()))
        self.prims = []
        for i in range(PRIMITIVES):
            kind = rng.choices(kinds, cum_weights=kind_cum)[0]
            module = f"app/module_{i % 40}.py"
            name = f"{kind}_{i} ({module}:{10 + i})"
            sites = []
            for j in range(rng.choice((1, 1, 2, 2, 3, 5))):
                line = 100 + 10 * i + j
                fn = f"handler_{i}_{j}"
                stacks = []
                for k in range(rng.choice((1, 1, 2, 3, 4))):
                    middle = [
                        f"app/module_{(i + m + k) % 40}.py:{300 + 7 * m + k} in step_{m}"
                        for m in range(rng.randrange(1, 12))
                    ]
                    stacks.append([f"{module}:{line} in {fn}", *middle, *BASE_FRAMES[::-1]])
                sites.append((f"/srv/{module}", line, fn, f"{module}:{line}", stacks))
            self.prims.append((i, kind, name, sites, _zipf(rng, len(sites))))
        self.prim_cum = _zipf(rng, PRIMITIVES, 1.2)
        self.thread_cum = _zipf(rng, THREADS, 0.6)

    def primitive(self) -> tuple[int, str, str, list[Any], list[float]]:
        return self.rng.choices(self.prims, cum_weights=self.prim_cum)[0]

    def thread(self) -> int:
        return self.rng.choices(range(THREADS), cum_weights=self.thread_cum)[0]

    def site(self, prim: tuple[int, str, str, list[Any], list[float]]) -> tuple[Any, ...]:
        site = self.rng.choices(prim[3], cum_weights=prim[4])[0]
        return (*site[:4], self.rng.choice(site[4]))


def write_input(directory: str, spans: int, processes: int, seed: int = 1) -> float:
    """Write the files; returns the seconds it took."""
    rng = random.Random(seed)
    work = Workload(rng)
    t0 = time.perf_counter()
    start_ns = 1_800_000_000_000_000_000
    per_process = spans // processes
    scope = SimpleNamespace(name="tracedsync", version="0.1.0")
    for p in range(processes):
        pid = 4000 + p
        resource_ = SimpleNamespace(attributes={"process.pid": pid, "tracedsync.run_id": RUN})
        exporter = JsonFileExporter(directory, RUN, resource_, scope, pid=pid, max_bytes=256 << 20)
        now = start_ns
        batch: list[SpanData] = []
        events: list[dict[str, object]] = []
        made = 0
        stats: dict[tuple[str, str], list[float]] = {}
        # As the runtime does, spans alike share one attribute dict.
        shared: dict[tuple[Any, ...], SharedAttributes] = {}
        while made < per_process:
            prim = work.primitive()
            prim_id, kind, name = prim[:3]
            holder, waiter = work.thread(), work.thread()
            if holder == waiter:
                waiter = (waiter + 1) % THREADS
            hpath, hline, hfn, hsite, hstack = work.site(prim)
            wpath, wline, wfn, wsite, wstack = work.site(prim)
            idle = kind in ("condition", "event", "barrier")
            hold_span = rng.getrandbits(63) | 1
            wait_ns = int(rng.lognormvariate(14, 1.5))
            hold_ns = wait_ns + int(rng.lognormvariate(13, 1))
            released_before = not idle and rng.random() < 0.1
            outcome = "timeout" if rng.random() < 0.01 else ("acquired" if not idle else "notified")
            hkey = ("hold", prim_id, holder, hsite, id(hstack))
            hold_attrs = shared.get(hkey)
            if hold_attrs is None:
                hold_attrs = shared[hkey] = SharedAttributes(
                    _common(prim, holder, hpath, hline, hfn, hsite, hstack)
                )
            wkey = ("wait", prim_id, waiter, wsite, id(wstack), outcome, released_before, holder)
            wait_attrs: dict[str, Any] | None = shared.get(wkey)
            if wait_attrs is None:
                wait_attrs = _common(prim, waiter, wpath, wline, wfn, wsite, wstack)
                wait_attrs["sync.outcome"] = outcome
                if idle:
                    pass
                elif released_before:
                    wait_attrs["sync.holder.released_before_wait"] = True
                else:
                    wait_attrs["sync.holder.thread.name"] = f"worker-{holder}"
                    wait_attrs["sync.holder.thread.id"] = 140_000_000 + holder
                    wait_attrs["sync.holder.acquired_at"] = hsite
                    wait_attrs["sync.holder.site"] = hsite
                wait_attrs = shared[wkey] = SharedAttributes(wait_attrs)
            if not idle:
                # As the runtime does: a copy of the shared attributes with
                # this wait's own hand-off time.
                wait_attrs = SharedAttributes(wait_attrs)
                wait_attrs["sync.wait.handoff"] = rng.lognormvariate(-11, 1.2)
            trace = rng.getrandbits(127) | 1
            links = [] if idle or released_before else [(trace, hold_span, {})]
            if links:
                batch.append(
                    SpanData(f"{kind}.hold", trace, hold_span, 0, now, now + hold_ns, hold_attrs)
                )
                events.append(
                    _mirror("long_hold", now + hold_ns, hold_ns, trace, hold_span, hold_attrs)
                )
                made += 1
            wait_start = now + hold_ns - wait_ns
            wait_trace, wait_span = rng.getrandbits(127) | 1, rng.getrandbits(63) | 1
            batch.append(
                SpanData(
                    f"{kind}.wait",
                    wait_trace,
                    wait_span,
                    0,
                    wait_start,
                    now + hold_ns + 2000,
                    wait_attrs,
                    links=links,
                )
            )
            events.append(
                _mirror("long_wait", now + hold_ns, wait_ns, wait_trace, wait_span, wait_attrs)
            )
            if made % 200_000 == 0:
                events.append(_finding(now, name, kind, f"worker-{waiter}", f"worker-{holder}"))
            made += 1
            entry = stats.setdefault((kind, name), [0, 0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += 1
            entry[2] += wait_ns / 1e9
            entry[3] += hold_ns / 1e9
            now += rng.randrange(10_000, 200_000)
            if len(batch) >= 4096:
                exporter.export_spans(batch)
                exporter.export_logs(events)
                batch, events = [], []
        if batch:
            exporter.export_spans(batch)
            exporter.export_logs(events)
        exporter.metrics_file.write_lines([_metrics_line(pid, start_ns, now, stats)])
        exporter.shutdown(1.0)
    return time.perf_counter() - t0


def _common(
    prim: tuple[Any, ...], thread: int, path: str, line: int, fn: str, site: str, stack: Any
) -> dict[str, Any]:
    """The attributes every span of ``prim`` has, in the runtime's order."""
    prim_id, kind, name = prim[:3]
    return {
        "sync.kind": kind,
        "sync.name": name,
        "sync.id": prim_id,
        "sync.instance": 1 + prim_id % 3,
        "thread.id": 140_000_000 + thread,
        "thread.name": f"worker-{thread}",
        "code.function.name": fn,
        "code.file.path": path,
        "code.line.number": line,
        "sync.site": site,
        "sync.stack": stack,
    }


STACK = [f"app/module_{i}.py:{100 + 7 * i} in handler_{i}" for i in range(12)]


def _stamp(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:06d}Z"


def _mirror(
    event: str, end_ns: int, dur_ns: int, trace: int, span: int, attrs: dict[str, Any]
) -> dict[str, object]:
    """The long_wait/long_hold event the runtime logs for a span."""
    return {
        "timestamp": _stamp(end_ns),
        "level": "info",
        "event": event,
        "trace_id": f"{trace:032x}",
        "span_id": f"{span:016x}",
        "duration_ms": dur_ns / 1e6,
        **attrs,
    }


def _finding(now: int, name: str, kind: str, thread: str, holder: str) -> dict[str, object]:
    return {
        "timestamp": _stamp(now),
        "level": "warning",
        "event": "stuck_wait",
        "message": f"{thread} has waited 5.0 s for {name}, held by {holder}",
        "thread.name": thread,
        "sync.kind": kind,
        "sync.name": name,
        "sync.holder.thread.name": holder,
        "sync.stack": STACK,
    }


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
    directory: str, fmt: str, out_dir: str, jobs: int | None, decoder: str
) -> dict[str, float]:
    """Wall and CPU seconds (the report and its workers), peak RSS (MiB) of the
    report process and of its largest worker, and the exit code of one
    ``tracedsync report`` run with JSON decoder ``decoder``."""
    output = os.path.join(out_dir, f"report.{ {'perfetto': 'json', 'table': 'txt'}.get(fmt, fmt) }")
    code = (
        "import resource, sys\n"
        "from tracedsync.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "sys.stderr.write('maxrss_kib=%d %d\\n' % (me, kids))\n"
        "sys.exit(rc)\n"
    )
    cmd = [sys.executable, "-c", code, "report", directory, "--format", fmt, "-o", output]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    env = {**os.environ, "TRACEDSYNC_REPORT_DECODER": decoder}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    me = kids = 0
    for line in proc.stderr.splitlines():
        if line.startswith("maxrss_kib="):
            me, kids = (int(x) for x in line.split("=")[1].split())
        else:
            sys.stderr.write(line + "\n")
    return {"wall": seconds, "cpu": cpu, "rss": me / 1024, "workers": kids / 1024,
            "rc": proc.returncode}  # fmt: skip


def decoders() -> list[str]:
    """The standard library's decoder, and the fast one when installed."""
    found = ["stdlib"]
    for name in ("msgspec", "orjson"):
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
        break
    return found


TARGETS = {"table": 8.0, "json": 8.0, "html": 15.0, "perfetto": 15.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,3000000", help="spans, comma list")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument(
        "--formats", default="table,json", help="comma list: table,json,html,perfetto"
    )
    parser.add_argument(
        "--decoders", help="comma list (default: stdlib and the fast one installed)"
    )
    parser.add_argument("--jobs", type=int, help="passed to tracedsync report --jobs")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where inputs are written")
    parser.add_argument("--keep", metavar="DIR", help="write the input here and keep it")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    which = args.decoders.split(",") if args.decoders else decoders()
    print(f"decoders: {', '.join(which)}; {os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(
        f"{'spans':>9} {'input':>8} {'format':>8} {'decoder':>8} {'wall s':>7} {'cpu s':>6} "
        f"{'MB/s':>6} {'RSS MiB':>8} {'workers':>8} {'load':>5}  target"
    )
    failed = False
    for size in sizes:
        directory = args.keep or tempfile.mkdtemp(prefix="tracedsync-scale-", dir=args.tmp)
        os.makedirs(directory, exist_ok=True)
        out_dir = tempfile.mkdtemp(prefix="tracedsync-scale-out-", dir=args.tmp)
        try:
            if not any(n.startswith("spans-") for n in os.listdir(directory)):
                seconds = write_input(directory, size, args.processes)
                sys.stderr.write(f"wrote {size:,} spans in {seconds:.1f} s to {directory}\n")
            names = os.listdir(directory)
            mb = sum(os.path.getsize(os.path.join(directory, n)) for n in names) / 1e6
            for fmt in args.formats.split(","):
                for decoder in which:
                    load = os.getloadavg()[0]
                    r = time_report(directory, fmt.strip(), out_dir, args.jobs, decoder)
                    target = TARGETS.get(fmt, 60.0) * size / 1_000_000
                    if decoder == "stdlib" and fmt in ("table", "json"):
                        target = 30.0 * size / 1_000_000
                    ok = r["rc"] == 0 and r["rss"] <= 200 and r["workers"] <= 200
                    verdict = "ok" if ok and r["wall"] <= target else "OVER"
                    failed = failed or verdict != "ok"
                    print(
                        f"{size:>9,} {mb:>6.0f}MB {fmt:>8} {decoder:>8} {r['wall']:>7.1f} "
                        f"{r['cpu']:>6.1f} {mb / r['wall']:>6.0f} {r['rss']:>8.0f} "
                        f"{r['workers']:>8.0f} {load:>5.1f}  <= {target:.1f} s: {verdict}"
                        + ("" if r["rc"] == 0 else f" (exit {r['rc']:.0f})"),
                        flush=True,
                    )
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
