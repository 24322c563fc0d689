"""What ``tracedsync report`` computes from the files: the *model* layer of
read → model → render.

Everything is streamed: metrics lines are reduced to the snapshots that
matter (the last one of each process, or the two around a time window),
spans to per-primitive, per-call-site and per-thread aggregates with bounded
quantile sketches. Memory grows with the number of distinct primitives,
sites and threads, never with the number of spans.

Durations are integers in nanoseconds here; the renderers convert.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import gc
import itertools
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tracedsync.kinds import IDLE_KINDS
from tracedsync.report.errors import ReportError
from tracedsync.report.metrics import (
    SUMMARY_FORMAT,
    Hist,
    MetricPoint,
    Snapshot,
    decode_metrics,
    summary_snapshot,
)
from tracedsync.report.profile import Profile
from tracedsync.report.read import (
    SCOPE,
    SPAN_NAMES,
    InputFile,
    SpanRecord,
    decode_span,
    decoder_name,
    int_or_none,
    loads,
    nanos,
    number,
    parse_timestamp,
    read_json_file,
    read_lines,
    resource_identity,
    split_lines,
)
from tracedsync.report.timeline import Timeline

#: Spans files bigger than this in all are read by worker processes (--jobs).
PARALLEL_MIN_BYTES = 64 << 20
#: The smallest pieces spans files are cut into for the workers.
CHUNK_BYTES = 24 << 20
#: Span durations kept exactly per primitive (for exact percentiles); past
#: this, the sketch alone.
MAX_EXACT = 2048
#: Log events that mirror spans (the spans are the source of truth).
SPAN_MIRRORS = frozenset({"long_wait", "long_hold"})
#: Findings stored in full; past this, they are only counted.
MAX_FINDINGS = 1000
#: Holder threads remembered per (site, holder site).
MAX_HOLDER_THREADS = 8


# -- histograms and sketches ------------------------------------------------------


class Sketch:
    """A log-bucket histogram of nanosecond durations: 8 buckets per power of
    two (at most 12.5% error), a few hundred buckets at most."""

    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0

    def add(self, ns: int) -> None:
        if ns < 16:
            key = ns if ns > 0 else 0
        else:
            bits = ns.bit_length()
            key = (bits << 3) | ((ns >> (bits - 4)) & 7)
        b = self.buckets
        b[key] = b.get(key, 0) + 1
        self.count += 1
        if ns > self.max:
            self.max = ns

    def merge(self, other: Sketch) -> None:
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    @staticmethod
    def _range(key: int) -> tuple[int, int]:
        if key < 16:
            return key, key
        bits, sub = key >> 3, key & 7
        low = (8 | sub) << (bits - 4)
        return low, low + (1 << (bits - 4)) - 1

    def quantile(self, q: float) -> int | None:
        if not self.count:
            return None
        rank = q * self.count
        if rank >= self.count:
            return self.max
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                low, high = self._range(key)
                return min((low + high) // 2, self.max)
        return self.max


# -- aggregates -----------------------------------------------------------------------


class HolderAgg:
    """The waits one holder site caused at one waiting site."""

    __slots__ = ("acquired_at", "count", "threads", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0
        self.threads: dict[str, int] = {}
        #: Where the holders took the primitive (sync.holder.acquired_at), by waits.
        self.acquired_at: dict[str, int] = {}

    def merge(self, other: HolderAgg) -> None:
        for where, n in other.acquired_at.items():
            if where in self.acquired_at or len(self.acquired_at) < MAX_HOLDER_THREADS:
                self.acquired_at[where] = self.acquired_at.get(where, 0) + n
        self.count += other.count
        self.total += other.total
        for name, n in other.threads.items():
            if name in self.threads or len(self.threads) < MAX_HOLDER_THREADS:
                self.threads[name] = self.threads.get(name, 0) + n


class SiteAgg:
    """Waits from one call site on one primitive, and who blocked them."""

    __slots__ = (
        "blocked",
        "count",
        "function",
        "holders",
        "max",
        "released_before",
        "sketch",
        "timeouts",
        "total",
    )

    def __init__(self, function: str) -> None:
        self.function = function
        #: Waits still blocked at the end (counted in ``count`` too).
        self.blocked = 0
        #: Waits whose holder released before the waiter looked (no holder named).
        self.released_before = 0
        self.count = 0
        self.total = 0
        self.max = 0
        self.timeouts = 0
        self.sketch = Sketch()
        self.holders: dict[str, HolderAgg] = {}

    def merge(self, other: SiteAgg) -> None:
        self.blocked += other.blocked
        self.released_before += other.released_before
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.timeouts += other.timeouts
        self.sketch.merge(other.sketch)
        for key, holder in other.holders.items():
            mine = self.holders.get(key)
            if mine is None:
                self.holders[key] = holder
            else:
                mine.merge(holder)


class PrimAgg:
    """One primitive (kind and name, summed over processes)."""

    __slots__ = (
        "handoff_total",
        "handoff_wait_total",
        "handoff_waits",
        "hold_exact",
        "hold_max",
        "hold_sketch",
        "hold_spans",
        "hold_total",
        "kind",
        "metrics",
        "name",
        "released_before",
        "sites",
        "unfinished",
        "wait_exact",
        "wait_max",
        "wait_sketch",
        "wait_spans",
        "wait_timeouts",
        "wait_total",
    )

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.metrics: MetricPoint | None = None
        self.wait_spans = 0
        self.wait_total = 0
        self.wait_max = 0
        self.wait_timeouts = 0
        self.wait_sketch = Sketch()
        self.hold_spans = 0
        self.hold_total = 0
        self.hold_max = 0
        self.hold_sketch = Sketch()
        self.sites: dict[str, SiteAgg] = {}
        #: Span durations (ns), while there are at most MAX_EXACT; else None.
        self.wait_exact: list[int] | None = []
        self.hold_exact: list[int] | None = []
        #: Waits still blocked at the end (filled when the reading is done).
        self.unfinished: list[Unfinished] = []
        #: Wait spans whose holder released before the waiter looked.
        self.released_before = 0
        #: Wait spans carrying sync.wait.handoff: how many, the hand-off
        #: (release to the waiter's return) in all, and their waits in all (ns).
        self.handoff_waits = 0
        self.handoff_total = 0
        self.handoff_wait_total = 0

    @property
    def idle(self) -> bool:
        """Waits for work or a signal (event, condition, barrier), not contention."""
        return self.kind in IDLE_KINDS

    def merge(self, other: PrimAgg) -> None:
        """Add another reader's span aggregates (metrics are read in one place)."""
        self.wait_spans += other.wait_spans
        self.wait_total += other.wait_total
        self.wait_max = max(self.wait_max, other.wait_max)
        self.wait_timeouts += other.wait_timeouts
        self.wait_sketch.merge(other.wait_sketch)
        self.released_before += other.released_before
        self.handoff_waits += other.handoff_waits
        self.handoff_total += other.handoff_total
        self.handoff_wait_total += other.handoff_wait_total
        self.hold_spans += other.hold_spans
        self.hold_total += other.hold_total
        self.hold_max = max(self.hold_max, other.hold_max)
        self.hold_sketch.merge(other.hold_sketch)
        self.wait_exact = _concat(self.wait_exact, other.wait_exact)
        self.hold_exact = _concat(self.hold_exact, other.hold_exact)
        for key, site in other.sites.items():
            mine = self.sites.get(key)
            if mine is None:
                self.sites[key] = site
            else:
                mine.merge(site)


class ThreadAgg:
    """One thread's waits (contention and idle apart) and holds, from spans."""

    __slots__ = (
        "by_prim",
        "hold_total",
        "holds",
        "idle_max",
        "idle_total",
        "idle_waits",
        "name",
        "pid",
        "tid",
        "wait_max",
        "wait_total",
        "waits",
    )

    def __init__(self, pid: int | None, tid: int | None, name: str) -> None:
        self.pid = pid
        self.tid = tid
        self.name = name
        #: Waits on lock-like primitives (contention).
        self.waits = 0
        self.wait_total = 0
        self.wait_max = 0
        #: Waits for work or a signal (event, condition, barrier).
        self.idle_waits = 0
        self.idle_total = 0
        self.idle_max = 0
        self.holds = 0
        self.hold_total = 0
        self.by_prim: dict[tuple[str, str], int] = {}

    def add_wait(self, key: tuple[str, str], idle: bool, dur: int) -> None:
        if idle:
            self.idle_waits += 1
            self.idle_total += dur
            if dur > self.idle_max:
                self.idle_max = dur
        else:
            self.waits += 1
            self.wait_total += dur
            if dur > self.wait_max:
                self.wait_max = dur
        self.by_prim[key] = self.by_prim.get(key, 0) + dur

    def merge(self, other: ThreadAgg) -> None:
        self.waits += other.waits
        self.wait_total += other.wait_total
        self.wait_max = max(self.wait_max, other.wait_max)
        self.idle_waits += other.idle_waits
        self.idle_total += other.idle_total
        self.idle_max = max(self.idle_max, other.idle_max)
        self.holds += other.holds
        self.hold_total += other.hold_total
        for key, ns in other.by_prim.items():
            self.by_prim[key] = self.by_prim.get(key, 0) + ns


@dataclass
class Unfinished:
    """A wait still blocked when its process flushed or exited."""

    run: str | None
    pid: int | None
    thread: str
    thread_id: int | None
    kind: str
    name: str
    instance: int | None
    site: str
    #: When it ended being observed (the flush), ns since the epoch.
    end_ns: int
    #: How long it had waited then, ns.
    waited_ns: int
    holder: str | None
    holder_site: str | None
    #: "span", "event" or "summary": what said so.
    source: str

    @property
    def idle(self) -> bool:
        return self.kind in IDLE_KINDS


@dataclass
class Finding:
    event: str
    level: str
    time_ns: int | None
    timestamp: str
    message: str
    thread: str | None
    primitive: str | None
    fields: dict[str, Any]
    source: str


@dataclass
class Filters:
    kinds: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()
    #: Absolute bounds (ns since the epoch), resolved before the spans pass.
    since_ns: int | None = None
    until_ns: int | None = None

    def primitive(self, kind: str, name: str) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        return not self.names or any(fnmatch.fnmatchcase(name, g) for g in self.names)


_ROOTS: tuple[str, ...] | None = None
#: "name (path:LINE)": the site part of a primitive's name.
_NAME_SITE = re.compile(r"\(([^()]+):\d+\)$")


def relative_path(path: str) -> str:
    """``path`` relative to the longest of this process's ``sys.path`` entries
    (or the current directory) that holds it; else unchanged."""
    global _ROOTS
    if _ROOTS is None:
        roots = {os.getcwd(), *(os.path.abspath(p) for p in sys.path if p)}
        _ROOTS = tuple(sorted((r.rstrip("/") for r in roots if r not in ("", "/")), key=len)[::-1])
    if os.path.isabs(path):
        for root in _ROOTS:
            if path.startswith(root + "/"):
                return path[len(root) + 1 :]
    return path


class SiteNamer:
    """Prints an absolute ``path:LINE`` site the way tracedsync prints sites
    (relative to its ``sys.path`` entry): as the longest relative path the
    files themselves use for that file (in primitive names, holder sites),
    else relative to this process's ``sys.path``."""

    def __init__(self, relative_files: set[str]) -> None:
        self._by_base: dict[str, list[str]] = {}
        for rel in relative_files:
            self._by_base.setdefault(os.path.basename(rel), []).append(rel)
        for options in self._by_base.values():
            options.sort(key=len, reverse=True)
        self._cache: dict[str, str] = {}

    def __call__(self, site: str) -> str:
        if not site.startswith("/"):
            return site
        known = self._cache.get(site)
        if known is not None:
            return known
        path, sep, line = site.rpartition(":")
        if not sep or not line.isdigit():
            path, line = site, ""
        out = None
        for rel in self._by_base.get(os.path.basename(path), ()):
            if path.endswith("/" + rel):
                out = rel
                break
        name = out if out is not None else relative_path(path)
        result = f"{name}:{line}" if line else name
        if len(self._cache) < 100_000:
            self._cache[site] = result
        return result


class Analysis:
    """Streams the files once and keeps bounded aggregates."""

    def __init__(
        self,
        filters: Filters | None = None,
        *,
        warn: Callable[[str], None] | None = None,
        max_line_bytes: int | None = None,
    ) -> None:
        self.filters = filters or Filters()
        self.warn_cb = warn
        self.max_line_bytes = max_line_bytes
        self.warnings: list[str] = []
        self.files: list[str] = []
        self.runs: dict[str, set[int]] = {}
        self.start_ns: int | None = None
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        # spans
        self.spans_read = 0
        self.spans_used = 0
        self.spans_filtered = 0
        self.foreign_spans = 0
        self.foreign_scopes: dict[str, int] = {}
        self.other_spans: dict[str, int] = {}
        self.other_signals = 0
        self.prims: dict[tuple[str, str], PrimAgg] = {}
        self.threads: dict[tuple[int | None, int | None, str], ThreadAgg] = {}
        # metrics: per process key, the snapshots kept
        self._latest: dict[tuple[str | None, int | None], Snapshot] = {}
        self._base: dict[tuple[str | None, int | None], Snapshot] = {}
        self._end: dict[tuple[str | None, int | None], Snapshot] = {}
        self.metric_lines = 0
        self.telemetry: dict[str, float] = {}
        self.exporters: dict[str, dict[str, float]] = {}
        #: Summary files' counters, per process: used where no metrics line is.
        self._summaries: dict[tuple[str | None, int | None], Snapshot] = {}
        self.summary_files = 0
        # logs
        self.findings: list[Finding] = []
        self.finding_counts: dict[str, int] = {}
        self._finding_keys: set[tuple[Any, ...]] = set()
        #: (run, pid, thread id, primitive id) -> [(start of a wait still
        #: blocked, ns; the index of its finding)]: each flush reports it again.
        self._unfinished_findings: dict[tuple[Any, ...], list[tuple[int, int | None]]] = {}
        self.log_lines = 0
        #: Waits still blocked at a flush, the latest per thread of a process.
        self.unfinished: dict[tuple[str | None, int | None, str], Unfinished] = {}
        #: (run, pid, thread id) -> [(primitive id, name, start ns)] of waits
        #: reported still blocked that ended later (``unfinished_wait_ended``).
        self._ended_waits: dict[tuple[Any, ...], list[tuple[str, str, int]]] = {}
        self._prescan_start: int | None = None
        self._keep_cache: dict[tuple[str, str], bool] = {}
        #: The fast decoder's attribute lists (see fast.AttrCache), and the
        #: token that says a SpanAttrs.memo was made here.
        self._attr_cache: Any = None
        self._token = object()
        #: Worker processes for big inputs (1: read everything here).
        self.jobs = 1
        #: The spans the timelines draw (html, perfetto), when one is wanted.
        self.timeline: Timeline | None = None
        #: Wait time by stack (pprof, folded, the HTML flame graph), when wanted.
        self.profile: Profile | None = None
        #: "stdlib" or "msgspec" (read.decoder_name()).
        self.decoder = decoder_name()

    # -- helpers ---------------------------------------------------------------

    def site_namer(self) -> SiteNamer:
        """How sites are printed, from the relative paths the files use
        (call once everything is read)."""
        files: set[str] = set()

        def note(site: str | None) -> None:
            if site and not site.startswith("/") and ":" in site:
                files.add(site.rpartition(":")[0])

        for kind_name in self.prims:
            match = _NAME_SITE.search(kind_name[1])
            if match:
                files.add(match.group(1))
        for prim in self.prims.values():
            for site in prim.sites.values():
                for hsite, holder in site.holders.items():
                    note(hsite)
                    for where in holder.acquired_at:
                        note(where)
            for u in prim.unfinished:
                note(u.holder_site)
        return SiteNamer(files)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.warn_cb is not None:
            self.warn_cb(message)

    def _lines(
        self,
        path: str,
        limit: int | None = None,
        span: tuple[int, int, int] | None = None,
        skip: Callable[[bytes], bool] | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> Iterable[tuple[int, Any]]:
        kwargs: dict[str, Any] = {"warn": self.warn, "limit": limit, "skip": skip}
        kwargs["decode"] = decode or self._generic()
        if span is not None:
            kwargs.update(start=span[0], end=span[1], first_line=span[2])
        if self.max_line_bytes is not None:
            kwargs["max_line_bytes"] = self.max_line_bytes
        return read_lines(path, **kwargs)

    def _note_process(self, run: str | None, pid: int | None) -> None:
        if run is not None:
            pids = self.runs.setdefault(run, set())
            if pid is not None:
                pids.add(pid)

    # -- reading ------------------------------------------------------------------

    def run_start(self, files: Sequence[InputFile]) -> int | None:
        """When the run began: the earliest process start in the metrics, else
        the earliest span start in the first line of each spans file."""
        starts: list[int] = []
        for f in files:
            if f.signal not in (None, "metrics", "spans"):
                continue
            try:
                for _, doc in self._lines(f.path, limit=1):
                    starts.extend(_first_times(doc))
            except ReportError:
                continue  # reported properly by the full pass
        self._prescan_start = min(starts) if starts else None
        return self._prescan_start

    def read(self, files: Sequence[InputFile]) -> None:
        """Read every file: metrics first, then spans, then logs.

        With ``jobs`` > 1 and enough span data, spans files are cut into
        chunks read by worker processes, whose aggregates are merged here.
        """
        order = {"summary": 0, "metrics": 0, None: 1, "spans": 1, "logs": 2}
        self.files = [f.path for f in files]
        ordered = sorted(files, key=lambda f: order.get(f.signal, 1))
        spans = [f for f in ordered if f.signal == "spans"]
        parallel = self.jobs > 1 and self._parallel_ok(spans)
        # Parsing creates millions of short-lived containers and nothing here
        # makes reference cycles: the cyclic collector only costs time (~40%).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            first = [f for f in ordered if f.signal in ("summary", "metrics")]
            rest = [f for f in ordered if f not in first and not (parallel and f in spans)]
            for f in first:
                self._read_file(f)
            if parallel:

                def read_rest() -> None:
                    for f in rest:
                        self._read_file(f)

                # Worker processes read the spans while this one reads the rest.
                self._read_parallel(spans, read_rest)
            else:
                for f in rest:
                    self._read_file(f)
        finally:
            if was_enabled:
                gc.enable()
        self._finish_metrics()
        self._finish_unfinished()
        if self.profile is not None:
            self.profile.finish()
        if self.timeline is not None:
            self.timeline.site_name = self.site_namer()

    def _read_file(self, f: InputFile) -> None:
        if f.signal == "summary":
            self._read_summary(f)
        elif f.signal == "logs":
            self._read_logs(f)
        else:
            self._read_otlp(f)

    def _parallel_ok(self, spans: Sequence[InputFile]) -> bool:
        total = 0
        for f in spans:
            try:
                total += os.path.getsize(f.path)
            except OSError:
                return False
        return total >= PARALLEL_MIN_BYTES

    def _read_parallel(self, spans: Sequence[InputFile], meanwhile: Callable[[], object]) -> None:
        """Spans files cut into chunks for worker processes; ``meanwhile``
        runs here while they read."""
        import concurrent.futures
        import multiprocessing

        # About four chunks per worker: enough to balance, few enough that the
        # per-chunk results (the slowest spans) stay small.
        total = sum(os.path.getsize(f.path) for f in spans)
        chunk = max(CHUNK_BYTES, total // (self.jobs * 4))
        tasks = [(f.path, rng) for f in spans for rng in split_lines(f.path, chunk)]
        limit = self.timeline.limit if self.timeline is not None else 0
        profile = (self.profile.side, self.profile.waits) if self.profile is not None else None
        # spawn: the parent may have threads (fork would copy their locks).
        context = multiprocessing.get_context("spawn")
        try:
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(self.jobs, len(tasks)), mp_context=context
            )
            try:
                # One chunk a worker in flight, and one queued once results
                # come: results wait here as objects, so more would cost
                # memory, not time.
                queue = iter(tasks)
                pending: collections.deque[Any] = collections.deque()

                def submit(n: int) -> None:
                    # A later chunk need not keep spans shorter than the
                    # shortest the timeline already keeps.
                    floor = self.timeline.floor() if self.timeline is not None else 0
                    for path, rng in itertools.islice(queue, n):
                        pending.append(
                            pool.submit(
                                read_chunk,
                                path,
                                rng,
                                self.filters,
                                self.max_line_bytes,
                                limit,
                                floor,
                                profile,
                            )
                        )

                submit(self.jobs)
                meanwhile()
                submit(self.jobs)
                # In order (deterministic merges), dropping each result once merged.
                while pending:
                    part, bars = pending.popleft().result()
                    self._merge(part)
                    del part
                    if bars is not None:
                        try:
                            if self.timeline is not None:
                                self.timeline.merge(bars)
                        finally:
                            os.unlink(bars)
                    submit(1)
            except BaseException:
                # An error or Ctrl-C: do not wait for the chunks still queued,
                # and remove the timeline files of those already read.
                pool.shutdown(wait=False, cancel_futures=True)
                for future in pending:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        bars = future.result()[1]
                        if bars is not None:
                            with contextlib.suppress(OSError):
                                os.unlink(bars)
                raise
            pool.shutdown(wait=True)
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise ReportError(f"a worker process failed ({exc}); try --jobs 1") from None

    def _merge(self, part: Analysis) -> None:
        """Add a worker's span aggregates to these."""
        for message in part.warnings:
            self.warn(message)
        for run, pids in part.runs.items():
            self.runs.setdefault(run, set()).update(pids)
        self.spans_read += part.spans_read
        self.spans_used += part.spans_used
        self.spans_filtered += part.spans_filtered
        self.foreign_spans += part.foreign_spans
        self.other_signals += part.other_signals
        for scope, n in part.foreign_scopes.items():
            self.foreign_scopes[scope] = self.foreign_scopes.get(scope, 0) + n
        for label, n in part.other_spans.items():
            self.other_spans[label] = self.other_spans.get(label, 0) + n
        if part.first_ns is not None and (self.first_ns is None or part.first_ns < self.first_ns):
            self.first_ns = part.first_ns
        if part.last_ns is not None and (self.last_ns is None or part.last_ns > self.last_ns):
            self.last_ns = part.last_ns
        for key, prim in part.prims.items():
            mine = self.prims.get(key)
            if mine is None:
                self.prims[key] = prim
            else:
                mine.merge(prim)
        for tkey, thread in part.threads.items():
            known = self.threads.get(tkey)
            if known is None:
                self.threads[tkey] = thread
            else:
                known.merge(thread)
        for ukey, u in part.unfinished.items():
            self._note_unfinished(ukey, u)
        if self.profile is not None and part.profile is not None:
            self.profile.merge(part.profile)

    def _read_otlp(self, f: InputFile, span: tuple[int, int, int] | None = None) -> None:
        fast = self._fast()
        decode = fast.decode_line if fast is not None else None
        for lineno, doc in self._lines(f.path, span=span, decode=decode):
            where = f"{f.path}:{lineno}"
            if fast is not None and doc.__class__ is fast.TypedLine:
                if self._typed_spans(fast, doc.request, where):
                    continue
                doc = loads(doc.raw)  # types tracedsync does not write: the careful path
            if not isinstance(doc, dict):
                raise ReportError(f"{where}: not an OTLP export request (a JSON {_kind(doc)})")
            if "resourceSpans" in doc:
                self._spans_doc(doc["resourceSpans"], where)
            elif "resourceMetrics" in doc:
                self._metrics_doc(doc["resourceMetrics"], where)
            elif "resourceLogs" in doc:
                self.other_signals += 1
            elif "event" in doc and f.signal is None:
                self._log_event(doc, where, f.run, f.pid)
            else:
                raise ReportError(
                    f"{where}: not an OTLP export request "
                    "(no resourceSpans, resourceMetrics or resourceLogs)"
                )

    # -- spans --------------------------------------------------------------------------

    def _generic(self) -> Callable[[bytes], Any]:
        """The decoder of lines that are not spans (logs, metrics)."""
        fast = self._fast()
        return fast.decode_generic if fast is not None else loads

    def _fast(self) -> Any:
        """The typed decoder module, when the msgspec decoder is chosen."""
        if self.decoder != "msgspec":
            return None
        from tracedsync.report import fast

        return fast

    def _typed_spans(self, fast: Any, request: Any, where: str) -> bool:
        """Fold a typed spans request in; False (nothing folded) when a span
        needs the careful path."""
        records = []
        foreign: list[tuple[str, int]] = []
        other: list[str] = []
        runs = []
        cache = self._attr_cache
        if cache is None:
            cache = self._attr_cache = fast.AttrCache()
        for rs in request.resourceSpans:
            run, pid = fast.resource_identity(rs.resource)
            runs.append((run, pid))
            for ss in rs.scopeSpans:
                scope_name = ss.scope.name if ss.scope is not None else None
                if scope_name != SCOPE:
                    foreign.append((str(scope_name) if scope_name else "(no scope)", len(ss.spans)))
                    continue
                for span in ss.spans:
                    known = SPAN_NAMES.get(span.name)
                    if known is None:
                        other.append(str(span.name)[:100])
                        continue
                    rec = fast.decode_span(span, known, run, pid, cache)
                    if rec is None:
                        return False
                    records.append(rec)
        for run, pid in runs:
            self._note_process(run, pid)
        for label, n in foreign:
            self.foreign_spans += n
            self.foreign_scopes[label] = self.foreign_scopes.get(label, 0) + n
        for label in other:
            self.spans_read += 1
            self.other_spans[label] = self.other_spans.get(label, 0) + 1
        self.spans_read += len(records)
        add = self.add_span
        for rec in records:
            add(rec)
        return True

    def _spans_doc(self, resource_spans: Any, where: str) -> None:
        if not isinstance(resource_spans, list):
            raise ReportError(f"{where}: resourceSpans is not a list")
        for rs in resource_spans:
            if not isinstance(rs, dict):
                raise ReportError(f"{where}: a resourceSpans entry is not an object")
            run, pid, _ = resource_identity(rs.get("resource"))
            self._note_process(run, pid)
            scope_spans = rs.get("scopeSpans", [])
            if not isinstance(scope_spans, list):
                raise ReportError(f"{where}: scopeSpans is not a list")
            for ss in scope_spans:
                if not isinstance(ss, dict):
                    raise ReportError(f"{where}: a scopeSpans entry is not an object")
                spans = ss.get("spans", [])
                if not isinstance(spans, list):
                    raise ReportError(f"{where}: spans is not a list")
                scope = ss.get("scope")
                scope_name = scope.get("name") if isinstance(scope, dict) else None
                if scope_name != SCOPE:
                    self.foreign_spans += len(spans)
                    label = str(scope_name) if scope_name else "(no scope)"
                    self.foreign_scopes[label] = self.foreign_scopes.get(label, 0) + len(spans)
                    continue
                for span in spans:
                    self._span(span, run, pid, where)

    def _span(self, span: Any, run: str | None, pid: int | None, where: str) -> None:
        self.spans_read += 1
        try:
            known = SPAN_NAMES.get(span["name"])
        except (TypeError, KeyError):
            if not isinstance(span, dict):
                raise ReportError(f"{where}: a span is not an object") from None
            known = None
        if known is None:
            label = str(span.get("name"))[:100]
            self.other_spans[label] = self.other_spans.get(label, 0) + 1
            return
        self.add_span(decode_span(span, known, run, pid, where))

    def _targets(self, rec: SpanRecord) -> list[Any]:
        """What a span is folded into: [token, pid, whether the filters keep
        its primitive, its primitive's aggregate, its thread's, its waiting
        site's (made at its first wait)]. Remembered on its SpanAttrs, which
        the fast decoder shares among the spans that say the same."""
        a = rec.a
        memo = a.memo
        if memo is not None and memo[0] is self._token and memo[1] == rec.pid:
            return memo  # type: ignore[no-any-return]
        key = (a.kind, a.name)
        keep = self._keep_cache.get(key)
        if keep is None:
            keep = self._keep_cache[key] = self.filters.primitive(*key)
        prim = thread = None
        if keep:
            prim = self.prims.get(key)
            if prim is None:
                prim = self.prims[key] = PrimAgg(a.kind, a.name)
            tkey = (rec.pid, a.thread_id, a.thread)
            thread = self.threads.get(tkey)
            if thread is None:
                thread = self.threads[tkey] = ThreadAgg(rec.pid, a.thread_id, a.thread)
        memo = a.memo = [self._token, rec.pid, keep, prim, thread, None]
        return memo

    def add_span(self, rec: SpanRecord) -> None:
        """Fold one span into the aggregates (and the timeline), unless the
        filters leave it out (it is counted as filtered out then)."""
        filters = self.filters
        start, end = rec.start_ns, rec.end_ns
        if (filters.since_ns is not None and end < filters.since_ns) or (
            filters.until_ns is not None and start > filters.until_ns
        ):
            self.spans_filtered += 1
            return
        memo = self._targets(rec)
        if not memo[2]:
            self.spans_filtered += 1
            return
        self.spans_used += 1
        if self.first_ns is None or start < self.first_ns:
            self.first_ns = start
        if self.last_ns is None or end > self.last_ns:
            self.last_ns = end
        if not rec.is_wait:
            _add_hold(memo[3], memo[4], end - start)
        elif rec.h.outcome == "unfinished":
            # Folded in with the other reports of still-blocked waits at the end.
            self._unfinished_span(rec)
        else:
            site = memo[5]
            if site is None:
                a = rec.a
                prim = memo[3]
                site = prim.sites.get(a.site)
                if site is None:
                    site = prim.sites[a.site] = SiteAgg(a.function)
                memo[5] = site
            _add_wait(memo[3], memo[4], site, rec)
        if self.timeline is not None:
            self.timeline.add(rec)
        if self.profile is not None:
            self.profile.add(rec)

    # -- metrics ---------------------------------------------------------------------------

    def _metrics_doc(self, resource_metrics: Any, where: str) -> None:
        if not isinstance(resource_metrics, list):
            raise ReportError(f"{where}: resourceMetrics is not a list")
        self.metric_lines += 1
        for rm in resource_metrics:
            if not isinstance(rm, dict):
                raise ReportError(f"{where}: a resourceMetrics entry is not an object")
            run, pid, _ = resource_identity(rm.get("resource"))
            self._note_process(run, pid)
            snap = decode_metrics(rm.get("scopeMetrics", []), where)
            if snap is None:
                continue
            self._keep(snap, (run, pid))

    def _keep(self, snap: Snapshot, key: tuple[str | None, int | None]) -> None:
        latest = self._latest.get(key)
        if latest is None or snap.time_ns >= latest.time_ns:
            self._latest[key] = snap
        since, until = self.filters.since_ns, self.filters.until_ns
        if since is not None and snap.time_ns <= since:
            base = self._base.get(key)
            if base is None or snap.time_ns >= base.time_ns:
                self._base[key] = snap
        if until is not None and snap.time_ns >= until:
            end = self._end.get(key)
            if end is None or snap.time_ns < end.time_ns:
                self._end[key] = snap

    def _finish_metrics(self) -> None:
        self.start_ns = self._prescan_start
        for key, summary in self._summaries.items():
            # A summary file stands in for a process's metrics only when no
            # metrics line of that process was read (the metrics win).
            if key not in self._latest:
                self._keep(summary, key)
        for key, latest in self._latest.items():
            if self.start_ns is None or (
                latest.start_ns is not None and latest.start_ns < self.start_ns
            ):
                self.start_ns = latest.start_ns
            end = self._end.get(key, latest)
            base = self._base.get(key)
            until = self.filters.until_ns
            if until is not None and end.start_ns is not None and end.start_ns > until:
                continue  # the process started after the window
            if base is not None and base.time_ns >= end.time_ns:
                continue  # nothing recorded inside the window
            for pkey, point in end.points.items():
                if not self.filters.primitive(*pkey):
                    continue
                value = point.copy()
                if base is not None and pkey in base.points:
                    value.subtract(base.points[pkey])
                prim = self.prims.get(pkey)
                if prim is None:
                    prim = self.prims[pkey] = PrimAgg(*pkey)
                if prim.metrics is None:
                    prim.metrics = value
                else:
                    prim.metrics.add(value)
            for name, v in end.telemetry.items():
                earlier = base.telemetry.get(name, 0.0) if base is not None else 0.0
                self.telemetry[name] = self.telemetry.get(name, 0.0) + max(0.0, v - earlier)
            for exporter, lane in end.exporters.items():
                before = base.exporters.get(exporter, {}) if base is not None else {}
                mine = self.exporters.setdefault(exporter, {})
                for name, v in lane.items():
                    mine[name] = mine.get(name, 0.0) + max(0.0, v - before.get(name, 0.0))

    # -- logs ------------------------------------------------------------------------------

    def _read_logs(self, f: InputFile) -> None:
        for lineno, doc in self._lines(f.path, skip=is_span_mirror):
            where = f"{f.path}:{lineno}"
            if not isinstance(doc, dict) or not isinstance(doc.get("event"), str):
                raise ReportError(f'{where}: not a tracedsync log event (no "event" field)')
            self._log_event(doc, where, f.run, f.pid)

    def _log_event(self, doc: dict[str, Any], where: str, run: str | None, pid: int | None) -> None:
        self.log_lines += 1
        event = doc["event"]
        if not isinstance(event, str):
            raise ReportError(f'{where}: "event" is not a string')
        if event in SPAN_MIRRORS:
            return
        if event == "unfinished_wait_ended":
            self._note_ended(doc, run, pid)
            return
        time_ns = parse_timestamp(doc.get("timestamp"))
        filters = self.filters
        if time_ns is not None and (
            (filters.since_ns is not None and time_ns < filters.since_ns)
            or (filters.until_ns is not None and time_ns > filters.until_ns)
        ):
            return
        prim_name = doc.get("sync.name")
        prim_kind = doc.get("sync.kind")
        if isinstance(prim_name, str):
            if filters.names and not _names_match(filters.names, prim_name):
                return
            if filters.kinds and isinstance(prim_kind, str) and prim_kind not in filters.kinds:
                return
        if event == "unfinished_wait" and not self._unfinished_event(doc, time_ns, run, pid):
            return  # an idle wait still waiting at exit: listed, not a finding
        thread = doc.get("thread.name")
        message = doc.get("message")
        dedupe: tuple[Any, ...] = (
            event,
            str(doc.get("timestamp")),
            str(thread),
            str(prim_name),
            str(message),
            run,
            pid,
        )
        reports = None
        if event == "unfinished_wait":
            reports = self._unfinished_reports(doc, run, pid)
            if reports is not None and self._reported_before(reports, doc, time_ns, where):
                return
        if dedupe in self._finding_keys:
            return  # the same finding from a summary file and a logs file
        if len(self._finding_keys) < 10 * MAX_FINDINGS:
            self._finding_keys.add(dedupe)
        self.finding_counts[event] = self.finding_counts.get(event, 0) + 1
        index = len(self.findings) if len(self.findings) < MAX_FINDINGS else None
        if reports is not None:
            reports.append((parse_timestamp(doc.get("since")) or 0, index))
        if index is not None:
            self.findings.append(self._finding(doc, event, time_ns, thread, where))

    def _unfinished_reports(
        self, doc: dict[str, Any], run: str | None, pid: int | None
    ) -> list[tuple[int, int | None]] | None:
        """The waits already reported still blocked by this thread on this
        primitive: [(start in ns, index of the finding)]; None when ``doc``
        carries no start."""
        if parse_timestamp(doc.get("since")) is None:
            return None
        wait = (run, pid, str(doc.get("thread.id")), str(doc.get("sync.id")))
        return self._unfinished_findings.setdefault(wait, [])

    def _reported_before(
        self,
        reports: list[tuple[int, int | None]],
        doc: dict[str, Any],
        time_ns: int | None,
        where: str,
    ) -> bool:
        """Every flush reports a wait still blocked again (a program that ends
        flushes twice): True when ``doc`` is one already found -- the same
        start to within a millisecond, as each flush turns the monotonic start
        into wall time afresh -- after putting the later report in its place."""
        since = parse_timestamp(doc.get("since")) or 0
        for start, index in reports:
            if abs(start - since) <= 1_000_000:
                if index is not None and (time_ns or 0) >= (self.findings[index].time_ns or 0):
                    self.findings[index] = self._finding(
                        doc, "unfinished_wait", time_ns, doc.get("thread.name"), where
                    )
                return True
        return False

    @staticmethod
    def _finding(
        doc: dict[str, Any], event: str, time_ns: int | None, thread: Any, where: str
    ) -> Finding:
        message = doc.get("message")
        prim_name = doc.get("sync.name")
        fields = {
            k: v for k, v in doc.items() if k not in ("timestamp", "level", "event", "message")
        }
        return Finding(
            event=event,
            level=str(doc.get("level", "")),
            time_ns=time_ns,
            timestamp=str(doc.get("timestamp", "")),
            message=str(message) if message is not None else _default_message(event, doc),
            thread=str(thread) if thread is not None else None,
            primitive=str(prim_name) if prim_name is not None else None,
            fields=fields,
            source=where,
        )

    # -- summary files -----------------------------------------------------------------

    def _read_summary(self, f: InputFile) -> None:
        doc = read_json_file(f.path, self.max_line_bytes)
        where = f.path
        if not isinstance(doc, dict) or doc.get("format") != SUMMARY_FORMAT:
            raise ReportError(
                f'{where}: not a tracedsync summary (no "format": "{SUMMARY_FORMAT}")'
            )
        self.summary_files += 1
        run = doc.get("run_id")
        run = run if isinstance(run, str) else f.run
        pid = int_or_none(doc.get("pid"))
        pid = pid if pid is not None else f.pid
        self._note_process(run, pid)
        self._summaries[(run, pid)] = summary_snapshot(doc, where)
        for name in ("findings", "unfinished"):
            items = doc.get(name, [])
            if not isinstance(items, list):
                raise ReportError(f"{where}: {name} is not a list")
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                    raise ReportError(f"{where}: {name}[{i}] is not a tracedsync log event")
                self._log_event(item, f"{where} ({name}[{i}])", run, pid)

    # -- waits still blocked --------------------------------------------------------------

    def _note_unfinished(self, key: tuple[str | None, int | None, str], u: Unfinished) -> None:
        """Keep the latest report per thread: a later flush supersedes an earlier one."""
        known = self.unfinished.get(key)
        if known is None or (u.end_ns, u.source == "span") > (known.end_ns, known.source == "span"):
            self.unfinished[key] = u

    def _unfinished_span(self, rec: SpanRecord) -> None:
        a, h = rec.a, rec.h
        u = Unfinished(
            rec.run,
            rec.pid,
            a.thread,
            a.thread_id,
            a.kind,
            a.name,
            a.instance,
            a.site,
            rec.end_ns,
            rec.end_ns - rec.start_ns,
            h.holder,
            h.holder_site,
            "span",
        )
        self._note_unfinished((rec.run, rec.pid, a.thread), u)

    def _unfinished_event(
        self, doc: dict[str, Any], time_ns: int | None, run: str | None, pid: int | None
    ) -> bool:
        """Note an ``unfinished_wait`` event; whether it is also a finding (a
        lock-like wait, or an idle one past the idle_stuck_after_ms it carries)."""
        kind, name = doc.get("sync.kind"), doc.get("sync.name")
        waited = number(doc.get("waited_ms"))
        if not isinstance(kind, str) or not isinstance(name, str) or waited is None:
            return True  # not one this report understands: listed as a finding as it is
        thread = str(doc.get("thread.name") or "?")
        site = doc.get("site") or doc.get("sync.site")
        holder = doc.get("sync.holder.thread.name")
        hsite = doc.get("sync.holder.site")
        waited_ns = int(max(0.0, waited if math.isfinite(waited) else 0.0) * 1e6)
        u = Unfinished(
            run,
            pid,
            thread,
            int_or_none(doc.get("thread.id")),
            kind,
            name,
            int_or_none(doc.get("sync.instance")),
            str(site) if site is not None else "?",
            time_ns or 0,
            waited_ns,
            str(holder) if holder is not None else None,
            str(hsite) if hsite is not None else None,
            "event",
        )
        self._note_unfinished((run, pid, thread), u)
        if kind not in IDLE_KINDS and doc.get("idle") is not True:
            return True
        stuck_after = number(doc.get("idle_stuck_after_ms"))
        return stuck_after is not None and waited >= stuck_after

    def _note_ended(self, doc: dict[str, Any], run: str | None, pid: int | None) -> None:
        since = parse_timestamp(doc.get("since"))
        if since is None:
            return
        waits = self._ended_waits.setdefault((run, pid, str(doc.get("thread.id"))), [])
        if len(waits) < MAX_FINDINGS:
            waits.append((str(doc.get("sync.id")), str(doc.get("sync.name")), since))

    def _drop_ended(self) -> None:
        """Waits a flush reported still blocked that ended afterwards (the
        main thread ended while they waited, say): neither findings nor
        still blocked."""
        if not self._ended_waits:
            return
        dropped: set[int] = set()
        for (run, pid, thread_id, prim_id), reports in self._unfinished_findings.items():
            ended = self._ended_waits.get((run, pid, thread_id), ())
            for start, index in reports:
                if any(p == prim_id and abs(t - start) <= 1_000_000 for p, _, t in ended):
                    self.finding_counts["unfinished_wait"] -= 1
                    if index is not None:
                        dropped.add(index)
        if dropped:
            self.findings = [f for i, f in enumerate(self.findings) if i not in dropped]
        if not self.finding_counts.get("unfinished_wait", 1):
            del self.finding_counts["unfinished_wait"]
        for key, u in list(self.unfinished.items()):
            ended = self._ended_waits.get((u.run, u.pid, str(u.thread_id)), ())
            start = u.end_ns - u.waited_ns  # to the rounding of waited_ms
            if any(n == u.name and abs(t - start) <= 5_000_000 for _, n, t in ended):
                del self.unfinished[key]

    def _finish_unfinished(self) -> None:
        """Fold the waits still blocked into their primitives, sites and threads."""
        self._drop_ended()
        for u in self.unfinished.values():
            key = (u.kind, u.name)
            if not self.filters.primitive(*key):
                continue
            prim = self.prims.get(key)
            if prim is None:
                prim = self.prims[key] = PrimAgg(*key)
            prim.unfinished.append(u)
            site = prim.sites.get(u.site)
            if site is None:
                site = prim.sites[u.site] = SiteAgg("")
            site.blocked += 1
            site.count += 1
            site.total += u.waited_ns
            site.max = max(site.max, u.waited_ns)
            site.sketch.add(u.waited_ns)
            tkey = (u.pid, u.thread_id, u.thread)
            thread = self.threads.get(tkey)
            if thread is None:
                thread = self.threads[tkey] = ThreadAgg(u.pid, u.thread_id, u.thread)
            thread.add_wait(key, prim.idle, u.waited_ns)


def read_chunk(
    path: str,
    rng: tuple[int, int, int],
    filters: Filters,
    max_line_bytes: int | None,
    timeline_limit: int,
    timeline_floor: int = 0,
    profile: tuple[str, str] | None = None,
) -> tuple[Analysis, str | None]:
    """In a worker process: the aggregates of one range of a spans file and,
    when a timeline is drawn, a private file holding the slowest spans of it
    (longer than ``timeline_floor`` ns) for :meth:`Timeline.merge`;
    ``profile``: (side, waits) of the wait-time-by-stack profile wanted."""
    gc.disable()
    part = Analysis(filters, max_line_bytes=max_line_bytes)
    if timeline_limit:
        part.timeline = Timeline(timeline_limit, timeline_floor)
    if profile is not None:
        part.profile = Profile(*profile)
    part._read_otlp(InputFile(path, signal="spans"), rng)
    if part.profile is not None:
        part.profile = part.profile.part()
    bars = None
    if part.timeline is not None:
        fd, bars = tempfile.mkstemp(prefix="tracedsync-report-", suffix=".jsonl")
        os.close(fd)
        part.timeline.export(bars)
    part.timeline = None
    part._keep_cache = {}
    part._attr_cache = None
    return part, bars


def _add_wait(prim: PrimAgg, thread: ThreadAgg, s: SiteAgg, rec: SpanRecord) -> None:
    # The hottest code of the report (once per wait span): Sketch.add,
    # ThreadAgg.add_wait and the holder's counts are written out here.
    said = rec.h
    dur = rec.end_ns - rec.start_ns
    if dur < 16:
        bucket = dur if dur > 0 else 0
    else:
        bits = dur.bit_length()
        bucket = (bits << 3) | ((dur >> (bits - 4)) & 7)
    prim.wait_spans += 1
    prim.wait_total += dur
    if dur > prim.wait_max:
        prim.wait_max = dur
    sketch = prim.wait_sketch
    sketch.buckets[bucket] = sketch.buckets.get(bucket, 0) + 1
    sketch.count += 1
    if dur > sketch.max:
        sketch.max = dur
    exact = prim.wait_exact
    if exact is not None:
        if len(exact) < MAX_EXACT:
            exact.append(dur)
        else:
            prim.wait_exact = None
    timed_out = said.outcome == "timeout"
    if timed_out:
        prim.wait_timeouts += 1
    s.count += 1
    s.total += dur
    if dur > s.max:
        s.max = dur
    if timed_out:
        s.timeouts += 1
    sketch = s.sketch
    sketch.buckets[bucket] = sketch.buckets.get(bucket, 0) + 1
    sketch.count += 1
    if dur > sketch.max:
        sketch.max = dur
    if said.holder_site is not None or said.holder is not None:
        hkey = said.holder_site if said.holder_site is not None else "?"
        h = s.holders.get(hkey)
        if h is None:
            h = s.holders[hkey] = HolderAgg()
        h.count += 1
        h.total += dur
        name = said.holder
        if name is not None:
            threads = h.threads
            if name in threads or len(threads) < MAX_HOLDER_THREADS:
                threads[name] = threads.get(name, 0) + 1
        where = said.acquired_at
        if where is not None:
            acquired = h.acquired_at
            if where in acquired or len(acquired) < MAX_HOLDER_THREADS:
                acquired[where] = acquired.get(where, 0) + 1
    elif said.released_before:
        s.released_before += 1
        prim.released_before += 1
    handoff = rec.handoff_ns
    if handoff is not None:
        prim.handoff_waits += 1
        prim.handoff_total += handoff if handoff < dur else dur
        prim.handoff_wait_total += dur
    if prim.kind in IDLE_KINDS:
        thread.idle_waits += 1
        thread.idle_total += dur
        if dur > thread.idle_max:
            thread.idle_max = dur
    else:
        thread.waits += 1
        thread.wait_total += dur
        if dur > thread.wait_max:
            thread.wait_max = dur
    by_prim = thread.by_prim
    key = (prim.kind, prim.name)
    by_prim[key] = by_prim.get(key, 0) + dur


def _add_hold(prim: PrimAgg, thread: ThreadAgg, dur: int) -> None:
    prim.hold_spans += 1
    prim.hold_total += dur
    if dur > prim.hold_max:
        prim.hold_max = dur
    prim.hold_sketch.add(dur)
    prim.hold_exact = _append(prim.hold_exact, dur)
    thread.holds += 1
    thread.hold_total += dur


def _append(exact: list[int] | None, dur: int) -> list[int] | None:
    if exact is None or len(exact) >= MAX_EXACT:
        return None
    exact.append(dur)
    return exact


def _concat(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    if a is None or b is None or len(a) + len(b) > MAX_EXACT:
        return None
    return a + b


def is_span_mirror(raw: bytes) -> bool:
    """Whether a logs line is a ``long_wait``/``long_hold`` event (which mirror
    spans), judged by its bytes before any decoding: the first ``"event":``
    key of the line names it. (A key can only be written ``"event":`` with
    unescaped quotes; tracedsync's events have it at the top level, before any
    nested object.)"""
    i = raw.find(b'"event":')
    if i < 0:
        return False
    j = i + 8
    if raw[j : j + 1] == b" ":
        j += 1
    return raw.startswith(b'"long_wait"', j) or raw.startswith(b'"long_hold"', j)


def _names_match(globs: Sequence[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _default_message(event: str, doc: dict[str, Any]) -> str:
    if event == "telemetry_dropped":
        return (
            f"tracedsync dropped {doc.get('dropped')} records "
            f"({doc.get('dropped_total')} of {doc.get('produced_total')} in all)"
        )
    if event == "exporter_failed":
        return f"exporter {doc.get('exporter')} failed: {doc.get('error')}: {doc.get('detail')}"
    return ""


def _kind(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null"
    )


def _first_times(doc: Any) -> list[int]:
    """Start times in the first line of a file (for the run start)."""
    out: list[int] = []
    if not isinstance(doc, dict):
        return out
    for rm in doc.get("resourceMetrics", []) or []:
        for sm in (rm.get("scopeMetrics", []) if isinstance(rm, dict) else []) or []:
            for metric in (sm.get("metrics", []) if isinstance(sm, dict) else []) or []:
                if not isinstance(metric, dict):
                    continue
                for data in metric.values():
                    if isinstance(data, dict):
                        for p in data.get("dataPoints", []) or []:
                            t = nanos(p.get("startTimeUnixNano")) if isinstance(p, dict) else None
                            if t:
                                out.append(t)
                                break
    for rs in doc.get("resourceSpans", []) or []:
        for ss in (rs.get("scopeSpans", []) if isinstance(rs, dict) else []) or []:
            scope = ss.get("scope") if isinstance(ss, dict) else None
            if not isinstance(scope, dict) or scope.get("name") != SCOPE:
                continue
            for span in ss.get("spans", []) or []:
                t = nanos(span.get("startTimeUnixNano")) if isinstance(span, dict) else None
                if t:
                    out.append(t)
    return out


__all__ = [
    "Analysis",
    "Filters",
    "Finding",
    "Hist",
    "PrimAgg",
    "SiteAgg",
    "Sketch",
    "ThreadAgg",
    "read_chunk",
]
