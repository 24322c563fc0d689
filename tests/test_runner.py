"""`tracedsync run`: real programs, real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

TRACEDSYNC = [sys.executable, "-m", "tracedsync"]


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    full_env.update(env or {})
    return subprocess.run(
        [*TRACEDSYNC, *args],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spans_in(directory: Path, pid: int | None = None) -> list[dict[str, Any]]:
    out = []
    pattern = f"spans-*-{pid}.jsonl" if pid else "spans-*.jsonl"
    for path in directory.glob(pattern):
        for line in path.read_text().splitlines():
            request = json.loads(line)
            for rs in request["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        span["attrs"] = {
                            a["key"]: next(iter(a["value"].values())) for a in span["attributes"]
                        }
                        out.append(span)
    return out


WORKLOAD = """
    import concurrent.futures, logging, queue, subprocess, sys, threading, time

    # queue.Queue between a producer and slower consumers
    q = queue.Queue(maxsize=2)
    def producer():
        for i in range(40):
            q.put(i)
        for _ in range(2):
            q.put(None)
    def consumer():
        while q.get() is not None:
            time.sleep(0.002)
    threads = [threading.Thread(target=producer)]
    threads += [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join(30)

    # ThreadPoolExecutor map over a contended lock
    cache_lock = threading.Lock()
    def work(x):
        with cache_lock:
            time.sleep(0.002)
            return x * x
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        squares = list(pool.map(work, range(20)))

    # logging from many threads: output unchanged
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    log_threads = [threading.Thread(target=logging.info, args=(f"log {i}",)) for i in range(8)]
    for t in log_threads: t.start()
    for t in log_threads: t.join(30)

    # a child Python process with its own contention
    child = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, text=True)
    print("squares", sum(squares))
    print(child.stdout.strip(), child.returncode)
    sys.exit(7)
"""


CHILD = """
    import threading, time
    child_lock = threading.Lock()
    def hold():
        with child_lock:
            time.sleep(0.02)
    ts = [threading.Thread(target=hold) for _ in range(3)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print("child", type(child_lock).__module__)
    raise SystemExit(5)
"""


def test_program_with_queue_pool_logging_and_child(tmp_path: Path) -> None:
    """Everything works unchanged under `tracedsync run`, exit codes pass through, and
    the contended primitives (the child's too) produce spans in one run's files."""
    script = write(tmp_path, "app.py", WORKLOAD)
    child = write(tmp_path, "child.py", CHILD)
    result = run(tmp_path, "run", "--", sys.executable, str(script), str(child))
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("log ")) == sorted(
        f"log {i}" for i in range(8)
    )
    assert "squares 2470" in lines
    assert "child tracedsync 5" in lines
    out = tmp_path / "tracedsync-out"
    run_ids = {p.name.split("-")[1] for p in out.glob("*.jsonl")}
    assert len(run_ids) == 1
    pids = {int(p.name.rsplit("-", 1)[1].split(".")[0]) for p in out.glob("spans-*.jsonl")}
    assert len(pids) == 2  # the program and its child
    spans = spans_in(out)
    names = {(s["name"], s["attrs"]["sync.name"].split(" (")[0]) for s in spans}
    assert ("condition.wait", "not_full") in names or ("condition.wait", "not_empty") in names
    assert ("lock.wait", "cache_lock") in names
    assert ("lock.wait", "child_lock") in names
    assert not any("logging" in s["attrs"]["sync.name"] for s in spans)
    assert "tracedsync: run " in result.stderr  # the summary


def test_include_logging(tmp_path: Path) -> None:
    """--include logging traces logging's handler locks."""
    script = write(
        tmp_path,
        "app.py",
        """
        import logging, sys, threading
        handler = logging.StreamHandler(sys.stdout)
        print(type(handler.lock).__module__)
        """,
    )
    plain = run(tmp_path, "run", "--", sys.executable, str(script))
    included = run(tmp_path, "run", "--include", "logging", "--", sys.executable, str(script))
    assert plain.stdout.strip() == "_thread"
    assert included.stdout.strip() == "tracedsync"


def test_exit_codes_and_exceptions_pass_through(tmp_path: Path) -> None:
    """The program's own exit code and traceback are unchanged; death by signal N
    gives 128+N."""
    failing = write(tmp_path, "fail.py", "raise RuntimeError('boom')\n")
    result = run(tmp_path, "run", "--", sys.executable, str(failing))
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    killed = write(tmp_path, "kill.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert run(tmp_path, "run", "--", sys.executable, str(killed)).returncode == 128 + 9


def test_bad_invocations_are_one_line_errors(tmp_path: Path) -> None:
    """Missing command, unknown option, bad settings: one line, exit 2; a program
    that does not exist: 127. Never a traceback."""
    cases = [
        (["run"], 2, "missing command"),
        (["run", "--"], 2, "missing command"),
        (["run", "--frobnicate", "--", "true"], 2, "unrecognized arguments"),
        (["run", "--", "no-such-program-xyz"], 127, "command not found: no-such-program-xyz"),
        # A bad value is named by the flag the user typed, not the variable.
        (["run", "--wait-threshold-ms", "soon", "--", "true"], 2, "--wait-threshold-ms 'soon'"),
        (["run", "--exporters", "bogus", "--", "true"], 2, "--exporters 'bogus' is invalid"),
        (["run", "--idle-stuck-after-ms", "-3", "--", "true"], 2, "--idle-stuck-after-ms '-3'"),
        ([], 2, "a command is required"),
        (["frobnicate"], 2, "invalid choice"),
    ]
    for args, code, message in cases:
        result = run(tmp_path, *args)
        assert result.returncode == code, (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if not line.startswith("usage:")]
        assert len(errors) == 1, (args, result.stderr)
        assert message in errors[0]
        assert "Traceback" not in result.stderr


def test_bad_environment_stops_before_the_program(tmp_path: Path) -> None:
    """Every TRACEDSYNC_* value is validated first: exit 2 naming it, program not run."""
    marker = tmp_path / "ran"
    script = write(tmp_path, "app.py", f"open({str(marker)!r}, 'w').close()\n")
    for var, value in [
        ("TRACEDSYNC_BUFFER_SIZE", "-1"),
        ("TRACEDSYNC_EXPORTERS", "kafka"),
        ("TRACEDSYNC_HOLD_THRESHOLD_MS", "1e999"),
        ("TRACEDSYNC_LOCK_ORDER", "perhaps"),
    ]:
        result = run(tmp_path, "run", "--", sys.executable, str(script), env={var: value})
        assert result.returncode == 2
        assert var in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not marker.exists()


def test_output_dir_is_absolute_for_children(tmp_path: Path) -> None:
    """--output-dir is made absolute before the program (which changes directory) starts."""
    script = write(
        tmp_path,
        "app.py",
        """
        import os, threading, time
        os.chdir("/")
        lock = threading.Lock()
        def hold():
            with lock:
                time.sleep(0.02)
        ts = [threading.Thread(target=hold) for _ in range(2)]
        [t.start() for t in ts]; [t.join() for t in ts]
        print(os.environ["TRACEDSYNC_OUTPUT_DIR"])
        """,
    )
    result = run(tmp_path, "run", "--output-dir", "out", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "out")
    assert spans_in(tmp_path / "out")


def signal_when_ready(
    tmp_path: Path, source: str, sig: signal.Signals
) -> subprocess.CompletedProcess[str]:
    """Run ``source`` under `tracedsync run`; once it has created the file named by
    its ``READY`` global, send ``sig`` to the `tracedsync run` process."""
    ready = tmp_path / "ready"
    script = write(tmp_path, "app.py", f"READY = {str(ready)!r}\n" + textwrap.dedent(source))
    args = [*TRACEDSYNC, "run", "--", sys.executable, str(script)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(sig)  # the program is past READY: any later moment must do
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_sigterm_is_forwarded_and_records_flushed(tmp_path: Path) -> None:
    """SIGTERM to `tracedsync run` reaches the program, which exports what it
    recorded and dies of it (exit 143)."""
    result = signal_when_ready(
        tmp_path,
        """
        import threading, time
        lock = threading.Lock()
        with lock:
            time.sleep(0.05)        # a long hold: a span, buffered
        open(READY, "w").close()
        time.sleep(60)
        """,
        signal.SIGTERM,
    )
    assert result.returncode == 143, result.stderr
    holds = [s for s in spans_in(tmp_path / "tracedsync-out") if s["name"] == "lock.hold"]
    assert holds


def test_sigint_sent_with_kill_is_forwarded(tmp_path: Path) -> None:
    """A SIGINT sent to the parent with kill() becomes a KeyboardInterrupt in the program."""
    result = signal_when_ready(
        tmp_path,
        """
        import threading
        try:
            open(READY, "w").close()
            threading.Event().wait(60)
        except KeyboardInterrupt:
            print("interrupted")
            raise SystemExit(42)
        """,
        signal.SIGINT,
    )
    assert result.returncode == 42, result.stderr
    assert result.stdout.strip() == "interrupted"


#: Counts the deliveries of SIGINT as the kernel makes them (the wakeup fd gets
#: one byte per delivery; Python would merge two into one KeyboardInterrupt if
#: they came before its handler ran), then dies of the interrupt as Python does.
INTERRUPTED_APP = """
import os, signal, sys, threading, time
deliveries_r, deliveries_w = os.pipe()
os.set_blocking(deliveries_w, False)
signal.set_wakeup_fd(deliveries_w)
interrupts = 0
try:
    open(sys.argv[1], "w").close()  # from here on, an interrupt lands in the handler
    threading.Event().wait(60)
except KeyboardInterrupt:
    interrupts += 1
    try:
        time.sleep(0.5)  # a second SIGINT, sent right after the first, lands here
    except KeyboardInterrupt:
        interrupts += 1
    os.set_blocking(deliveries_r, False)
    print(f"interrupts {interrupts} deliveries {len(os.read(deliveries_r, 64))}", flush=True)
    raise
"""
#: Makes the terminal (its stdin) its controlling terminal, then runs argv.
WITH_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interrupt(tmp_path: Path, argv: list[str], how: str) -> subprocess.CompletedProcess[str]:
    """Start ``argv`` (INTERRUPTED_APP, plain or under `tracedsync run`) as its
    own session, as a shell starts a job, and interrupt it once it waits:
    ``group`` = SIGINT to the process group (``timeout``, ``kill -INT -PGID``),
    ``parent`` = SIGINT to the first process alone, ``terminal`` = Ctrl-C typed
    on its controlling terminal (a pty)."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    app = write(tmp_path, "interrupted_app.py", INTERRUPTED_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    full = [*argv, sys.executable, str(app), str(ready)]
    controller = None
    stdin: Any = subprocess.DEVNULL
    if how == "terminal":
        controller, stdin = os.openpty()
        full = [sys.executable, "-c", WITH_TERMINAL, *full]
    try:
        proc = subprocess.Popen(
            full,
            cwd=tmp_path,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    finally:
        if controller is not None:
            os.close(stdin)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        if how == "group":  # the program is past its ready point: any later moment must do
            os.killpg(proc.pid, signal.SIGINT)
        elif how == "parent":
            os.kill(proc.pid, signal.SIGINT)
        else:
            assert controller is not None
            os.write(controller, b"\x03")  # the terminal's VINTR: Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if controller is not None:
            os.close(controller)
    return subprocess.CompletedProcess(full, proc.returncode, out, err)


@pytest.mark.parametrize("how", ["group", "parent", "terminal"])
def test_sigint_reaches_the_program_once(tmp_path: Path, how: str) -> None:
    """However SIGINT comes -- to the process group, to `tracedsync run` alone,
    Ctrl-C on the terminal -- the program gets it once and dies of its
    KeyboardInterrupt as it does without tracedsync (-SIGINT there; `run`
    exits 128 + SIGINT)."""
    plain = interrupt(tmp_path, [], how)
    assert plain.returncode == -signal.SIGINT, plain.stderr
    assert plain.stdout.strip() == "interrupts 1 deliveries 1", plain.stderr
    traced = interrupt(tmp_path, [*TRACEDSYNC, "run", "--"], how)
    assert traced.stdout.strip() == "interrupts 1 deliveries 1", traced.stderr
    assert traced.stderr.count("KeyboardInterrupt") == 1, traced.stderr
    assert traced.returncode == 128 + signal.SIGINT, traced.stderr
    assert plain.stderr.count("KeyboardInterrupt") == 1, plain.stderr


def test_dump_on_signal_prints_holders_with_stacks(tmp_path: Path) -> None:
    """--dump-on-signal SIGUSR1 prints every held primitive with stacks."""
    script = write(
        tmp_path,
        "app.py",
        """
        import os, signal, threading, time
        pool_lock = threading.Lock()
        with pool_lock:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.1)
        """,
    )
    result = run(tmp_path, "run", "--dump-on-signal", "SIGUSR1", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    assert "tracedsync snapshot" in result.stderr
    assert "lock pool_lock (app.py:3)" in result.stderr
    assert "held by MainThread" in result.stderr


def test_console_script_and_python_m(tmp_path: Path) -> None:
    """`tracedsync run` (console script) and `python -m tracedsync run` both work."""
    script = write(tmp_path, "app.py", "import threading; print(threading.Lock.__module__)\n")
    exe = shutil.which("tracedsync", path=os.path.dirname(sys.executable))
    assert exe, "the tracedsync console script is installed next to the interpreter"
    for argv in ([exe], TRACEDSYNC):
        result = subprocess.run(
            [*argv, "run", "--exporters", "console", "--", sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "tracedsync"


def test_python_module_and_isolated_interpreters(tmp_path: Path) -> None:
    """`python -m pkg` is traced; `python -I` skips sitecustomize and is not."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import threading; print(threading.Lock.__module__)\n")
    result = run(tmp_path, "run", "--", sys.executable, "-m", "mypkg")
    assert result.stdout.strip() == "tracedsync"
    isolated = run(
        tmp_path,
        "run",
        "--",
        sys.executable,
        "-I",
        "-c",
        "import threading; print(threading.Lock.__module__)",
    )
    assert isolated.stdout.strip() == "_thread"


def test_chains_to_the_shadowed_sitecustomize(tmp_path: Path) -> None:
    """The program's own sitecustomize (later on the path) still runs."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text("import builtins\nbuiltins.CUSTOMIZED = True\n")
    script = write(tmp_path, "app.py", "print(CUSTOMIZED)\n")
    result = run(
        tmp_path, "run", "--", sys.executable, str(script), env={"PYTHONPATH": str(site_dir)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.slow
@pytest.mark.parametrize("tests", ["test_queue", "test_threading"])
def test_cpython_suites_pass_under_run(tmp_path: Path, tests: str) -> None:
    """CPython's test_queue and test_threading pass under `tracedsync run`.

    Excluded, because they inspect the concrete stdlib types or the process's
    threads rather than behaviour:
    - test_threading MiscTestCase.test__all__: threading.__all__ is checked
      against names whose __module__ is 'threading'; ours is 'tracedsync'.
    - test_threading ThreadTests.test_disallow_instantiation: type(Lock()) must
      not be instantiable; tracedsync.Lock is.
    - test_threading ThreadTests.test_lock_no_subclass (3.13): subclassing
      threading.Lock must raise TypeError; tracedsync.Lock can be subclassed.
    - test_threading ThreadJoinOnShutdown.test_clear_threads_states_after_fork:
      the fork child must have exactly one thread; tracedsync starts its
      pipeline thread in fork children (by design).
    """
    pytest.importorskip("test.support", reason="this interpreter has no test package")
    ignores = [
        "test__all__",
        "test_disallow_instantiation",
        "test_lock_no_subclass",
        "test_clear_threads_states_after_fork",
    ]
    args = ["run", "--", sys.executable, "-m", "test", tests]
    for name in ignores:
        args += ["--ignore", name]
    result = run(tmp_path, *args, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Result: SUCCESS" in result.stdout
    # Subinterpreters without daemon threads (3.12+) stay untraced, silently.
    assert "could not install" not in result.stdout + result.stderr


SUBINTERPRETERS_APP = """
import sys, threading, _testcapi

CODE = "import threading; print(type(threading.Lock()).__module__, threading.active_count())"
_testcapi.run_in_subinterp(CODE)  # a legacy (shared-GIL) subinterpreter, every version
if sys.version_info >= (3, 13):
    import _interpreters
    interp = _interpreters.create("legacy")
    _interpreters.run_string(interp, CODE)
    _interpreters.destroy(interp)
elif sys.version_info >= (3, 12):
    import _xxsubinterpreters
    interp = _xxsubinterpreters.create(isolated=False)
    _xxsubinterpreters.run_string(interp, CODE)
    _xxsubinterpreters.destroy(interp)
print("main", type(threading.Lock()).__module__)
"""


def test_subinterpreters_stay_untraced_and_start_no_thread(tmp_path: Path) -> None:
    """The bootstrap does not install in a subinterpreter (3.12's shared-GIL ones
    aborted at exit with tracedsync's threads inside): its primitives are the
    stdlib's and it has one thread, silently."""
    pytest.importorskip("_testcapi")
    script = write(tmp_path, "app.py", SUBINTERPRETERS_APP)
    result = run(tmp_path, "run", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    subinterpreters = 2 if sys.version_info >= (3, 12) else 1
    assert result.stdout.splitlines() == ["_thread 1"] * subinterpreters + ["main tracedsync"]
    warnings = [
        line
        for line in result.stderr.splitlines()
        if "could not install" in line or "not started in a subinterpreter" in line
    ]
    assert warnings == []  # silently: the bootstrap does not even import tracedsync there


MULTIPROCESSING_APP = """
import multiprocessing, sys, threading, time

def child():
    lock = threading.Lock()
    def hold():
        with lock:
            time.sleep(0.02)
    ts = [threading.Thread(target=hold) for _ in range(2)]
    [t.start() for t in ts]; [t.join() for t in ts]

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    ps = [ctx.Process(target=child) for _ in range(2)]
    [p.start() for p in ps]; [p.join() for p in ps]
    print(" ".join(str(p.pid) for p in ps))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_are_traced(tmp_path: Path, method: str) -> None:
    """multiprocessing children (spawn: sitecustomize; fork: inherited, flushed by
    multiprocessing's own exit hook before os._exit) write their spans."""
    script = write(tmp_path, "app.py", MULTIPROCESSING_APP)
    result = run(
        tmp_path,
        "run",
        "--",
        sys.executable,
        "-W",
        "ignore::DeprecationWarning",  # 3.12+: fork with the pipeline thread alive
        str(script),
        method,
    )
    assert result.returncode == 0, result.stderr
    for pid in map(int, result.stdout.split()):
        holds = [s for s in spans_in(tmp_path / "tracedsync-out", pid) if s["name"] == "lock.hold"]
        assert len(holds) == 2, (method, pid)


_STUCK_PROGRAM = """
import threading

lock = threading.Lock()
held = threading.Event()


def holder():
    with lock:
        held.set()
        threading.Event().wait(1.5)  # busy elsewhere, holding the lock


t = threading.Thread(target=holder, name="slow-holder")
t.start()
held.wait()
with lock:  # blocks ~1.5 s: a stuck wait past 200 ms
    pass
t.join()
print("done")
"""


@pytest.mark.parametrize("exporters", ["jsonfile", "console", "otlp"])
def test_the_run_ends_with_a_summary_whatever_the_exporters(tmp_path: Path, exporters: str) -> None:
    """Every traced process leaves a summary file, so `tracedsync run` says
    what happened with console or OTLP alone too, and --report works with any
    exporter set (the OTLP endpoint here answers nothing: the summary does not
    depend on it)."""
    script = write(tmp_path, "app.py", _STUCK_PROGRAM)
    env = {
        "TRACEDSYNC_STUCK_AFTER_MS": "200",
        "TRACEDSYNC_SHUTDOWN_TIMEOUT_MS": "500",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # nothing listens
    }
    for extra in ([], ["--report"]):
        result = run(
            tmp_path,
            "run",
            "--exporters",
            exporters,
            *extra,
            "--",
            sys.executable,
            str(script),
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert "done" in result.stdout
        if extra:
            assert "PRIMITIVES" in result.stderr
        else:
            assert "1 process(es)" in result.stderr
            assert "lock lock (app.py:4): 2 acquisitions, 1 contended" in result.stderr
            assert "findings: 1" in result.stderr and "stuck_wait" in result.stderr
        files = list((tmp_path / "tracedsync-out").glob("summary-*.json"))
        assert bool(files) == (exporters == "jsonfile")


def test_findings_are_alerted_while_the_program_runs(tmp_path: Path) -> None:
    """A finding is one line on stderr when it happens (before the program's
    own last line), once even with the console exporter, and --quiet turns
    the alerts off but not the summary."""
    script = write(tmp_path, "app.py", _STUCK_PROGRAM + "import sys; sys.stderr.write('end\\n')\n")
    # The hold lasts 1.5 s: found at 200 ms by a watchdog that looks every
    # 100 ms, long before the program's last line even on a loaded machine.
    env = {"TRACEDSYNC_STUCK_AFTER_MS": "200", "TRACEDSYNC_WATCHDOG_INTERVAL_MS": "100"}
    alert = "MainThread has been stuck waiting for lock lock (app.py:4) #1"
    for exporters, quiet, alerts in (
        ("jsonfile", False, 1),
        ("console", False, 1),  # the console exporter's line, not a second one
        ("jsonfile", True, 0),
    ):
        args = ["run", "--exporters", exporters, *(["--quiet"] if quiet else [])]
        result = run(tmp_path, *args, "--", sys.executable, str(script), env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        while_running = lines[: lines.index("end")]
        found = [line for line in while_running if alert in line]
        assert len(found) == alerts, (exporters, quiet, result.stderr)
        assert any("findings: 1" in line for line in lines)
