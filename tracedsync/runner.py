"""``tracedsync run [options] -- COMMAND ...``: run any program traced.

The parent (this module's :func:`command`) validates every ``TRACEDSYNC_*``
setting, makes the output directory absolute, and spawns COMMAND with
``tracedsync/_bootstrap`` first on ``PYTHONPATH``. Its ``sitecustomize``
calls :func:`bootstrap_child`, which installs tracedsync before the
program's first line — in every Python process the program starts too
(``subprocess``, ``multiprocessing`` spawn), all under one run id.

The command is spawned, not exec'd, so that the parent can report at the
end: it forwards signals (a Ctrl-C from the terminal already reaches the
whole process group, so only SIGINTs sent with ``kill`` are forwarded),
returns the program's exit code (128+N when it dies of signal N), then
prints a summary of this run's files, or the full table with ``--report``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import uuid
from typing import Any

from tracedsync import _format, config
from tracedsync.cli import CliError

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")
_SI_KERNEL = 0x80  # si_code of a signal the kernel generated (a terminal's Ctrl-C)
_FORWARDED = [
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
]
#: Signals the terminal sends to the whole foreground group: the child got them.
_GROUP_SIGNALS = {signal.SIGINT, signal.SIGQUIT}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "tracedsync run [options] -- COMMAND [ARGS ...]"
    parser.add_argument(
        "--exporters", help="comma list of console, jsonfile, otlp (default: jsonfile)"
    )
    parser.add_argument("--output-dir", help="where jsonfile writes (default: ./tracedsync-out)")
    parser.add_argument("--wait-threshold-ms", help="waits this long become spans (default 1)")
    parser.add_argument("--hold-threshold-ms", help="holds this long become spans (default 10)")
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="MODULE", help="leave MODULE untraced"
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="MODULE",
        help="trace MODULE although excluded by default (e.g. logging)",
    )
    parser.add_argument("--lock-order", action="store_true", help="check lock-order inversions")
    parser.add_argument(
        "--dump-on-signal",
        metavar="SIGNAL",
        help="print every primitive's holders and waiters with stacks on SIGNAL (e.g. SIGUSR1)",
    )
    parser.add_argument(
        "--report", action="store_true", help="print the full contention table at exit"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program to run")


def _child_environment(args: argparse.Namespace) -> tuple[dict[str, str], str, str]:
    env = dict(os.environ)
    for option, var in (
        ("exporters", "TRACEDSYNC_EXPORTERS"),
        ("output_dir", "TRACEDSYNC_OUTPUT_DIR"),
        ("wait_threshold_ms", "TRACEDSYNC_WAIT_THRESHOLD_MS"),
        ("hold_threshold_ms", "TRACEDSYNC_HOLD_THRESHOLD_MS"),
    ):
        value = getattr(args, option)
        if value is not None:
            env[var] = value
    for option, var in (("exclude", "TRACEDSYNC_EXCLUDE"), ("include", "TRACEDSYNC_INCLUDE")):
        values = [v for v in [env.get(var, ""), *getattr(args, option)] if v]
        if values:
            env[var] = ",".join(values)
    if args.lock_order:
        env["TRACEDSYNC_LOCK_ORDER"] = "1"
    if args.dump_on_signal:
        env["TRACEDSYNC_DUMP_SIGNAL"] = str(_signal_number(args.dump_on_signal))
    env.setdefault("TRACEDSYNC_EXPORTERS", "jsonfile")
    errors = config.environment_errors(env)
    if errors:
        raise CliError(errors[0] if len(errors) == 1 else "; ".join(errors))
    output_dir = os.path.abspath(env.get("TRACEDSYNC_OUTPUT_DIR") or "tracedsync-out")
    env["TRACEDSYNC_OUTPUT_DIR"] = output_dir
    run_id = uuid.uuid4().hex[:12]
    env["TRACEDSYNC_RUN_ID"] = run_id
    env["TRACEDSYNC_RUN"] = "1"
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + existing if existing else "")
    return env, output_dir, run_id


def _signal_number(name: str) -> int:
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        if not text.startswith("SIG"):
            text = "SIG" + text
        number = getattr(signal, text, None)  # type: ignore[assignment]
        if not isinstance(number, int):
            raise CliError(f"--dump-on-signal: unknown signal {name!r}")
    if number not in {int(s) for s in signal.valid_signals()} or number in (
        signal.SIGKILL,
        signal.SIGSTOP,
    ):
        raise CliError(f"--dump-on-signal: cannot use signal {name!r}")
    return int(number)


def command(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CliError("missing command (usage: tracedsync run [options] -- COMMAND [ARGS ...])")
    env, output_dir, run_id = _child_environment(args)
    exporters = [e.strip() for e in env["TRACEDSYNC_EXPORTERS"].split(",")]
    if "jsonfile" in exporters:
        from tracedsync.exporters.jsonfile import OutputDirError, prepare_output_dir

        try:
            prepare_output_dir(output_dir)
        except OutputDirError as exc:
            raise CliError(str(exc)) from None
    try:
        code = spawn_and_wait(argv, env)
    except _NotStarted as exc:
        sys.stderr.write(f"tracedsync run: {exc.message}\n")
        return exc.code
    if "jsonfile" in exporters:
        try:
            print_summary(output_dir, run_id, full=args.report)
        except Exception as exc:  # the program's exit code matters more
            sys.stderr.write(f"tracedsync: could not summarise {output_dir}: {exc}\n")
    return code


class _NotStarted(Exception):
    """The command could not be started (127: not found, 126: not executable)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def spawn_and_wait(argv: list[str], env: dict[str, str]) -> int:
    """Spawn ``argv``, forward signals until it ends, return its exit code."""
    watched = set(_FORWARDED) | {signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                env,
                setsigmask=previous,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except FileNotFoundError:
            raise _NotStarted(127, f"command not found: {argv[0]}") from None
        except PermissionError:
            raise _NotStarted(126, f"permission denied: {argv[0]}") from None
        except OSError as exc:
            raise _NotStarted(126, f"cannot run {argv[0]}: {exc.strerror}") from None
        return _wait_forwarding(pid, watched)
    finally:
        while signal.sigtimedwait(watched - {signal.SIGCHLD}, 0) is not None:
            pass  # already delivered to (or meant for) the child
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _wait_forwarding(pid: int, watched: set[signal.Signals]) -> int:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        info = signal.sigtimedwait(watched, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo in _GROUP_SIGNALS and info.si_code == _SI_KERNEL:
            continue  # from the terminal: the child, in our group, got it too
        try:
            os.kill(pid, info.si_signo)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------
# In the program's processes
# --------------------------------------------------------------------------


def bootstrap_child() -> None:
    """Install tracedsync in a process started by ``tracedsync run``."""
    from tracedsync import patching

    patching.install()
    _flush_on_sigterm()
    dump = os.environ.get("TRACEDSYNC_DUMP_SIGNAL")
    if dump and dump.isdigit():
        _dump_on_signal(int(dump))


def _flush_on_sigterm() -> None:
    """SIGTERM (e.g. forwarded by the parent): export what is buffered, then die of it."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        try:
            from tracedsync import lifecycle

            lifecycle.final_flush()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def _dump_on_signal(signum: int) -> None:
    def on_signal(number: int, frame: Any) -> None:
        try:
            from tracedsync import detection

            sys.stderr.write(detection.format_snapshot(detection.snapshot(), stacks=True))
            sys.stderr.flush()
        except Exception as exc:
            sys.stderr.write(f"tracedsync: snapshot failed: {exc}\n")

    try:
        signal.signal(signum, on_signal)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"tracedsync: cannot handle signal {signum}: {exc}\n")


# --------------------------------------------------------------------------
# After the program: what happened
# --------------------------------------------------------------------------


def print_summary(output_dir: str, run_id: str, full: bool) -> None:
    """The run's contention in a few lines on stderr (``--report``: the full table)."""
    try:
        analysis: Any = importlib.import_module("tracedsync.report")
    except ImportError:
        analysis = None
    if analysis is not None and hasattr(analysis, "run_summary"):
        sys.stderr.write(analysis.run_summary(output_dir, run_id, full=full))
        return
    sys.stderr.write(_metrics_summary(output_dir, run_id))


def _metrics_summary(output_dir: str, run_id: str) -> str:
    totals: dict[tuple[str, str], dict[str, float]] = {}
    files = sorted(
        f
        for f in os.listdir(output_dir)
        if f.startswith(f"metrics-{run_id}-") and f.endswith(".jsonl")
    )
    for name in files:
        last = ""
        with open(os.path.join(output_dir, name), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.endswith("\n"):
                    last = line
        if not last:
            continue
        request = json.loads(last)
        for rm in request.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    for point in (metric.get("sum") or {}).get("dataPoints", []):
                        attrs = {
                            a["key"]: next(iter(a["value"].values()))
                            for a in point.get("attributes", [])
                        }
                        if "sync.name" not in attrs:
                            continue
                        key = (str(attrs.get("sync.kind")), str(attrs["sync.name"]))
                        value = float(point.get("asInt", point.get("asDouble", 0)))
                        entry = totals.setdefault(key, {})
                        entry[metric["name"]] = entry.get(metric["name"], 0.0) + value
    lines = [f"tracedsync: run {run_id}, {len(files)} process(es), files in {output_dir}\n"]
    ranked = sorted(totals.items(), key=lambda kv: -kv[1].get("tracedsync.wait.time", 0.0))[:5]
    for (kind, name), m in ranked:
        lines.append(
            f"  {kind:<17} {_format.clean(name)[:60]:<60} "
            f"acq {int(m.get('tracedsync.acquisitions', 0)):>9}  "
            f"contended {int(m.get('tracedsync.contentions', 0)):>8}  "
            f"waited {m.get('tracedsync.wait.time', 0.0) * 1e3:10.1f} ms\n"
        )
    lines.append(f"  tracedsync report {output_dir}   for the full analysis\n")
    return "".join(lines)
