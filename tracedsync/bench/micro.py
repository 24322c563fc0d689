"""Every primitive's operations: plain ``threading`` against tracedsync.

Columns: ``plain`` (the stdlib), ``compiled`` (the C hot path, when the
extension is built) and ``pure`` (the pure-Python reference) for ``Lock``,
``RLock``, ``Semaphore`` and ``BoundedSemaphore``; the other primitives have
one implementation, measured once (under ``compiled`` when the extension is
built, else under ``pure``). If
``ddtrace`` is importable its lock profiler is a further column for
``Lock`` and ``RLock`` (it is never a dependency).

Every case is measured in several repetitions; each repetition runs every
column once, in a rotating order, with the garbage collector paused. The
figure is the median over repetitions, in nanoseconds per operation (per
round trip for a ping-pong); the ratio is traced / plain.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tracedsync
from tracedsync import _stdlib, lifecycle, patching, primitives
from tracedsync.bench import targets
from tracedsync.bench.timing import (
    UNROLL,
    Progress,
    Runner,
    Settings,
    gc_paused,
    one_cpu,
    rotated,
    traced_implementations,
    unrolled,
)

#: Round trips of a ping-pong per operation of the base count (one costs
#: 30-80 us here: 1,000 of them per repetition with --quick).
PING_PONG_SCALE = 0.025


# --------------------------------------------------------------------------
# Columns: one set of primitive factories each
# --------------------------------------------------------------------------


@dataclass
class Column:
    """One implementation under test: a factory for each primitive it measures."""

    name: str
    factories: dict[str, Callable[[], Any]]
    #: Primitives whose code is the same as another column's (not measured twice).
    same_as: dict[str, str] = field(default_factory=dict)

    def measures(self, primitive: str) -> bool:
        return primitive in self.factories and primitive not in self.same_as


def plain_column() -> Column:
    import queue

    std = _stdlib
    return Column(
        "plain",
        {
            "Lock": std.Lock,
            "RLock": std.RLock,
            "Semaphore": lambda: std.Semaphore(1),
            "BoundedSemaphore": lambda: std.BoundedSemaphore(1),
            "Condition": lambda: std.Condition(std.RLock()),
            "Event": std.Event,
            "Queue": queue.Queue,
        },
    )


def queue_under_install() -> Any:
    """A ``queue.Queue`` made while ``tracedsync.install()`` patches threading:
    its mutex and three conditions are traced, as in a program under
    ``tracedsync run``."""
    import queue

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
    active = lock_cls is primitives.Lock
    sem_cls: Any = p.PureSemaphore if lock_cls is p.PureLock else p.CompiledSemaphore
    bounded_cls: Any = (
        p.PureBoundedSemaphore if lock_cls is p.PureLock else p.CompiledBoundedSemaphore
    )
    return Column(
        name,
        {
            "Lock": lambda: lock_cls(name="bench_lock"),
            "RLock": lambda: rlock_cls(name="bench_rlock"),
            "Semaphore": lambda: sem_cls(1, name="bench_semaphore"),
            "BoundedSemaphore": lambda: bounded_cls(1, name="bench_bounded_semaphore"),
            "Condition": lambda: p.Condition(
                rlock_cls(name="bench_condition"), name="bench_condition"
            ),
            "Event": lambda: p.Event(name="bench_event"),
            "Queue": queue_under_install if active else (lambda: queue_with(lock_cls)),
        },
    )


def traced_columns() -> list[Column]:
    """The compiled column (when built) and the pure-Python one."""
    out = [_traced_column(*impl) for impl in traced_implementations()]
    if len(out) > 1:
        # Event has one implementation: measured once.
        out[-1].same_as = {"Event": out[0].name}
    return out


class _DdtraceProfiler:
    """ddtrace's profiler with its lock collector, when ddtrace is importable.

    Only ``Lock`` and ``RLock`` are compared. Its locks must be made while the
    profiler runs (it patches ``threading``'s names), and so would be the
    stdlib's own Semaphore, Condition and Event internals: :func:`measure`
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
        return Column(
            "ddtrace", {"Lock": lambda: threading.Lock(), "RLock": lambda: threading.RLock()}
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


def _taken_pair(factory: Callable[[], Any]) -> tuple[Any, Any]:
    """Two objects of ``factory``, each acquired once (a lock locked, a
    semaphore at 0): the other thread's release is what lets an acquire on."""
    pair = (factory(), factory())
    for x in pair:
        x.acquire()
    return pair


def _against(other: Callable[[], None], mine: Callable[[], None], n: int) -> tuple[int, float]:
    """Time ``mine`` (``n`` round trips on this thread) while another thread
    runs ``other``, its partner in every round trip."""
    t = threading.Thread(target=other, daemon=True)
    t.start()
    t0 = time.perf_counter()
    mine()
    t1 = time.perf_counter()
    t.join(120)
    if t.is_alive():
        raise RuntimeError("ping-pong did not finish")
    return n, t1 - t0


def _handoff_ping_pong_free(pair: tuple[Any, Any], n: int) -> tuple[int, float]:
    """One round trip: this thread releases ``ping`` and blocks on ``pong``;
    the other blocks on ``ping`` and releases ``pong`` (a ``Lock`` may be
    released by another thread, a semaphore is a counter)."""
    ping, pong = pair

    def other() -> None:
        for _ in range(n):
            ping.acquire()
            pong.release()

    def mine() -> None:
        for _ in range(n):
            ping.release()
            pong.acquire()

    return _against(other, mine, n)


def _event_ping_pong_free(pair: tuple[Any, Any], n: int) -> tuple[int, float]:
    ping, pong = pair

    def other() -> None:
        for _ in range(n):
            ping.wait()
            ping.clear()
            pong.set()

    def mine() -> None:
        for _ in range(n):
            ping.set()
            pong.wait()
            pong.clear()

    return _against(other, mine, n)


def _condition_ping_pong_free(cond: Any, n: int) -> tuple[int, float]:
    turn = [0]

    def other() -> None:
        with cond:
            for _ in range(n):
                while turn[0] != 1:
                    cond.wait()
                turn[0] = 0
                cond.notify()

    def mine() -> None:
        with cond:
            for _ in range(n):
                turn[0] = 1
                cond.notify()
                while turn[0] != 0:
                    cond.wait()

    return _against(other, mine, n)


def _on_one_cpu(run: Runner) -> Runner:
    """``run`` with both of its threads on one CPU (:func:`one_cpu`)."""

    def pinned(objects: Any, n: int) -> tuple[int, float]:
        with one_cpu():
            return run(objects, n)

    return pinned


_handoff_ping_pong = _on_one_cpu(_handoff_ping_pong_free)
_event_ping_pong = _on_one_cpu(_event_ping_pong_free)
_condition_ping_pong = _on_one_cpu(_condition_ping_pong_free)


@dataclass
class Case:
    """One benchmark case: which primitive, how it is made and run."""

    name: str
    primitive: str  # a key of Column.factories
    style: str  # "uncontended", "explicit", "contended", "ping-pong", "other"
    run: Runner
    #: Share of the base operation count (slow cases run fewer operations).
    scale: float = 1.0
    #: Make the object(s) from the column's factory.
    make: Callable[[Callable[[], Any]], Any] = lambda factory: factory()


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for prim in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
        cases.append(Case(f"{prim} with", prim, "uncontended", unrolled("with x: pass")))
        cases.append(
            Case(
                f"{prim} acquire/release",
                prim,
                "explicit",
                unrolled("x.acquire(); x.release()"),
            )
        )
    cases.append(
        Case("Condition with+notify", "Condition", "uncontended", unrolled("with x: x.notify()"))
    )
    cases.append(Case("Event set/wait", "Event", "uncontended", unrolled("x.set(); x.wait()")))
    cases.append(
        Case("Queue put/get (install)", "Queue", "other", unrolled("x.put(1); x.get()"), 0.25)
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
    for prim in ("Lock", "Semaphore", "BoundedSemaphore"):
        cases.append(
            Case(
                f"{prim} ping-pong",
                prim,
                "ping-pong",
                _handoff_ping_pong,
                scale=PING_PONG_SCALE,
                make=_taken_pair,
            )
        )
    cases.append(
        Case(
            "Event ping-pong",
            "Event",
            "ping-pong",
            _event_ping_pong,
            scale=PING_PONG_SCALE,
            make=lambda factory: (factory(), factory()),
        )
    )
    cases.append(
        Case(
            "Condition ping-pong",
            "Condition",
            "ping-pong",
            _condition_ping_pong,
            scale=PING_PONG_SCALE,
        )
    )
    return cases


def case_names() -> list[str]:
    return [c.name for c in all_cases()]


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


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
            objects[col.name] = case.make(col.factories[case.primitive])
            measured.append(col.name)
    samples: dict[str, list[float]] = {name: [] for name in measured}
    # Warm up (caches, specialisation), then interleave in rotating order.
    for name in measured:
        case.run(objects[name], max(UNROLL, n // 10))
    with gc_paused():
        for rep in range(repeat):
            for name in rotated(measured, rep):
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


def measure(names: list[str], settings: Settings, progress: Progress) -> dict[str, Any]:
    """The cases named, every column side by side. ``settings.factor`` > 1
    (``--check`` measuring again) leaves ddtrace out: its figures stay those
    of the first pass."""
    ops = settings.count(40_000, 200_000)
    repeat = settings.reps(7, 9)
    columns = [plain_column(), *traced_columns()]
    dd: _DdtraceProfiler | None = None
    if settings.ddtrace and settings.factor == 1 and ddtrace_available():
        try:
            dd = _DdtraceProfiler()
            columns.append(dd.column())
        except Exception as exc:  # ddtrace is optional: say why and go on
            progress(f"ddtrace column left out: {type(exc).__name__}: {exc}")
            dd = None
    cases = [c for c in all_cases() if c.name in names]
    configured = lifecycle.active() is not None
    # Cases ddtrace takes part in run last, with its profiler running.
    last = [c for c in cases if dd is not None and c.primitive in dd.PRIMITIVES]
    first = [c for c in cases if c not in last]
    by_name: dict[str, Result] = {}
    try:
        for case in first + last:
            if last and case is last[0] and dd is not None:
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
        if not configured:  # the Queue case's install() configured tracedsync
            tracedsync.shutdown()
    return {
        "ops": ops,
        "repeat": repeat,
        "columns": [c.name for c in columns],
        "ddtrace_version": dd.version if dd is not None else None,
        "cases": {c.name: by_name[c.name].to_json() for c in cases},
    }


def merge_case(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """A case measured again (``--check``), keeping the first pass's columns
    that the second leaves out (ddtrace: its profiler has stopped)."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in again.items()}
    for column, value in first["ns_per_op"].items():
        if merged["ns_per_op"].get(column) is None and value is not None:
            for key in ("ns_per_op", "ratio", "samples_ns"):
                if column in first.get(key, {}):
                    merged[key][column] = first[key][column]
            merged["notes"].pop(column, None)
    return merged


def figures(data: dict[str, Any]) -> list[targets.Figure]:
    out: list[targets.Figure] = []
    for r in data["cases"].values():
        for column, ratio in r["ratio"].items():
            target = targets.micro_target(r["primitive"], r["style"], column)
            if target is not None and ratio is not None:
                out.append(
                    targets.Figure(r["case"], targets.target_id(r["case"], column), ratio, target)
                )
    with_lock = data["cases"].get("Lock with")
    if (
        with_lock
        and with_lock["ns_per_op"].get("ddtrace")
        and with_lock["ns_per_op"].get("compiled")
    ):
        case = "Lock with vs ddtrace"
        ns = with_lock["ns_per_op"]
        out.append(
            targets.Figure(
                case,
                targets.target_id(case, "compiled"),
                ns["ddtrace"] / ns["compiled"],
                targets.CASES[case],
            )
        )
    return out


def _target_cell(r: dict[str, Any], columns: list[str]) -> str:
    cells = []
    for column in columns:
        target = targets.micro_target(r["primitive"], r["style"], column)
        if target is not None and r["ns_per_op"].get(column) is not None:
            cells.append(f"{column[0]} {target.limit:g}x")
    return ", ".join(cells)


def format_lines(data: dict[str, Any]) -> list[str]:
    cols = [c for c in data["columns"] if c != "plain"]
    head = f"{'case':<32}{'plain':>9}" + "".join(f"{c:>10}{'x':>7}" for c in cols)
    head += "  target"
    lines = [head, "-" * len(head)]
    for r in data["cases"].values():
        ns = r["ns_per_op"]
        row = f"{r['case']:<32}{ns['plain']:>9.0f}"
        for c in cols:
            value = ns.get(c)
            ratio = r["ratio"].get(c)
            if value is None or ratio is None:
                mark = "(same)" if r["notes"].get(c, "").startswith("same") else "-"
                row += f"{mark:>10}{'':>7}"
            else:
                row += f"{value:>10.0f}{ratio:>6.2f}x"
        lines.append(f"{row}  {_target_cell(r, cols)}".rstrip())
    lines.append("")
    lines.append(
        f"ns per operation (a ping-pong: per round trip), median of {data['repeat']} "
        f"interleaved repetitions of {data['ops']} operations; x = column / plain; "
        "target: c = compiled, p = pure."
    )
    if data.get("ddtrace_version"):
        lines.append(
            f"ddtrace {data['ddtrace_version']}: its profiler with the lock collector only "
            "(default capture rate), locks made while it runs."
        )
    return lines
