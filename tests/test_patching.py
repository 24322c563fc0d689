"""install() / uninstall(): threading patched for the whole program, and back."""

from __future__ import annotations

import _thread
import concurrent.futures
import io
import json
import logging
import multiprocessing.pool
import os
import queue
import sys
import textwrap
import threading
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedsync
from tracedsync import _stdlib, patching
from tracedsync.testing import blocked_on, run_threads, wait_until


@pytest.fixture
def installed(spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    tracedsync.install(exporters=[spans])
    try:
        yield spans
    finally:
        tracedsync.uninstall()


def test_round_trip_restores_the_exact_objects() -> None:
    """install() twice and uninstall() twice leave threading `is`-identical."""
    before = {name: getattr(threading, name) for name in patching.PATCHED_NAMES}
    tracedsync.install()
    tracedsync.install()
    assert tracedsync.installed()
    for name in patching.PATCHED_NAMES:
        assert getattr(threading, name) is getattr(tracedsync, name)
    tracedsync.uninstall()
    tracedsync.uninstall()
    assert not tracedsync.installed()
    for name, original in before.items():
        assert getattr(threading, name) is original
        assert original is _stdlib.ORIGINALS[name]


def test_allocate_lock_is_left_alone(installed: Any) -> None:
    """_thread.allocate_lock and threading._allocate_lock are not patched."""
    import _thread

    assert threading._allocate_lock is _thread.allocate_lock  # type: ignore[attr-defined]
    assert type(_thread.allocate_lock()) is type(_stdlib.Lock())


def test_objects_created_after_install_are_traced(installed: Any) -> None:
    """threading.Lock() and friends now return traced primitives, named by site."""
    pool_lock = threading.Lock()
    assert type(pool_lock) is tracedsync.Lock
    assert pool_lock.name.startswith("pool_lock (tests/test_patching.py:")
    for name in patching.PATCHED_NAMES:
        assert isinstance(getattr(threading, name), type)
    assert type(threading.Event()) is tracedsync.Event


def test_rebinds_names_imported_from_threading() -> None:
    """A module that did `from threading import Lock` earlier is patched and restored."""
    module = types.ModuleType("myapp_locks")
    module.Lock = threading.Lock  # type: ignore[attr-defined]
    module.Event = threading.Event  # type: ignore[attr-defined]
    sys.modules["myapp_locks"] = module
    try:
        tracedsync.install()
        assert module.Lock is tracedsync.Lock  # type: ignore[attr-defined]
        assert module.Event is tracedsync.Event  # type: ignore[attr-defined]
        tracedsync.uninstall()
        assert module.Lock is _stdlib.Lock  # type: ignore[attr-defined]
        assert module.Event is _stdlib.Event  # type: ignore[attr-defined]
    finally:
        del sys.modules["myapp_locks"]


def test_queue_get_blocking_is_a_wait_on_its_condition(installed: InMemorySpanExporter) -> None:
    """queue.Queue works unchanged; a blocking get() is a condition.wait on not_empty."""
    tracedsync.configure(exporters=[installed], wait_threshold_ms=0)
    q: queue.Queue[int] = queue.Queue()
    assert type(q.not_empty) is tracedsync.Condition
    assert q.not_empty.name.startswith("not_empty (queue.py:")
    assert type(q.mutex) is tracedsync.Lock
    got: list[int] = []

    def consumer() -> None:
        got.append(q.get(timeout=10))

    def producer() -> None:
        wait_until(blocked_on(q.not_empty, idle=True))
        q.put(42)

    run_threads(consumer, producer)
    assert got == [42]
    assert tracedsync.flush(10)
    waits = [s for s in installed.get_finished_spans() if s.name == "condition.wait"]
    assert waits and waits[0].attributes["sync.name"] == q.not_empty.name
    assert waits[0].attributes["sync.outcome"] == "notified"
    assert waits[0].attributes["code.function.name"] == "consumer"


def test_stdlib_users_work_unchanged(installed: Any) -> None:
    """ThreadPoolExecutor, Timer, multiprocessing ThreadPool and Barrier work as before."""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda x: x * x, range(50))) == [x * x for x in range(50)]
    fired = threading.Event()
    timer = threading.Timer(0.01, fired.set)
    timer.start()
    assert fired.wait(10)
    timer.join(10)
    assert type(timer.finished) is tracedsync.Event
    with multiprocessing.pool.ThreadPool(3) as tp:
        assert tp.map(abs, [-1, -2, -3]) == [1, 2, 3]
    barrier = threading.Barrier(2)
    run_threads(barrier.wait, barrier.wait)


def test_threading_internals_and_excluded_modules_stay_untraced(installed: Any) -> None:
    """Thread internals, logging and OpenTelemetry get the stdlib's objects."""
    t = threading.Thread(target=lambda: None)
    assert type(t._started) is _stdlib.Event  # type: ignore[attr-defined]
    handler = logging.StreamHandler(io.StringIO())
    assert type(handler.lock) is not tracedsync.RLock
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    assert type(provider._active_span_processor._lock) is not tracedsync.Lock


def test_isinstance_threading_lock_holds_for_untraced_locks_too(installed: Any) -> None:
    """After install(), isinstance(x, threading.Lock) (a type on 3.13, so code
    checks it) and isinstance(x, threading.RLock) hold for the traced locks and
    for the stdlib's untraced ones that excluded modules get; a subclass of
    ours keeps the usual check. type() tells a traced lock."""
    from tracedsync import primitives

    traced, traced_r = threading.Lock(), threading.RLock()
    assert type(traced) is tracedsync.Lock and type(traced_r) is tracedsync.RLock
    untraced = [_stdlib.Lock(), _thread.allocate_lock()]
    untraced_r = [_stdlib.RLock(), logging.StreamHandler(io.StringIO()).lock]
    assert type(untraced_r[1]) is not tracedsync.RLock  # logging is excluded
    implementations = [(primitives.PureLock, primitives.PureRLock)]
    implementations.append((tracedsync.Lock, tracedsync.RLock))
    for lock_cls, rlock_cls in implementations:
        assert all(isinstance(x, lock_cls) for x in [*untraced, lock_cls()])
        assert all(isinstance(x, rlock_cls) for x in [*untraced_r, rlock_cls()])
        assert not any(isinstance(x, lock_cls) for x in [*untraced_r, traced_r, object()])
        assert not any(isinstance(x, rlock_cls) for x in [*untraced, traced, None])
        assert issubclass(type(untraced[0]), lock_cls)
        assert issubclass(type(untraced_r[0]), rlock_cls)
        assert not issubclass(type(untraced_r[0]), lock_cls)

    class Sub(tracedsync.Lock):  # type: ignore[valid-type,misc]
        pass

    assert isinstance(Sub(), threading.Lock)
    assert not isinstance(untraced[0], Sub) and not issubclass(type(untraced[0]), Sub)


def test_a_queue_or_future_an_excluded_module_makes_stays_untraced(installed: Any) -> None:
    """queue and concurrent.futures make primitives for their caller: made for
    an excluded module (grpc's server submitting work) they are the
    stdlib's; made for the program, traced and named where the stdlib makes
    them."""
    code = "q = queue.Queue(); f = concurrent.futures.Future()"
    made = {}
    for module in ("grpc._server", "myapp.jobs"):
        scope: dict[str, Any] = {"__name__": module, "queue": queue, "concurrent": concurrent}
        exec(code, scope)
        made[module] = scope
    grpc, mine = made["grpc._server"], made["myapp.jobs"]
    assert type(grpc["q"].mutex) is type(_stdlib.Lock())
    assert type(grpc["f"]._condition) is _stdlib.Condition
    assert type(mine["q"].mutex) is tracedsync.Lock
    assert type(mine["f"]._condition) is tracedsync.Condition
    assert mine["q"].mutex.name.startswith("mutex (queue.py:")
    assert mine["f"]._condition.name.startswith("_condition (concurrent/futures/_base.py:")


def test_include_logging_traces_its_locks(spans: InMemorySpanExporter) -> None:
    """include=["logging"] opts logging's handler locks back in."""
    tracedsync.install(exporters=[spans], include=["logging"])
    try:
        handler = logging.StreamHandler(io.StringIO())
        assert type(handler.lock) is tracedsync.RLock
        assert handler.lock.name.startswith("lock (logging/__init__.py:")
    finally:
        tracedsync.uninstall()


def test_no_span_describes_telemetry_internals(tmp_path: Path) -> None:
    """With install() and busy exporters, a workload of thousands of spans ends,
    and no span is about a lock of the SDK, structlog or tracedsync."""
    mem = InMemorySpanExporter()
    tracedsync.install(
        exporters=[mem, "jsonfile", "console"],
        output_dir=str(tmp_path),
        hold_threshold_ms=0,
        max_spans_per_second=0,
    )
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    saved = sys.stderr
    sys.stderr = devnull
    try:
        lock = threading.Lock()
        start = threading.Barrier(4)  # traced too: its waits are spans

        def work() -> None:
            start.wait()
            for _ in range(1000):
                with lock:
                    pass

        run_threads(*[work] * 4)
        assert tracedsync.flush(30)
    finally:
        sys.stderr = saved
        devnull.close()
        tracedsync.uninstall()
    spans = mem.get_finished_spans()
    assert len(spans) >= 4000
    paths = {s.attributes.get("code.file.path", "") for s in spans}
    for path in paths:
        assert "opentelemetry" not in path and "structlog" not in path
        # Not about tracedsync itself (a clone is called tracedsync too: compare
        # with the installed package's own directory).
        assert not path.startswith(os.path.dirname(os.path.abspath(tracedsync.__file__)) + os.sep)
    names = {s.attributes["sync.name"] for s in spans}
    assert names <= {lock.name, start.name}


def test_fork_child_has_working_primitives_and_pipeline(tmp_path: Path) -> None:
    """After os.fork() in an installed process, the child's primitives, stats and
    pipeline work (its own files, its own pid)."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    tracedsync.install(exporters=["jsonfile"], output_dir=str(tmp_path), hold_threshold_ms=0)
    held = threading.Lock()
    held.acquire()  # held across the fork by this (the parent's) thread
    read_end, write_end = os.pipe()
    try:
        with warnings.catch_warnings():
            # 3.12+: forking with the pipeline thread alive warns; expected.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child
            status = 1
            try:
                os.close(read_end)
                lock = threading.Lock()
                for _ in range(5):
                    with lock:
                        pass
                ok = tracedsync.flush(10)
                report = {
                    "acquisitions": lock.statistics().acquisitions,
                    "flushed": ok,
                    "pid": os.getpid(),
                    "type": type(lock).__name__,
                }
                os.write(write_end, json.dumps(report).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        held.release()
        tracedsync.uninstall()
    assert os.waitstatus_to_exitcode(status) == 0
    report = json.loads(data)
    assert report == {"acquisitions": 5, "flushed": True, "pid": pid, "type": "Lock"}
    child_spans = list(tmp_path.glob(f"spans-*-{pid}.jsonl"))
    assert child_spans and child_spans[0].read_text().count('"lock.hold"') >= 5


def test_configure_in_a_subinterpreter_starts_no_thread(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """install() inside a subinterpreter leaves tracing off there: no tracedsync
    thread starts (Py_EndInterpreter aborts while one runs), the primitives stay
    the stdlib's, nothing is written, and one line says so."""
    support = pytest.importorskip("test.support")
    pytest.importorskip("_testcapi")
    result = tmp_path / "result.json"
    code = textwrap.dedent(
        f"""
        import json, threading, tracedsync
        before = threading.active_count()
        config = tracedsync.install(exporters=["jsonfile"], output_dir={str(tmp_path)!r})
        lock = threading.Lock()
        with lock:
            pass
        report = {{
            "enabled": config.enabled,
            "new_threads": threading.active_count() - before,
            "lock": type(lock).__module__,
        }}
        tracedsync.uninstall()
        tracedsync.shutdown()
        with open({str(result)!r}, "w") as f:
            json.dump(report, f)
        """
    )
    assert support.run_in_subinterp(code) == 0
    assert json.loads(result.read_text()) == {"enabled": False, "new_threads": 0, "lock": "_thread"}
    assert not list(tmp_path.glob("*.jsonl"))
    err = capfd.readouterr().err
    assert err.count("tracedsync: not started in a subinterpreter") == 1, err
