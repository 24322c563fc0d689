"""``tracedsync run [options] -- COMMAND ...``: run any program traced.

The parent (this module's :func:`command`) validates every ``TRACEDSYNC_*``
setting, makes the output directory absolute, and spawns COMMAND with
``tracedsync/_bootstrap`` first on ``PYTHONPATH``. Its ``sitecustomize``
calls :func:`bootstrap_child`, which installs tracedsync before the
program's first line — in every Python process the program starts too
(``subprocess``, ``multiprocessing`` spawn), all under one run id.

The command is spawned, not exec'd, so that the parent can report at the
end: it forwards the signals sent to it alone, not those sent to the process
group the program shares with it (a Ctrl-C, ``timeout``, ``kill -INT -PGID``:
the program got them already, see ``tracedsync._groupwatch``), returns the
program's exit code (128+N when it dies of signal N), then prints the run's
summary -- merged from the small summary file every traced process writes
into a private per-run directory when it ends, whatever the exporters
(``tracedsync.summary``) -- or the full table with ``--report``. While the
program runs, each finding (a deadlock, a stuck wait...) is one line on its
stderr when it happens, unless ``--quiet``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile

from tracedsync import config, summary
from tracedsync._groupwatch import GroupWatch
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
_TERMINAL_SIGNALS = {signal.SIGINT, signal.SIGQUIT}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "tracedsync run [options] -- COMMAND [ARGS ...]"
    parser.add_argument(
        "--exporters",
        help="comma list of console, jsonfile, otlp, prometheus (default: jsonfile)",
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
    parser.add_argument(
        "--stuck-after-ms", help="report a lock wait still blocked this long (default 5000)"
    )
    parser.add_argument(
        "--idle-stuck-after-ms",
        help="report an Event/Condition/Barrier wait still blocked this long (default 60000)",
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
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no line on stderr per finding while the program runs (the exit summary stays)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the program to run")


#: Flags that set one variable each: (argparse dest, flag, variable).
_VALUE_FLAGS = (
    ("exporters", "--exporters", "TRACEDSYNC_EXPORTERS"),
    ("output_dir", "--output-dir", "TRACEDSYNC_OUTPUT_DIR"),
    ("wait_threshold_ms", "--wait-threshold-ms", "TRACEDSYNC_WAIT_THRESHOLD_MS"),
    ("hold_threshold_ms", "--hold-threshold-ms", "TRACEDSYNC_HOLD_THRESHOLD_MS"),
    ("stuck_after_ms", "--stuck-after-ms", "TRACEDSYNC_STUCK_AFTER_MS"),
    ("idle_stuck_after_ms", "--idle-stuck-after-ms", "TRACEDSYNC_IDLE_STUCK_AFTER_MS"),
)
_LIST_FLAGS = (
    ("exclude", "--exclude", "TRACEDSYNC_EXCLUDE"),
    ("include", "--include", "TRACEDSYNC_INCLUDE"),
)


def _child_environment(args: argparse.Namespace) -> tuple[dict[str, str], str, str]:
    env = dict(os.environ)
    #: variable -> the flag the user typed that set it
    from_flag: dict[str, str] = {}
    for option, flag, var in _VALUE_FLAGS:
        value = getattr(args, option)
        if value is not None:
            env[var] = value
            from_flag[var] = flag
    for option, flag, var in _LIST_FLAGS:
        values = [v for v in [env.get(var, ""), *getattr(args, option)] if v]
        if values:
            env[var] = ",".join(values)
        if getattr(args, option):
            from_flag[var] = flag
    if args.lock_order:
        env["TRACEDSYNC_LOCK_ORDER"] = "1"
    if args.dump_on_signal:
        env["TRACEDSYNC_DUMP_SIGNAL"] = str(_signal_number(args.dump_on_signal))
    env.setdefault("TRACEDSYNC_EXPORTERS", "jsonfile")
    problems = config.environment_problems(env)
    if problems:
        raise CliError("; ".join(_problem_text(p, from_flag) for p in problems))
    output_dir = os.path.abspath(env.get("TRACEDSYNC_OUTPUT_DIR") or "tracedsync-out")
    env["TRACEDSYNC_OUTPUT_DIR"] = output_dir
    run_id = os.urandom(6).hex()
    env["TRACEDSYNC_RUN_ID"] = run_id
    env["TRACEDSYNC_RUN"] = "1"
    if not args.quiet:
        env["TRACEDSYNC_ALERTS"] = "1"
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + existing if existing else "")
    return env, output_dir, run_id


def _problem_text(problem: config.EnvironmentProblem, from_flag: dict[str, str]) -> str:
    """A bad value said the way the user gave it: the flag they typed, or the
    environment variable when that was the source."""
    flag = from_flag.get(problem.variable)
    if flag is None or problem.expected is None:
        return str(problem)
    return f"{flag} {problem.value!r} is invalid: expected {problem.expected}"


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
    files_dir = output_dir if "jsonfile" in exporters else None
    if files_dir is not None:
        from tracedsync.outdir import OutputDirError, prepare_output_dir

        try:
            prepare_output_dir(files_dir)
        except OutputDirError as exc:
            raise CliError(str(exc)) from None
    summaries = tempfile.mkdtemp(prefix=f"tracedsync-{run_id}-")  # private: 0o700
    env[summary.DIRECTORY_VARIABLE] = summaries
    try:
        try:
            code = spawn_and_wait(argv, env)
        except _NotStarted as exc:
            sys.stderr.write(f"tracedsync run: {exc.message}\n")
            return exc.code
        try:
            sys.stderr.write(run_summary(summaries, files_dir, run_id, full=args.report))
        except Exception as exc:  # the program's exit code matters more
            sys.stderr.write(f"tracedsync: could not summarise the run: {exc}\n")
    finally:
        _keep_summaries(summaries, files_dir)
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
    group = GroupWatch(_FORWARDED)
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
        return _wait_forwarding(pid, watched, group)
    finally:
        group.close()
        while signal.sigtimedwait(watched - {signal.SIGCHLD}, 0) is not None:
            pass  # already delivered to (or meant for) the child
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _wait_forwarding(pid: int, watched: set[signal.Signals], group: GroupWatch) -> int:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        info = signal.sigtimedwait(watched, 0.5)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo in _TERMINAL_SIGNALS and info.si_code == _SI_KERNEL:
            continue  # from the terminal: the child, in our group, got it too
        if group.reached_group(info.si_signo, pid):
            continue  # sent to the group: the child got it too
        try:
            os.kill(pid, info.si_signo)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------
# After the program: what happened
# --------------------------------------------------------------------------


def run_summary(summaries: str, files_dir: str | None, run_id: str, full: bool) -> str:
    """What ``tracedsync run`` prints when the program has ended: the merged
    summaries in a few lines, or with ``full`` (``--report``) the report's
    whole table over the summaries and the files."""
    docs = summary.read(summaries)
    if not docs:
        return (
            f"tracedsync: run {run_id}: no traced Python process reported (a program that is "
            "not Python, or a Python started with -I, -E or -S, is not traced)\n"
        )
    if full:
        from tracedsync.report import run_report

        return run_report([summaries, *([files_dir] if files_dir else [])], run_id, full=True)
    return summary.render(summary.merge(docs), run_id, files_dir)


def _keep_summaries(summaries: str, files_dir: str | None) -> None:
    """The summaries go beside the run's files (``tracedsync report DIR``
    reads them too), else away; the private directory goes."""
    try:
        if files_dir is not None:
            for name in os.listdir(summaries):
                if name.startswith("summary-") and name.endswith(".json"):
                    shutil.move(os.path.join(summaries, name), os.path.join(files_dir, name))
    finally:
        shutil.rmtree(summaries, ignore_errors=True)
