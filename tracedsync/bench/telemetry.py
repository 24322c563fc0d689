"""The telemetry side: what happens to the records, and what they cost the app.

- ``pipeline throughput``: records per second that become spans written by
  the ``jsonfile`` exporter, thresholds at 0 (the median of a few runs);
- ``drops when outrun``: how many records are dropped, and accounted for,
  when the application makes them faster than the pipeline takes them;
- ``threshold crossing``: what one event crossing a threshold costs the
  application thread (its CPU time, so the pipeline thread's work is not
  counted), for each implementation;
- ``lock-order checking``: what the opt-in check costs two nested ``with``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import tracedsync
from tracedsync import lifecycle, primitives, records
from tracedsync.bench import targets
from tracedsync.bench.timing import (
    Progress,
    Settings,
    gc_paused,
    traced_implementations,
    unrolled,
)
from tracedsync.exporters.base import Exporter

CASES = ("pipeline throughput", "drops when outrun", "threshold crossing", "lock-order checking")


def case_names() -> list[str]:
    return list(CASES)


class _NullExporter(Exporter):
    """Takes spans and logs and does nothing (for the threshold-crossing cost)."""

    name = "null"
    wants_spans = True
    wants_logs = True


def accounting_now() -> tuple[int, int, int, int]:
    """(produced, exported, dropped, failed) now: the shared buffer's counts
    and the jsonfile exporter's lane's (its drops counted with the buffer's)."""
    from tracedsync.exporters.lanes import record_totals

    acc = records.accounting
    lane = record_totals().get("jsonfile", {})
    dropped = acc.dropped + lane.get("lane_dropped", 0)
    return (acc.produced, lane.get("exported", 0), dropped, lane.get("failed", 0))


def accounting_since(before: tuple[int, int, int, int]) -> dict[str, int]:
    """The record counts since ``before`` (from :func:`accounting_now`), by name."""
    after = accounting_now()
    keys = ("produced", "exported", "dropped", "failed")
    return {k: a - b for k, a, b in zip(keys, after, before, strict=True)}


def count_spans(directory: str) -> int:
    """Spans in the jsonfile span files of ``directory``."""
    total = 0
    for entry in os.listdir(directory):
        if entry.startswith("spans-") and entry.endswith(".jsonl"):
            with open(os.path.join(directory, entry), encoding="utf-8") as f:
                for line in f:
                    for rs in json.loads(line)["resourceSpans"]:
                        for ss in rs["scopeSpans"]:
                            total += len(ss["spans"])
    return total


def _thread_cpu_ns(thread: threading.Thread | None) -> int:
    """CPU time used so far by ``thread`` (0 where it cannot be read)."""
    try:
        assert thread is not None and thread.ident is not None
        return time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
    except Exception:
        return 0


def pipeline_throughput(records: int, lock_factory: Callable[[], Any]) -> dict[str, Any]:
    """Records -> spans -> jsonfile per second, thresholds at 0, nothing dropped.

    The application makes ``records`` hold records as fast as it can (each
    is a span and a ``long_hold`` event), then flushes. Reported: the
    end-to-end rate (spans written over the whole time, application and flush
    together, pipeline wake-up latency included) and the pipeline's capacity
    (spans written per second of the pipeline thread's CPU time).
    """
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-")
    try:
        tracedsync.configure(
            exporters=["jsonfile"],
            output_dir=directory,
            wait_threshold_ms=0,
            hold_threshold_ms=0,
            max_spans_per_second=0,
            # Room for every record (nothing dropped); half full wakes the pipeline.
            buffer_size=records + 1024,
        )
        pipe = lifecycle.pipeline()
        thread = pipe.thread if pipe is not None else None
        lock = lock_factory()
        before = accounting_now()
        cpu0 = _thread_cpu_ns(thread)
        t0 = time.perf_counter()
        for _ in range(records):
            with lock:
                pass
        t_app = time.perf_counter()
        flushed = tracedsync.flush(max(60.0, records / 1000))
        t1 = time.perf_counter()
        cpu1 = _thread_cpu_ns(thread)
        tracedsync.shutdown()
        counts = accounting_since(before)
        written = count_spans(directory)
    finally:
        tracedsync.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    cpu_s = (cpu1 - cpu0) / 1e9
    return {
        "records": records,
        "flushed": flushed,
        "spans_written": written,
        "app_seconds": round(t_app - t0, 4),
        "total_seconds": round(t1 - t0, 4),
        "spans_per_second": round(written / (t1 - t0)) if t1 > t0 else 0,
        "pipeline_cpu_seconds": round(cpu_s, 4),
        "spans_per_pipeline_cpu_second": round(written / cpu_s) if cpu_s > 0 else None,
        "accounting": counts,
    }


def pipeline_median(records: int, lock_factory: Callable[[], Any], runs: int) -> dict[str, Any]:
    """:func:`pipeline_throughput` ``runs`` times: the run of median end-to-end
    rate, with every run's two rates as ``samples`` (one run swings with the
    machine's load)."""
    results = [pipeline_throughput(records, lock_factory) for _ in range(max(1, runs))]
    results.sort(key=lambda r: r["spans_per_second"])
    out = dict(results[len(results) // 2])
    out["runs"] = len(results)
    out["samples"] = [
        {k: r[k] for k in ("spans_per_second", "spans_per_pipeline_cpu_second")} for r in results
    ]
    return out


def drops_when_outrun(
    records: int, buffer_size: int, lock_factory: Callable[[], Any]
) -> dict[str, Any]:
    """Make records faster than the pipeline takes them: how many are dropped."""
    directory = tempfile.mkdtemp(prefix="tracedsync-bench-")
    try:
        tracedsync.configure(
            exporters=["jsonfile"],
            output_dir=directory,
            wait_threshold_ms=0,
            hold_threshold_ms=0,
            max_spans_per_second=0,
            buffer_size=buffer_size,
        )
        lock = lock_factory()
        before = accounting_now()
        t0 = time.perf_counter()
        for _ in range(records):
            with lock:
                pass
        t_app = time.perf_counter()
        flushed = tracedsync.flush(60.0)
        tracedsync.shutdown()
        counts = accounting_since(before)
    finally:
        tracedsync.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "records": records,
        "buffer_size": buffer_size,
        "app_records_per_second": round(records / (t_app - t0)) if t_app > t0 else 0,
        "flushed": flushed,
        "accounting": counts,
        "balanced": counts["produced"] == counts["exported"] + counts["dropped"] + counts["failed"],
    }


def crossing_cost(
    lock_factory: Callable[[], Any], ops: int, repeat: int, windows: int = 5
) -> dict[str, Any]:
    """App-thread CPU time of a ``with lock:`` whose hold crosses the threshold
    (a record is made) minus one that does not.

    tracedsync is configured for real (pipeline thread, an exporter that
    takes everything). Each sample is a short window started right after a
    flush, so the pipeline thread is idle: what is measured is the work done
    on the application thread, not its sharing of the GIL with the pipeline.
    """
    run = unrolled("with x: pass")
    costs: dict[str, list[float]] = {"crossing": [], "not_crossing": []}

    def cpu_per_op(lock: Any) -> float:
        t0 = time.thread_time_ns()
        count, _ = run(lock, ops)
        return (time.thread_time_ns() - t0) / count

    try:
        for rep in range(repeat):
            modes = ("crossing", "not_crossing")
            for mode in modes if rep % 2 == 0 else modes[::-1]:
                tracedsync.configure(
                    exporters=[_NullExporter()],
                    wait_threshold_ms=0,
                    # 1 s: never crossed here, and under 2**30 ns like the
                    # default, so the baseline compares as fast as it does
                    hold_threshold_ms=0 if mode == "crossing" else 1_000,
                    max_spans_per_second=0,
                    buffer_size=max(65536, 4 * ops),
                )
                lock = lock_factory()
                run(lock, min(ops, 1000))  # warm up
                for _ in range(windows):
                    tracedsync.flush(60)
                    with gc_paused():
                        costs[mode].append(cpu_per_op(lock))
                tracedsync.flush(60)
                tracedsync.shutdown()
    finally:
        tracedsync.shutdown()
    crossing = statistics.median(costs["crossing"])
    base = statistics.median(costs["not_crossing"])
    return {
        "crossing_ns_per_op": round(crossing, 1),
        "not_crossing_ns_per_op": round(base, 1),
        "cost_ns": round(crossing - base, 1),
        "samples": len(costs["crossing"]),
    }


def lock_order_cost(ops: int, repeat: int) -> dict[str, Any]:
    """``with a: with b:`` (two nested locks of the active implementation) with
    lock-order checking off and on: checking is opt-in and costs this much."""
    run = unrolled("with x[0]:\n            with x[1]: pass")
    samples: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for rep in range(repeat):
            modes = ("off", "on")
            for mode in modes if rep % 2 == 0 else modes[::-1]:
                tracedsync.configure(lock_order=mode == "on")
                pair = (primitives.Lock(name="order_a"), primitives.Lock(name="order_b"))
                run(pair, min(ops, 1000))
                with gc_paused():
                    count, seconds = run(pair, ops)
                samples[mode].append(seconds * 1e9 / count)
    finally:
        tracedsync.configure(lock_order=False)
        tracedsync.shutdown()
    off, on = statistics.median(samples["off"]), statistics.median(samples["on"])
    return {
        "off_ns_per_op": round(off, 1),
        "on_ns_per_op": round(on, 1),
        "ratio": round(on / off, 2),
    }


def measure(names: list[str], settings: Settings, progress: Progress) -> dict[str, Any]:
    """The cases named; the active implementation's locks, and both
    implementations' for the threshold crossing."""
    records = 20_000 if settings.quick else 100_000
    if settings.ops:
        records = min(records, settings.ops)
    cases: dict[str, Any] = {}
    if "pipeline throughput" in names:
        progress("pipeline throughput ...")
        cases["pipeline throughput"] = pipeline_median(
            records, lambda: primitives.Lock(name="bench_pipeline"), settings.reps(3, 5)
        )
    if "drops when outrun" in names:
        progress("drops when the app outruns the pipeline ...")
        cases["drops when outrun"] = drops_when_outrun(
            records * 2,
            4096 if settings.quick else 16384,
            lambda: primitives.Lock(name="bench_drops"),
        )
    if "threshold crossing" in names:
        progress("threshold-crossing cost ...")
        cases["threshold crossing"] = {
            impl: crossing_cost(lock_cls, min(2_000, records), settings.reps(3, 6))
            for impl, lock_cls, _ in traced_implementations()
        }
    if "lock-order checking" in names:
        progress("lock-order checking ...")
        ops = settings.count(40_000, 200_000) // 4
        cases["lock-order checking"] = lock_order_cost(max(10, ops), settings.reps(3, 6))
    return {"implementation": primitives.IMPLEMENTATION, "cases": cases}


def figures(data: dict[str, Any]) -> list[targets.Figure]:
    out: list[targets.Figure] = []
    cases = data["cases"]
    if "pipeline throughput" in cases:
        case = "pipeline throughput"
        out.append(
            targets.Figure(
                case,
                targets.target_id(case, data["implementation"]),
                cases[case]["spans_per_second"],
                targets.CASES[case],
            )
        )
    for impl, cost in cases.get("threshold crossing", {}).items():
        case = "threshold crossing"
        out.append(
            targets.Figure(
                case, targets.target_id(case, impl), cost["cost_ns"], targets.CASES[case]
            )
        )
    return out


def format_lines(data: dict[str, Any]) -> list[str]:
    cases = data["cases"]
    lines: list[str] = []
    if "pipeline throughput" in cases:
        p = cases["pipeline throughput"]
        capacity = p["spans_per_pipeline_cpu_second"]
        lines.append(
            f"Pipeline: {p['spans_per_second']:,} spans/s into jsonfile end to end "
            f"({p['spans_written']:,} spans + long_hold events in {p['total_seconds']} s, "
            f"thresholds 0; the median of {p.get('runs', 1)} runs)"
            + (f"; {capacity:,} spans per second of pipeline CPU." if capacity else ".")
        )
    if "drops when outrun" in cases:
        d = cases["drops when outrun"]
        acc = d["accounting"]
        lines.append(
            f"Outrun: {d['records']:,} records at {d['app_records_per_second']:,}/s into a "
            f"buffer of {d['buffer_size']:,}: {acc['exported']:,} exported, "
            f"{acc['dropped']:,} dropped, {acc['failed']} failed "
            f"({'balanced' if d['balanced'] else 'NOT balanced'})."
        )
    for impl, c in cases.get("threshold crossing", {}).items():
        lines.append(
            f"Threshold crossing ({impl}): {c['cost_ns']:.0f} ns of app-thread CPU per event "
            f"({c['crossing_ns_per_op']:.0f} against {c['not_crossing_ns_per_op']:.0f} ns "
            "a with-block)."
        )
    if "lock-order checking" in cases:
        lo = cases["lock-order checking"]
        lines.append(
            f"Lock-order checking (opt-in): two nested with-blocks {lo['off_ns_per_op']:.0f} ns "
            f"with it off, {lo['on_ns_per_op']:.0f} ns on ({lo['ratio']:.1f}x)."
        )
    return lines
