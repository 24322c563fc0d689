"""``tracedsync report``'s command line: options, ``--fail-on``, and the flow
read → model → render for one invocation.

Which lock hurts, who waits, who holds, when. The files are streamed once:
metrics give every primitive's acquisitions, contentions and wait/hold
percentiles (their histograms cover every acquisition); spans give the call
sites, the holders that blocked them, the threads and the timeline; logs give
the findings (deadlocks, stuck waits, inversions, drops, export failures).

Formats: ``table`` (terminal), ``json`` (stable keys, for scripts),
``html`` (one self-contained file with a per-thread timeline) and
``perfetto`` (Chrome Trace Event JSON for ui.perfetto.dev and
chrome://tracing). ``--fail-on`` turns thresholds into exit code 1.

The report reads files with ``json`` only; it imports neither OpenTelemetry
nor structlog, and no traced program imports it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from tracedsync._format import clean, duration
from tracedsync.kinds import KINDS
from tracedsync.report.document import build_document
from tracedsync.report.errors import ReportError
from tracedsync.report.model import Analysis, Filters
from tracedsync.report.profile import SIDES, WAITS, Profile
from tracedsync.report.read import DEFAULT_MAX_LINE_BYTES, parse_timestamp, select_files
from tracedsync.report.render_json import render_json
from tracedsync.report.render_table import render_summary, render_table
from tracedsync.report.timeline import Timeline

__all__ = [
    "FailOn",
    "ReportError",
    "add_arguments",
    "command",
    "parse_fail_on",
    "parse_time",
    "print_run_report",
    "run_summary",
]

FORMATS = ("table", "json", "html", "perfetto", "pprof", "folded")
DEFAULT_TOP = 10
DEFAULT_MAX_BARS = 50_000
DEFAULT_JOBS = max(1, min(4, os.cpu_count() or 1))

_HELP_EPILOG = """\
PATH is an output directory (its latest run; --all-runs or --run ID for others)
or .jsonl files (spans-*, metrics-*, logs-*, rotated ones, or an OpenTelemetry
Collector's file exporter output), or summary-*.json files (or their
directory), alone or beside the jsonl files of the run. Default:
$TRACEDSYNC_OUTPUT_DIR or ./tracedsync-out.

formats (--format):
  table     the default: PRIMITIVES (locks and semaphores) by time waited on
            contention, with their waiting call sites and the holder sites
            that blocked them; IDLE WAITS (events, conditions -- Queue.get --
            and barriers) with their own totals; waits still blocked at exit
            in both; THREADS by time blocked on contention, idle time apart;
            findings. Fits the terminal (or --width)
  json      the same data with stable keys: durations in seconds, times ISO
            8601 UTC, "format": "tracedsync-report/1"
  html      one self-contained page (-o report.html): a per-thread timeline of
            the --max-bars longest waits and holds (wheel zooms, drag pans,
            hover tells what, how long, where and who held it) and the tables
  perfetto  Chrome Trace Event JSON (-o trace.json) for ui.perfetto.dev and
            chrome://tracing: a track per thread, the --max-bars longest waits
            and holds as slices, arrows from a holder's release to the wait it
            ended, findings as instant events
  pprof     wait time by stack as a gzipped pprof profile (-o waits.pb.gz), in
            the shape of Go's block and mutex profiles: sample types
            contentions/count and delay/nanoseconds, labels kind and
            primitive; go tool pprof -top waits.pb.gz
  folded    wait time by stack as collapsed stacks (root;...;leaf NANOSECONDS),
            for flamegraph.pl, speedscope and Pyroscope

profiles (pprof, folded, and the html page's flame graph):
  from the wait spans' stacks (sync.stack; sync.site for a one-frame wait),
  each ending in a frame for the primitive (lock.wait NAME). --profile-side
  waiter (default) charges each wait to the waiting thread's stack, as Go's
  block profile does; holder charges a lock-like wait to the stack of the
  thread that released the lock to it (the hold span it links to), as Go's
  mutex profile charges the unlocker. --profile-waits contention (default:
  locks and semaphores), idle (events, conditions, barriers) or all. Only
  waits kept as spans count (at or above wait_threshold_ms).

times (--since, --until):
  an ISO 8601 timestamp: 2026-01-02T12:00:00Z, 2026-01-02T13:00:00+01:00
      (no offset means UTC, as in the log files), or
  a duration from the start of the run (its earliest process start in the
      metrics, else its first span): 30s, 1.5m, 250ms, 2h, 1m30s.
  Spans overlapping the window count, findings inside it; per-primitive
  numbers are the difference of the metrics snapshots just before --since and
  just after --until (snapshots are written every 10 s and at exit).

thresholds (--fail-on, comma-separated or repeated; exit code 1 when any is
breached, and each breach is printed on stderr):
  per lock-like primitive (PRIMITIVES: contention only): wait-p50 wait-p95
  wait-p99 wait-max wait-total, the same with hold-, contention-rate (0.2 or
  20%), contentions, timeouts, acquisitions; per event, condition or barrier
  (IDLE WAITS): idle-wait-p50 idle-wait-p95 idle-wait-p99 idle-wait-max
  idle-wait-total; for the whole report: findings, deadlocks, self-deadlocks,
  stuck-waits, inversions, idle-unfinished (idle waits still blocked at
  exit), dropped, export-failures.
  Operators: > >= < <=. Durations take ns, us, ms, s, m, h.
  Example: --fail-on 'wait-p99>50ms,contention-rate>20%,findings>0'

exit codes: 0 fine, 1 a --fail-on threshold was breached, 2 bad input or usage.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` subcommand's options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _HELP_EPILOG
    parser.add_argument("paths", nargs="*", metavar="PATH", help="output directory or .jsonl files")
    parser.add_argument(
        "--format", "-f", choices=FORMATS, default="table", help="output format (default: table)"
    )
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout"
    )
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--all-runs", action="store_true", help="every run found in the directories")
    runs.add_argument("--run", metavar="ID", help="this run of the directories (default: latest)")
    parser.add_argument(
        "--top",
        type=_positive_int,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"primitives and threads shown (default: {DEFAULT_TOP})",
    )
    parser.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="KIND",
        help=f"only these kinds (repeat or comma-separate): {', '.join(KINDS)}",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="GLOB",
        help="only primitives whose name matches (fnmatch, e.g. 'pool_*'); repeatable",
    )
    parser.add_argument("--since", metavar="TIME", help="start of the time window (see below)")
    parser.add_argument("--until", metavar="TIME", help="end of the time window (see below)")
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="EXPR",
        help="exit 1 when a threshold is breached, e.g. 'wait-p99>50ms' (see below)",
    )
    parser.add_argument(
        "--width", type=_positive_int, metavar="COLUMNS", help="table width (default: terminal)"
    )
    parser.add_argument(
        "--max-bars",
        type=_positive_int,
        default=DEFAULT_MAX_BARS,
        metavar="N",
        help=f"html, perfetto: the N longest waits and holds drawn (default: {DEFAULT_MAX_BARS})",
    )
    parser.add_argument(
        "--profile-side",
        choices=SIDES,
        default="waiter",
        help="pprof, folded, html flame graph: charge a wait to the waiter's stack "
        "or to the releasing holder's (default: waiter)",
    )
    parser.add_argument(
        "--profile-waits",
        choices=WAITS,
        default="contention",
        help="pprof, folded, html flame graph: which waits (default: contention)",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"worker processes for big inputs (default here: {DEFAULT_JOBS}; 1: none)",
    )
    parser.add_argument(
        "--max-line-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="BYTES",
        help=f"longer lines are an error (default: {DEFAULT_MAX_LINE_BYTES})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


# -- times -------------------------------------------------------------------------------

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|min|s|m|h)")


def parse_duration_ns(text: str) -> int | None:
    """``250ms``, ``1.5s``, ``1m30s`` to nanoseconds; None if it is not one."""
    value = text.strip()
    if not value:
        return None
    pos = 0
    total = 0.0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if match is None:
            return None
        total += float(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
        while pos < len(value) and value[pos] == " ":
            pos += 1
    return round(total)


def parse_time(text: str, run_start_ns: int | None, option: str) -> int:
    """``--since``/``--until``: an ISO 8601 time or a duration from the run start."""
    rel = parse_duration_ns(text.lstrip("+"))
    if rel is not None:
        if run_start_ns is None:
            raise ReportError(
                f"{option} {text}: no run start in the files to count from; give an ISO time"
            )
        return run_start_ns + rel
    absolute = parse_timestamp(text)
    if absolute is None:
        raise ReportError(
            f"{option} {text!r}: not an ISO 8601 time (2026-01-02T12:00:00Z) "
            "nor a duration from the run start (30s, 1.5m, 250ms)"
        )
    return absolute


# -- fail-on -----------------------------------------------------------------------------

#: metric -> (type, field, subfield, section): per primitive of a section.
_PER_PRIMITIVE = {
    **{
        f"{w}-{q}": ("duration", w, q, "primitives")
        for w in ("wait", "hold")
        for q in ("p50", "p95", "p99", "max", "total")
    },
    **{
        f"idle-wait-{q}": ("duration", "wait", q, "idle_waits")
        for q in ("p50", "p95", "p99", "max", "total")
    },
    "contention-rate": ("rate", "contention_rate", "", "primitives"),
    "contentions": ("count", "contentions", "", "primitives"),
    "timeouts": ("count", "timeouts", "", "primitives"),
    "acquisitions": ("count", "acquisitions", "", "primitives"),
}
_GLOBAL: dict[str, Callable[[dict[str, Any]], int]] = {
    "findings": lambda d: int(d["findings_total"]),
    "deadlocks": lambda d: int(d["findings_by_event"].get("deadlock_detected", 0)),
    "self-deadlocks": lambda d: int(d["findings_by_event"].get("self_deadlock_suspected", 0)),
    "stuck-waits": lambda d: int(d["findings_by_event"].get("stuck_wait", 0)),
    "inversions": lambda d: int(d["findings_by_event"].get("lock_order_inversion", 0)),
    "dropped": lambda d: int(d["telemetry"]["dropped"]),
    "idle-unfinished": lambda d: int(d["still_blocked_total"]["idle_waits"]),
    "export-failures": lambda d: (
        int(d["findings_by_event"].get("exporter_failed", 0)) + int(d["telemetry"]["failed"])
    ),
}
_EXPR = re.compile(r"^\s*([a-z0-9-]+)\s*(>=|<=|>|<)\s*(\S.*?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


@dataclass(frozen=True)
class FailOn:
    """One ``--fail-on`` threshold."""

    text: str
    metric: str
    op: str
    #: Seconds for durations, a fraction for rates, a count otherwise.
    value: float

    def breaches(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """What breaches this threshold: primitives, or the report as a whole."""
        test = _OPS[self.op]
        if self.metric in _GLOBAL:
            count = _GLOBAL[self.metric](doc)
            return [{"value": count}] if test(count, self.value) else []
        kind_of, a, b, section = _PER_PRIMITIVE[self.metric]
        out = []
        for p in doc[section]:
            if kind_of == "duration":
                section = p[a]
                actual = section.get(b) if section else None
            else:
                actual = p.get(a)
            if actual is None:
                continue
            if test(float(actual), self.value):
                out.append({"kind": p["kind"], "name": p["name"], "value": actual})
        return out

    def describe(self, value: Any) -> str:
        kind_of = _PER_PRIMITIVE.get(self.metric, ("count", "", "", ""))[0]
        if kind_of == "duration":
            return duration(float(value))
        if kind_of == "rate":
            return f"{float(value) * 100:.1f}%"
        return f"{value:,}" if isinstance(value, int) else str(value)


def parse_fail_on(items: Iterable[str]) -> list[FailOn]:
    """``wait-p99>50ms,findings>0`` (and repeated options) to thresholds."""
    out = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            match = _EXPR.match(part)
            if match is None:
                raise ReportError(
                    f"--fail-on {part.strip()!r}: expected METRIC OP VALUE, e.g. wait-p99>50ms"
                )
            metric, op, raw = match.groups()
            if metric in _GLOBAL:
                kind_of = "count"
            elif metric in _PER_PRIMITIVE:
                kind_of = _PER_PRIMITIVE[metric][0]
            else:
                known = ", ".join([*_PER_PRIMITIVE, *_GLOBAL])
                raise ReportError(
                    f"--fail-on {part.strip()!r}: unknown metric {metric!r} ({known})"
                )
            value = _threshold(kind_of, raw)
            if value is None:
                expected = {
                    "duration": "a duration such as 50ms",
                    "rate": "a fraction such as 0.2 or a percentage such as 20%",
                    "count": "a number",
                }[kind_of]
                raise ReportError(f"--fail-on {part.strip()!r}: {raw!r} is not {expected}")
            out.append(FailOn(part.strip(), metric, op, value))
    return out


def _threshold(kind_of: str, raw: str) -> float | None:
    if kind_of == "duration":
        ns = parse_duration_ns(raw)
        return None if ns is None else ns / 1e9
    try:
        rate = kind_of == "rate" and raw.endswith("%")
        value = float(raw[:-1]) / 100 if rate else float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# -- the command ---------------------------------------------------------------------------


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _default_paths() -> list[str]:
    return [os.environ.get("TRACEDSYNC_OUTPUT_DIR") or "tracedsync-out"]


def command(args: argparse.Namespace) -> int:
    """Run ``tracedsync report``; 0, 1 (a --fail-on breach) or raise ReportError."""
    try:
        return _command(args)
    except BrokenPipeError:
        # `tracedsync report | head`: the reader left; say nothing more.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0


def _command(args: argparse.Namespace) -> int:
    kinds = _split(args.kind)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ReportError(f"--kind {unknown[0]!r}: not one of {', '.join(KINDS)}")
    thresholds = parse_fail_on(args.fail_on)
    selection = select_files(args.paths or _default_paths(), all_runs=args.all_runs, run=args.run)

    def warn(message: str) -> None:
        sys.stderr.write(f"tracedsync report: warning: {clean(message)}\n")

    analysis = Analysis(
        Filters(kinds=frozenset(kinds), names=tuple(_split(args.name))),
        warn=warn,
        max_line_bytes=args.max_line_bytes,
    )
    analysis.jobs = args.jobs
    start = analysis.run_start(selection.files)
    if args.since:
        analysis.filters.since_ns = parse_time(args.since, start, "--since")
    if args.until:
        analysis.filters.until_ns = parse_time(args.until, start, "--until")
    since, until = analysis.filters.since_ns, analysis.filters.until_ns
    if since is not None and until is not None and until < since:
        raise ReportError(f"--until {args.until} is before --since {args.since}")

    if args.format in ("html", "perfetto"):
        analysis.timeline = Timeline(args.max_bars)
    if args.format in ("html", "pprof", "folded"):
        analysis.profile = Profile(args.profile_side, args.profile_waits)
    binary = args.format == "pprof"
    out_path = args.output if args.output and args.output != "-" else None
    if binary and out_path is None and sys.stdout.isatty():
        raise ReportError("--format pprof writes a binary file: give -o FILE (e.g. waits.pb.gz)")
    analysis.read(selection.files)
    full = build_document(analysis)
    breaches = [(t, t.breaches(full)) for t in thresholds]
    doc = build_document(analysis, top=args.top)
    doc["fail_on"] = [
        {"condition": t.text, "breached": bool(found), "breaches": found} for t, found in breaches
    ]
    if analysis.profile is not None and not analysis.profile.samples:
        warn(_empty_profile(analysis.profile))
    with _Output(out_path, binary=binary) as out:
        if args.format == "pprof":
            from tracedsync.report.render_profile import render_pprof

            assert analysis.profile is not None
            out.write_bytes(
                render_pprof(
                    analysis.profile,
                    time_ns=analysis.first_ns,
                    duration_ns=(analysis.last_ns or 0) - (analysis.first_ns or 0),
                    comments=_profile_comments(analysis),
                )
            )
        elif args.format == "folded":
            from tracedsync.report.render_profile import render_folded

            assert analysis.profile is not None
            out.stream.write(render_folded(analysis.profile))
        elif args.format == "perfetto":
            from tracedsync.report.render_perfetto import render_perfetto

            assert analysis.timeline is not None
            render_perfetto(out.stream, doc, analysis.timeline, start)
        elif args.format == "html":
            from tracedsync.report.render_html import render_html

            assert analysis.timeline is not None and analysis.profile is not None
            out.stream.write(render_html(doc, analysis.timeline, start, analysis.profile))
        elif args.format == "json":
            out.stream.write(render_json(doc))
        else:
            width = args.width or shutil.get_terminal_size((120, 24)).columns
            out.stream.write(render_table(doc, width))
    failed = False
    for threshold, found in breaches:
        for b in found:
            failed = True
            subject = f"{b['kind']} {clean(b['name'])}: " if "name" in b else ""
            sys.stderr.write(
                f"tracedsync report: fail-on {clean(threshold.text)} breached: "
                f"{subject}{threshold.describe(b['value'])}\n"
            )
    return 1 if failed else 0


def _empty_profile(profile: Profile) -> str:
    which = {
        "contention": "lock or semaphore waits (--profile-waits idle or all for the others)",
        "idle": "event, condition or barrier waits",
        "all": "waits",
    }[profile.waits]
    return f"the profile is empty: no {which} kept as spans in these files"


def _profile_comments(analysis: Analysis) -> list[str]:
    """What a pprof profile says about itself (go tool pprof -comments)."""
    assert analysis.profile is not None
    p = analysis.profile
    side = {
        "waiter": "the waiting thread's stack",
        "holder": "the stack of the thread that released the primitive to the waiter",
    }[p.side]
    out = [
        f"tracedsync report: {p.waits} waits, each charged to {side}",
        "only waits kept as spans (at or above wait_threshold_ms, within the span budget)",
        "runs: " + ", ".join(sorted(analysis.runs)) if analysis.runs else "runs: -",
    ]
    if p.unresolved:
        out.append(f"{p.unresolved} waits without their holder's stack (holder unknown or gone)")
    if p.overflow:
        out.append(f"{p.overflow} waits of stacks past the first 100,000 counted as other stacks")
    return out


class _Output:
    """stdout, or a file written beside its final name and renamed at the end."""

    def __init__(self, path: str | None, *, binary: bool = False) -> None:
        self.path = path
        self.binary = binary
        self.stream: IO[str] = sys.stdout
        self._raw: IO[bytes] | None = None
        self._tmp: str | None = None

    def write_bytes(self, data: bytes) -> None:
        """Binary output (``binary=True``): to the file, or stdout's buffer."""
        if self._raw is not None:
            self._raw.write(data)
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def __enter__(self) -> _Output:
        if self.path is not None:
            self._tmp = f"{self.path}.tmp-{os.getpid()}"
            try:
                if self.binary:
                    self._raw = open(self._tmp, "wb")
                else:
                    self.stream = open(self._tmp, "w", encoding="utf-8")
            except OSError as exc:
                raise ReportError(f"cannot write {self.path}: {exc.strerror}") from None
        else:
            reconfigure = getattr(sys.stdout, "reconfigure", None)
            if reconfigure is not None:
                try:
                    reconfigure(errors="backslashreplace")
                except Exception:
                    pass
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._tmp is None:
            self.stream.flush()
            return
        if self._raw is not None:
            self._raw.close()
        else:
            self.stream.close()
        if exc_type is None:
            try:
                os.replace(self._tmp, str(self.path))
            except OSError as err:
                raise ReportError(f"cannot write {self.path}: {err.strerror}") from None
        else:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass


def run_report(
    paths: str | Sequence[str],
    run_id: str | None = None,
    *,
    full: bool = False,
    width: int | None = None,
    jobs: int = DEFAULT_JOBS,
) -> str:
    """What ``tracedsync run`` prints on stderr when the program ends.

    ``paths``: the run's summary directory (``summary-<run>-<pid>.json``,
    whose listed jsonl files are read too), an output directory, files, or
    several of these. A few lines (both sections' top rows, waits still
    blocked, findings, where the files are) or, with ``full`` (``--report``),
    the whole table. Never raises for bad input: a problem is one line.
    """
    return _run_report(paths, run_id, full, width, jobs)[0]


#: The name ``tracedsync run`` has called it by.
run_summary = run_report


def _run_report(
    paths: str | Sequence[str], run_id: str | None, full: bool, width: int | None, jobs: int
) -> tuple[str, bool]:
    listed = [paths] if isinstance(paths, str) else list(paths)
    warnings: list[str] = []
    try:
        selection = select_files(listed, run=run_id)
        analysis = Analysis(warn=warnings.append)
        analysis.jobs = jobs
        analysis.run_start(selection.files)
        analysis.read(selection.files)
        doc = build_document(analysis, top=DEFAULT_TOP if full else 5)
    except ReportError as exc:
        return f"tracedsync report: {exc}\n", False
    width = width or shutil.get_terminal_size((120, 24)).columns
    if full:
        return render_table(doc, width), True
    where = ", ".join(sorted({os.path.dirname(f) or "." for f in doc["files"]})) or listed[0]
    return render_summary(doc, where, width), True


def print_run_report(
    output_dir: str,
    run_id: str | None = None,
    *,
    stream: IO[str] | None = None,
    width: int | None = None,
) -> bool:
    """Print the full table of one run of ``output_dir``; False (and one line
    on the stream) when it cannot be read."""
    text, ok = _run_report(output_dir, run_id, True, width, DEFAULT_JOBS)
    (stream if stream is not None else sys.stderr).write(text)
    return ok
