"""``tracedsync bench``: what tracing costs, measured on this machine.

Everything runs in one process: plain ``threading`` against tracedsync, for
each primitive and, for ``Lock`` and ``RLock``, for both implementations
(the compiled hot path and the pure-Python reference) when the extension is
built. If ``ddtrace`` is importable its lock profiler is a further column
(it is never a dependency).

Method: every case is measured in several repetitions; each repetition runs
every column once, in a rotating order (plain and traced interleave, so a
noisy neighbour hits all columns alike), with the garbage collector paused.
The figure is the median over repetitions, in nanoseconds per operation;
the ratio is traced / plain. Loop bodies are unrolled ten times so the loop
itself costs little.

Then the telemetry side: how many records per second become spans written
by the ``jsonfile`` exporter (thresholds at 0), how many records are dropped
when the application outruns the pipeline, and what one event crossing a
threshold costs the application thread (its CPU time, so the pipeline
thread's work is not counted).

``--check`` exits 1 when a ``Lock``/``RLock`` ratio is more than
``CHECK_MARGIN`` times its target (``TARGETS``): a guard against regressions
that tolerates a noisy machine. Timing is never asserted by the unit tests.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tracedsync import _impl, _stdlib, primitives, records
from tracedsync.exporters.base import Exporter

#: (column, style) -> the ratio traced / plain that tracedsync aims at, for
#: uncontended ``Lock`` and ``RLock``.
TARGETS: dict[tuple[str, str], float] = {
    ("compiled", "with"): 1.2,
    ("compiled", "explicit"): 1.5,
    ("pure", "with"): 3.0,
    ("pure", "explicit"): 6.0,
}
#: ``--check`` fails only on a ratio this many times over its target.
CHECK_MARGIN = 2.0
#: Records per second into the jsonfile exporter, thresholds at 0.
PIPELINE_TARGET_PER_S = 30_000
#: App-thread cost of one event crossing a threshold.
CROSSING_TARGET_NS = 2_000
#: tracedsync's compiled ``with Lock()`` should be this many times cheaper than ddtrace's.
DDTRACE_FACTOR = 4.0

UNROLL = 10


# --------------------------------------------------------------------------
# Columns: one set of primitive factories each
# --------------------------------------------------------------------------


@dataclass
class Column:
    """One implementation under test: factories for every primitive."""

    name: str
    Lock: Callable[[], Any]
    RLock: Callable[[], Any]
    Semaphore: Callable[[], Any]
    BoundedSemaphore: Callable[[], Any]
    Condition: Callable[[], Any]
    Event: Callable[[], Any]
    Queue: Callable[[], Any] = field(default=lambda: _unavailable("Queue"))
    #: Primitives whose code is the same as another column's (not measured twice).
    same_as: dict[str, str] = field(default_factory=dict)
    #: When set, the only primitives this column measures.
    only: frozenset[str] | None = None

    def measures(self, primitive: str) -> bool:
        return primitive not in self.same_as and (self.only is None or primitive in self.only)


def _unavailable(what: str) -> Any:
    raise RuntimeError(f"no {what} in this column")


def plain_column() -> Column:
    import queue

    std = _stdlib
    return Column(
        "plain",
        Lock=std.Lock,
        RLock=std.RLock,
        Semaphore=lambda: std.Semaphore(1),
        BoundedSemaphore=lambda: std.BoundedSemaphore(1),
        Condition=lambda: std.Condition(std.RLock()),
        Event=std.Event,
        Queue=queue.Queue,
    )


def queue_under_install() -> Any:
    """A ``queue.Queue`` made while ``tracedsync.install()`` patches threading:
    its mutex and three conditions are traced, as in a program under
    ``tracedsync run``."""
    import queue

    from tracedsync import patching

    was_installed = patching.installed()
    patching.install()
    try:
        return queue.Queue()
    finally:
        if not was_installed:
            patching.uninstall()


def queue_with(lock_cls: Any) -> Any:
    """A ``queue.Queue`` whose mutex is ``lock_cls`` (the same four primitives
    install() gives it, for the implementation that is not the active one)."""
    import queue

    q: Any = queue.Queue()
    q.mutex = lock_cls(name="mutex")
    q.not_empty = primitives.Condition(q.mutex, name="not_empty")
    q.not_full = primitives.Condition(q.mutex, name="not_full")
    q.all_tasks_done = primitives.Condition(q.mutex, name="all_tasks_done")
    return q


def _traced_column(name: str, lock_cls: Any, rlock_cls: Any) -> Column:
    p = primitives
    return Column(
        name,
        Lock=lambda: lock_cls(name="bench_lock"),
        RLock=lambda: rlock_cls(name="bench_rlock"),
        Semaphore=lambda: p.Semaphore(1, name="bench_semaphore"),
        BoundedSemaphore=lambda: p.BoundedSemaphore(1, name="bench_bounded_semaphore"),
        Condition=lambda: p.Condition(rlock_cls(name="bench_condition"), name="bench_condition"),
        Event=lambda: p.Event(name="bench_event"),
        Queue=(lambda: queue_under_install())
        if lock_cls is primitives.Lock
        else (lambda: queue_with(lock_cls)),
    )


def traced_columns() -> list[Column]:
    """The compiled column (when built) and the pure-Python one."""
    out = []
    if primitives.CompiledLock is not None:
        out.append(_traced_column("compiled", primitives.CompiledLock, primitives.CompiledRLock))
    pure = _traced_column("pure", primitives.PureLock, primitives.PureRLock)
    if out:
        # Semaphores and Event have one implementation: measured once.
        pure.same_as = {k: "compiled" for k in ("Semaphore", "BoundedSemaphore", "Event")}
    out.append(pure)
    return out


_now = time.monotonic_ns
_get_ident = threading.get_ident


class _DdtraceProfiler:
    """ddtrace's profiler with its lock collector, when ddtrace is importable.

    Only ``Lock`` and ``RLock`` are compared. Its locks must be made while the
    profiler runs (it patches ``threading``'s names), and so would be the
    stdlib's own Semaphore, Condition and Event internals: ``run_bench``
    therefore measures every other case first and starts the profiler just
    before the ``Lock``/``RLock`` cases. Profiles go to a temporary
    directory, never to an agent.
    """

    PRIMITIVES = frozenset({"Lock", "RLock"})

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tracedsync-bench-ddtrace-")
        # Read when ddtrace is imported: its lock collector alone (its memory
        # and heap collectors hook the allocator and would slow every column).
        for variable, value in (
            ("DD_PROFILING_OUTPUT_PPROF", os.path.join(self.dir, "profile")),
            ("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false"),
            ("DD_PROFILING_LOCK_ENABLED", "true"),
            ("DD_PROFILING_STACK_ENABLED", "false"),
            ("DD_PROFILING_MEMORY_ENABLED", "false"),
            ("DD_PROFILING_HEAP_ENABLED", "false"),
            ("DD_PROFILING_EXCEPTION_ENABLED", "false"),
        ):
            os.environ.setdefault(variable, value)
        from ddtrace.profiling import Profiler  # type: ignore[import-not-found]

        self.profiler = Profiler()
        self.version = _ddtrace_version()
        self.running = False

    def column(self) -> Column:
        def unavailable() -> Any:
            raise RuntimeError("ddtrace column measures Lock and RLock only")

        return Column(
            "ddtrace",
            Lock=lambda: threading.Lock(),
            RLock=lambda: threading.RLock(),
            Semaphore=unavailable,
            BoundedSemaphore=unavailable,
            Condition=unavailable,
            Event=unavailable,
            only=self.PRIMITIVES,
        )

    def start(self) -> None:
        self.profiler.start()
        self.running = True
        if type(threading.Lock()) is type(_stdlib.Lock()):
            raise RuntimeError("ddtrace's profiler did not patch threading.Lock")

    def stop(self) -> None:
        if self.running:
            self.running = False
            try:
                self.profiler.stop(flush=False)
            except TypeError:
                self.profiler.stop()
            except Exception:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _ddtrace_version() -> str:
    try:
        from importlib.metadata import version

        return version("ddtrace")
    except Exception:
        return "?"


def ddtrace_available() -> bool:
    import importlib.util

    try:  # the top-level package only: importing ddtrace reads its settings
        return importlib.util.find_spec("ddtrace") is not None
    except Exception:
        return False


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

#: A measurement: given the object(s) made by ``setup`` and a count, run and
#: return (operations, seconds).
Runner = Callable[[Any, int], tuple[int, float]]


def _unrolled(body: str, prelude: str = "") -> Runner:
    """A runner executing ``body`` (one line, ``x`` is the object) n times."""
    lines = ["def run(x, n):"]
    if prelude:
        lines.append(f"    {prelude}")
    lines.append(f"    loops = range(max(1, n // {UNROLL}))")
    lines.append("    t0 = perf_counter()")
    lines.append("    for _ in loops:")
    lines.extend(f"        {body}" for _ in range(UNROLL))
    lines.append("    t1 = perf_counter()")
    lines.append(f"    return len(loops) * {UNROLL}, t1 - t0")
    scope: dict[str, Any] = {"perf_counter": time.perf_counter}
    exec(compile("\n".join(lines), f"<tracedsync bench: {body}>", "exec"), scope)
    run: Runner = scope["run"]
    return run


def _contended(threads: int) -> Runner:
    def run(lock: Any, n: int) -> tuple[int, float]:
        per_thread = max(1, n // threads)
        start = _stdlib.Barrier(threads + 1)
        ends: list[float] = []
        box = [0]

        def work() -> None:
            start.wait()
            for _ in range(per_thread):
                with lock:
                    box[0] += 1
            ends.append(time.perf_counter())

        workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join(120)
        if any(w.is_alive() for w in workers) or box[0] != per_thread * threads:
            raise RuntimeError("contended benchmark did not finish correctly")
        return per_thread * threads, max(ends) - t0

    return run


def _event_ping_pong(pair: tuple[Any, Any], n: int) -> tuple[int, float]:
    ping, pong = pair

    def other() -> None:
        for _ in range(n):
            ping.wait()
            ping.clear()
            pong.set()

    t = threading.Thread(target=other, daemon=True)
    t.start()
    t0 = time.perf_counter()
    for _ in range(n):
        ping.set()
        pong.wait()
        pong.clear()
    t1 = time.perf_counter()
    t.join(120)
    return n, t1 - t0


def _condition_ping_pong(cond: Any, n: int) -> tuple[int, float]:
    turn = [0]

    def other() -> None:
        with cond:
            for _ in range(n):
                while turn[0] != 1:
                    cond.wait()
                turn[0] = 0
                cond.notify()

    t = threading.Thread(target=other, daemon=True)
    t.start()
    t0 = time.perf_counter()
    with cond:
        for _ in range(n):
            turn[0] = 1
            cond.notify()
            while turn[0] != 0:
                cond.wait()
    t1 = time.perf_counter()
    t.join(120)
    return n, t1 - t0


@dataclass
class Case:
    """One benchmark case: which primitive, how it is made and run."""

    name: str
    primitive: str  # Column attribute
    style: str  # "with", "explicit", "contended", "ping-pong", "other"
    run: Runner
    #: Share of the base operation count (slow cases run fewer operations).
    scale: float = 1.0
    #: Make the object(s) from the column's factory.
    make: Callable[[Callable[[], Any]], Any] = lambda factory: factory()


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for prim in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
        cases.append(Case(f"{prim} with", prim, "with", _unrolled("with x: pass")))
        cases.append(
            Case(
                f"{prim} acquire/release",
                prim,
                "explicit",
                _unrolled("x.acquire(); x.release()"),
            )
        )
    cases.append(
        Case("Condition with+notify", "Condition", "other", _unrolled("with x: x.notify()"))
    )
    cases.append(Case("Event set/wait", "Event", "other", _unrolled("x.set(); x.wait()")))
    cases.append(
        Case("Queue put/get (install)", "Queue", "other", _unrolled("x.put(1); x.get()"), 0.25)
    )
    for threads in (2, 4):
        for prim in ("Lock", "RLock"):
            cases.append(
                Case(
                    f"{prim} contended {threads} threads",
                    prim,
                    "contended",
                    _contended(threads),
                    scale=0.5,
                )
            )
    cases.append(
        Case(
            "Event ping-pong",
            "Event",
            "ping-pong",
            _event_ping_pong,
            scale=0.01,
            make=lambda factory: (factory(), factory()),
        )
    )
    cases.append(
        Case(
            "Condition ping-pong",
            "Condition",
            "ping-pong",
            _condition_ping_pong,
            scale=0.01,
        )
    )
    return cases


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Result:
    case: str
    primitive: str
    style: str
    #: column -> median ns per operation (None: same code as another column)
    ns: dict[str, float | None]
    #: column -> all repetitions (ns per operation)
    samples: dict[str, list[float]]
    #: column -> why there is no figure
    notes: dict[str, str] = field(default_factory=dict)

    def ratio(self, column: str) -> float | None:
        value, base = self.ns.get(column), self.ns.get("plain")
        if value is None or not base:
            return None
        return value / base

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "primitive": self.primitive,
            "style": self.style,
            "ns_per_op": {k: (round(v, 1) if v is not None else None) for k, v in self.ns.items()},
            "ratio": {
                k: (round(r, 3) if (r := self.ratio(k)) is not None else None)
                for k in self.ns
                if k != "plain"
            },
            "samples_ns": {k: [round(x, 1) for x in v] for k, v in self.samples.items()},
            "notes": self.notes,
        }


def measure_case(case: Case, columns: list[Column], ops: int, repeat: int) -> Result:
    n = max(UNROLL, int(ops * case.scale))
    objects: dict[str, Any] = {}
    measured = []
    for col in columns:
        if col.measures(case.primitive):
            objects[col.name] = case.make(getattr(col, case.primitive))
            measured.append(col.name)
    samples: dict[str, list[float]] = {name: [] for name in measured}
    # Warm up (caches, specialisation), then interleave in rotating order.
    for name in measured:
        case.run(objects[name], max(UNROLL, n // 10))
    with _gc_paused():
        for rep in range(repeat):
            order = measured[rep % len(measured) :] + measured[: rep % len(measured)]
            for name in order:
                count, seconds = case.run(objects[name], n)
                samples[name].append(seconds * 1e9 / count)
    ns: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for col in columns:
        if col.name in samples:
            ns[col.name] = statistics.median(samples[col.name])
        else:
            ns[col.name] = None
            same = col.same_as.get(case.primitive)
            notes[col.name] = f"same code as {same}" if same else "not measured"
    return Result(case.name, case.primitive, case.style, ns, samples, notes)


def check_failures(results: list[Result]) -> list[str]:
    """Ratios more than CHECK_MARGIN times over their target, as messages."""
    failures = []
    for r in results:
        if r.primitive not in ("Lock", "RLock"):
            continue
        for column in ("compiled", "pure"):
            target = TARGETS.get((column, r.style))
            ratio = r.ratio(column)
            if target is None or ratio is None:
                continue
            if ratio > target * CHECK_MARGIN:
                failures.append(
                    f"{r.case} ({column}): {ratio:.2f}x plain, target {target}x "
                    f"(fails above {target * CHECK_MARGIN:.1f}x)"
                )
    return failures


# --------------------------------------------------------------------------
# The telemetry side
# --------------------------------------------------------------------------


class _NullExporter(Exporter):
    """Takes spans and logs and does nothing (for the threshold-crossing cost)."""

    name = "null"
    wants_spans = True
    wants_logs = True


def _accounting() -> tuple[int, int, int, int]:
    """(produced, exported, dropped, failed): the shared buffer's counts and the
    jsonfile exporter's lane's (its drops counted with the buffer's)."""
    from tracedsync.exporters.lanes import record_totals

    acc = records.accounting
    lane = record_totals().get("jsonfile", {})
    dropped = acc.dropped + lane.get("lane_dropped", 0)
    return (acc.produced, lane.get("exported", 0), dropped, lane.get("failed", 0))


def _delta(before: tuple[int, int, int, int]) -> dict[str, int]:
    after = _accounting()
    keys = ("produced", "exported", "dropped", "failed")
    return {k: a - b for k, a, b in zip(keys, after, before, strict=True)}


def _count_spans(directory: str) -> int:
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
    import tracedsync
    from tracedsync import lifecycle

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
        before = _accounting()
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
        counts = _delta(before)
        written = _count_spans(directory)
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
    import tracedsync

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
        before = _accounting()
        t0 = time.perf_counter()
        for _ in range(records):
            with lock:
                pass
        t_app = time.perf_counter()
        flushed = tracedsync.flush(60.0)
        tracedsync.shutdown()
        counts = _delta(before)
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
    import tracedsync

    run = _unrolled("with x: pass")
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
                    with _gc_paused():
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


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "tracedsync_implementation": _impl.IMPLEMENTATION,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer operations (for CI)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if a Lock/RLock ratio is over {CHECK_MARGIN:g}x its target",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per case")
    parser.add_argument("--ops", type=int, default=None, help="operations per repetition")
    parser.add_argument(
        "--only", action="append", default=None, metavar="TEXT", help="cases containing TEXT"
    )
    parser.add_argument(
        "--no-telemetry",
        action="store_true",
        help="skip the pipeline throughput, drop and threshold-crossing measurements",
    )
    parser.add_argument("--no-ddtrace", action="store_true", help="leave ddtrace out")
    parser.add_argument(
        "--workload",
        action="store_true",
        help="instead: a realistic threaded program, plain against under `tracedsync run` "
        "and with tracedsync's primitives: wall time, CPU and peak memory (--repeat times)",
    )
    parser.add_argument(
        "--items", type=int, default=100_000, help="items the --workload program processes"
    )
    parser.add_argument("--workers", type=int, default=8, help="its worker threads")


def run_bench(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    quick = bool(args.quick)
    ops = args.ops or (40_000 if quick else 200_000)
    repeat = args.repeat or (7 if quick else 9)
    if ops < 1 or repeat < 1:
        from tracedsync.cli import CliError

        raise CliError("--ops and --repeat must be at least 1")
    _check_traced()
    columns = [plain_column(), *traced_columns()]
    dd: _DdtraceProfiler | None = None
    if not args.no_ddtrace and ddtrace_available():
        try:
            dd = _DdtraceProfiler()
            columns.append(dd.column())
        except Exception as exc:  # ddtrace is optional: say why and go on
            progress(f"ddtrace column left out: {type(exc).__name__}: {exc}")
            dd = None
    cases = all_cases()
    if args.only:
        cases = [c for c in cases if any(t.lower() in c.name.lower() for t in args.only)]
    # Cases ddtrace takes part in run last, with its profiler running.
    last = [c for c in cases if dd is not None and c.primitive in dd.PRIMITIVES]
    first = [c for c in cases if c not in last]
    by_name: dict[str, Result] = {}
    try:
        for case in first + last:
            if case is (last[0] if last else None) and dd is not None:
                try:
                    dd.start()
                except Exception as exc:
                    progress(f"ddtrace column left out: {type(exc).__name__}: {exc}")
                    columns = [c for c in columns if c.name != "ddtrace"]
                    dd.stop()
                    dd = None
            progress(f"{case.name} ...")
            by_name[case.name] = measure_case(case, columns, ops, repeat)
    finally:
        if dd is not None:
            dd.stop()
    # --check on a noisy machine: a case over its limit is measured once more,
    # with twice the repetitions, before it can fail the check.
    remeasured = []
    if args.check:
        for case in cases:
            first_pass = by_name[case.name]
            if not check_failures([first_pass]):
                continue
            progress(f"{case.name}: over the --check limit, measuring again ...")
            again = measure_case(case, [c for c in columns if c.name != "ddtrace"], ops, repeat * 2)
            for column, value in first_pass.ns.items():
                if column not in again.ns:  # ddtrace: its profiler has stopped
                    again.ns[column] = value
                    again.samples[column] = first_pass.samples.get(column, [])
            by_name[case.name] = again
            remeasured.append(case.name)
    results = [by_name[c.name] for c in cases]
    out: dict[str, Any] = {
        "machine": machine(),
        "ops": ops,
        "repeat": repeat,
        "columns": [c.name for c in columns],
        "ddtrace_version": dd.version if dd is not None else None,
        "results": [r.to_json() for r in results],
        "targets": {f"{c} {s}": t for (c, s), t in TARGETS.items()},
        "check_margin": CHECK_MARGIN,
        "check_failures": check_failures(results),
        "remeasured": remeasured,
    }
    if not args.no_telemetry:
        lock_factory = primitives.Lock
        records = 20_000 if quick else 100_000
        progress("pipeline throughput ...")
        out["pipeline"] = pipeline_median(
            records, lambda: lock_factory(name="bench_pipeline"), 3 if quick else 5
        )
        progress("drops when the app outruns the pipeline ...")
        out["drops"] = drops_when_outrun(
            records * 2, 4096 if quick else 16384, lambda: lock_factory(name="bench_drops")
        )
        progress("threshold-crossing cost ...")
        crossing: dict[str, Any] = {}
        for col in columns[1:]:
            if col.name in ("compiled", "pure"):
                crossing[col.name] = crossing_cost(col.Lock, 2_000, 3 if quick else 6)
        out["threshold_crossing"] = crossing
        progress("lock-order checking ...")
        out["lock_order"] = lock_order_cost(ops // 4, 3 if quick else 6)
    return out


def lock_order_cost(ops: int, repeat: int) -> dict[str, Any]:
    """``with a: with b:`` (two nested locks of the active implementation) with
    lock-order checking off and on: checking is opt-in and costs this much."""
    import tracedsync

    run = _unrolled("with x[0]:\n            with x[1]: pass")
    samples: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for rep in range(repeat):
            modes = ("off", "on")
            for mode in modes if rep % 2 == 0 else modes[::-1]:
                tracedsync.configure(lock_order=mode == "on")
                pair = (primitives.Lock(name="order_a"), primitives.Lock(name="order_b"))
                run(pair, min(ops, 1000))
                with _gc_paused():
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


def _check_traced() -> None:
    from tracedsync.cli import CliError

    traced = tuple(c for c in (primitives.PureLock, primitives.CompiledLock) if c is not None)
    if not isinstance(primitives.Lock(name="bench_probe"), traced):
        raise CliError(
            "tracedsync is disabled here (TRACEDSYNC_DISABLED, or created from an excluded "
            "module): there is nothing to compare"
        )


def format_table(out: dict[str, Any]) -> str:
    cols = [c for c in out["columns"] if c != "plain"]
    head = f"{'case':<32}{'plain':>9}" + "".join(f"{c:>10}{'x':>7}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in out["results"]:
        ns = r["ns_per_op"]
        row = f"{r['case']:<32}{ns['plain']:>9.0f}"
        for c in cols:
            value = ns.get(c)
            ratio = r["ratio"].get(c)
            if value is None:
                mark = "(same)" if r["notes"].get(c, "").startswith("same") else "-"
                row += f"{mark:>10}{'':>7}"
            else:
                row += f"{value:>10.0f}{ratio:>6.2f}x"
        lines.append(row)
    m = out["machine"]
    lines.append("")
    lines.append(
        f"ns per operation, median of {out['repeat']} interleaved repetitions of "
        f"{out['ops']} operations; x = column / plain."
    )
    lines.append(
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['system']}, "
        f"{m['implementation']} {m['python']}; tracedsync.Lock is {m['tracedsync_implementation']}."
    )
    if out.get("ddtrace_version"):
        lines.append(
            f"ddtrace {out['ddtrace_version']}: its profiler with the lock collector only "
            "(default capture rate), locks made while it runs."
        )
    targets = ", ".join(f"{k} <= {v}x" for k, v in out["targets"].items())
    lines.append(f"Targets (Lock/RLock uncontended): {targets}.")
    if "pipeline" in out:
        p = out["pipeline"]
        lines.append("")
        capacity = p["spans_per_pipeline_cpu_second"]
        lines.append(
            f"Pipeline: {p['spans_per_second']:,} spans/s into jsonfile end to end "
            f"({p['spans_written']:,} spans + long_hold events in {p['total_seconds']} s, "
            f"thresholds 0; the median of {p.get('runs', 1)} runs); "
            + (f"{capacity:,} spans per second of pipeline CPU" if capacity else "")
            + f" (target >= {PIPELINE_TARGET_PER_S:,}/s)."
        )
        d = out["drops"]
        acc = d["accounting"]
        lines.append(
            f"Outrun: {d['records']:,} records at {d['app_records_per_second']:,}/s into a "
            f"buffer of {d['buffer_size']:,}: {acc['exported']:,} exported, "
            f"{acc['dropped']:,} dropped, {acc['failed']} failed "
            f"({'balanced' if d['balanced'] else 'NOT balanced'})."
        )
        for col, c in out["threshold_crossing"].items():
            lines.append(
                f"Threshold crossing ({col}): {c['cost_ns']:.0f} ns of app-thread CPU per "
                f"event (target <= {CROSSING_TARGET_NS} ns)."
            )
        lo = out["lock_order"]
        lines.append(
            f"Lock-order checking (opt-in): two nested with-blocks {lo['off_ns_per_op']:.0f} ns "
            f"with it off, {lo['on_ns_per_op']:.0f} ns on ({lo['ratio']:.1f}x)."
        )
    failures = out["check_failures"]
    lines.append("")
    if out.get("remeasured"):
        lines.append(f"Measured twice (over the limit at first): {', '.join(out['remeasured'])}.")
    if failures:
        lines.append("Over the --check limit:")
        lines.extend(f"  {f}" for f in failures)
    else:
        lines.append(f"All Lock/RLock ratios within {CHECK_MARGIN:g}x of their targets.")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    def progress(message: str) -> None:
        if not args.json:
            sys.stderr.write(f"  {message}\n")
            sys.stderr.flush()

    if args.workload:
        from tracedsync import bench_workload

        if args.items < 1 or args.workers < 1 or (args.repeat is not None and args.repeat < 1):
            from tracedsync.cli import CliError

            raise CliError("--items, --workers and --repeat must be at least 1")
        result = bench_workload.compare(args.items, args.workers, args.repeat or 5, progress)
        if args.json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
        else:
            sys.stdout.write(bench_workload.format_comparison(result) + "\n")
        return 0
    out = run_bench(args, progress)
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(format_table(out) + "\n")
    if args.check and out["check_failures"]:
        return 1
    return 0
