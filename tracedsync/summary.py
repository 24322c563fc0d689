"""The exit summary: one small file per traced process, merged by ``tracedsync run``.

Whatever the exporters (``console`` alone, ``otlp`` alone...), every process
``tracedsync run`` starts writes ``summary-<run>-<pid>.json`` into the run's
private directory (``TRACEDSYNC_SUMMARY_DIR``) when it ends -- and a first one
when its main thread is done, in case its other threads are deadlocked and it
is killed before ``atexit``. It holds the process's counters, its findings,
the waits still blocked and where its files are. The runner merges them into
its closing lines (:func:`merge`, :func:`render`) without importing the
report; ``tracedsync report`` reads the same files (``tracedsync.report``).

The format (``"format": "tracedsync-summary/1"``)::

    {"format", "run_id", "pid", "argv", "start", "end", "final",
     "histogram_bounds": [seconds...],
     "primitives": [ {the fields of PrimitiveStats, durations in seconds} ],
     "findings": [ {log events: deadlock_detected, stuck_wait, ...} ],
     "unfinished": [ {unfinished_wait events} ],
     "telemetry": {"produced", "dropped", "suppressed",
                   "exporters": {name: {"offered", "exported", "lane_dropped", "failed"}}},
     "files": [absolute paths of the jsonl files this process wrote]}
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tracedsync import registry
from tracedsync._format import clean, duration
from tracedsync.counters import HISTOGRAM_BOUNDS, Counters
from tracedsync.describe import iso_timestamp
from tracedsync.kinds import LOCK_KINDS

FORMAT = "tracedsync-summary/1"
#: Set by ``tracedsync run`` for the program and its children.
DIRECTORY_VARIABLE = "TRACEDSYNC_SUMMARY_DIR"
#: The findings: what the watchdog and the recorder report about the program
#: (also the live alerts of ``tracedsync run``).
FINDING_EVENTS = frozenset(
    {
        "self_deadlock_suspected",
        "deadlock_detected",
        "stuck_wait",
        "abandoned_hold",
        "barrier_broken",
        "lock_order_inversion",
    }
)
#: Log events kept in the summary: the findings and the telemetry's own trouble.
KEPT_EVENTS = FINDING_EVENTS | {"exporter_failed", "telemetry_dropped"}
#: Findings kept per process (a flood of them is counted, not listed).
FINDINGS_LIMIT = 1000

_findings: list[dict[str, Any]] = []
_findings_seen = 0
#: (thread, since) -> the latest unfinished_wait event of that wait.
_unfinished: dict[tuple[Any, Any], dict[str, Any]] = {}
_started = time.time_ns()


def note(events: Iterable[Mapping[str, Any]]) -> None:
    """Keep the findings and unfinished waits among ``events`` (the pipeline
    calls this with every batch of log events it makes)."""
    global _findings_seen
    for event in events:
        name = event.get("event")
        if name == "unfinished_wait":
            _unfinished[(event.get("thread.id"), event.get("since"))] = dict(event)
        elif name == "unfinished_wait_ended":
            _unfinished.pop((event.get("thread.id"), event.get("since")), None)
        elif name in KEPT_EVENTS:
            _findings_seen += 1
            if len(_findings) < FINDINGS_LIMIT:
                _findings.append(dict(event))


def _primitives() -> list[dict[str, Any]]:
    out = []
    for (kind, name), counters in sorted(registry.aggregated_counters().items()):
        if not _used(counters):
            continue
        out.append(counters.to_stats(name, kind, None)._asdict())
    return out


def _used(c: Counters) -> bool:
    return bool(c.acquisitions or c.waits or c.contentions or c.would_block or c.timeouts)


def document(telemetry: Mapping[str, Any], files: list[str], final: bool) -> dict[str, Any]:
    """This process's summary now."""
    return {
        "format": FORMAT,
        "run_id": os.environ.get("TRACEDSYNC_RUN_ID", ""),
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "start": iso_timestamp(_started),
        "end": iso_timestamp(time.time_ns()),
        "final": final,
        "histogram_bounds": list(HISTOGRAM_BOUNDS),
        "primitives": _primitives(),
        "findings": list(_findings),
        "findings_total": _findings_seen,
        "unfinished": list(_unfinished.values()),
        "telemetry": dict(telemetry),
        "files": files,
    }


def write(telemetry: Mapping[str, Any], output_dir: str | None, final: bool) -> str | None:
    """Write this process's summary into the run's directory (replacing an
    earlier one of this process); its path, or None when there is no such
    directory (not under ``tracedsync run``). Never raises."""
    directory = os.environ.get(DIRECTORY_VARIABLE)
    if not directory:
        return None
    import glob
    import json

    try:
        pid = os.getpid()
        run = os.environ.get("TRACEDSYNC_RUN_ID", "run")
        files = []
        if output_dir:
            files = sorted(
                glob.glob(os.path.join(glob.escape(output_dir), f"*-{run}-{pid}*.jsonl"))
            )
        doc = document(telemetry, files, final)
        path = os.path.join(directory, f"summary-{run}-{pid}.json")
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, default=str)
        os.replace(tmp, path)
        return path
    except Exception:
        return None


def at_fork_child() -> None:
    """A fork child's summary is its own."""
    global _findings_seen, _started
    _findings.clear()
    _findings_seen = 0
    _unfinished.clear()
    _started = time.time_ns()


# --------------------------------------------------------------------------
# The runner's side: merge the run's summaries, say it in a few lines
# --------------------------------------------------------------------------


def read(directory: str) -> list[dict[str, Any]]:
    """Every readable summary in ``directory``."""
    import glob
    import json

    out = []
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "summary-*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == FORMAT:
            out.append(doc)
    return out


_SUMMED = ("acquisitions", "contentions", "timeouts", "waits", "wait_total", "hold_total")


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's processes together: primitives summed by (kind, name)."""
    prims: dict[tuple[str, str], dict[str, Any]] = {}
    findings: list[dict[str, Any]] = []
    unfinished: list[dict[str, Any]] = []
    files: list[str] = []
    findings_total = 0
    for doc in docs:
        for p in doc.get("primitives", []):
            key = (str(p.get("kind")), str(p.get("name")))
            entry = prims.setdefault(key, {k: 0 for k in _SUMMED} | {"wait_max": 0.0})
            for k in _SUMMED:
                entry[k] += p.get(k) or 0
            entry["wait_max"] = max(entry["wait_max"], p.get("wait_max") or 0.0)
        findings.extend(doc.get("findings", []))
        findings_total += int(doc.get("findings_total", len(doc.get("findings", []))))
        unfinished.extend(doc.get("unfinished", []))
        files.extend(doc.get("files", []))
    return {
        "processes": len(docs),
        "primitives": prims,
        "findings": findings,
        "findings_total": findings_total,
        "unfinished": unfinished,
        "files": files,
    }


def render(merged: Mapping[str, Any], run_id: str, where: str | None, limit: int = 5) -> str:
    """The closing lines of ``tracedsync run``."""
    lines = [f"tracedsync: run {run_id}, {merged['processes']} process(es)"]
    prims = merged["primitives"]
    contended = sorted(
        (
            (v["wait_total"], kind, name, v)
            for (kind, name), v in prims.items()
            if kind in LOCK_KINDS and v["contentions"]
        ),
        reverse=True,
    )
    for total, kind, name, v in contended[:limit]:
        acq = int(v["acquisitions"])
        rate = v["contentions"] / acq if acq else 0.0
        lines.append(
            f"  {kind} {clean(name)[:80]}: {acq} acquisitions, {int(v['contentions'])} "
            f"contended ({rate:.1%}), waited {duration(total)} (longest {duration(v['wait_max'])})"
        )
    blocked = merged["unfinished"]
    if not contended and all(u.get("idle") for u in blocked):
        # (a lock wait still blocked is contention: its line follows)
        lines.append("  no contention on locks or semaphores")
    if blocked:
        lock_like = [u for u in blocked if not u.get("idle")]
        lines.append(
            f"  still blocked at exit: {len(lock_like)} lock wait(s), "
            f"{len(blocked) - len(lock_like)} idle wait(s)"
        )
        for u in sorted(blocked, key=lambda u: bool(u.get("idle")))[:limit]:
            lines.append(f"    {clean(u.get('message', ''))[:200]}")
    findings = merged["findings"]
    if merged["findings_total"]:
        lines.append(f"  findings: {merged['findings_total']}")
        for f in findings[:limit]:
            lines.append(f"    {clean(f.get('event'))}: {clean(f.get('message', ''))[:200]}")
    if where:
        lines.append(f"  files in {where}; tracedsync report {where}   for the full analysis")
    return "\n".join(lines) + "\n"
