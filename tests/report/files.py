"""Writing tracedsync's files by hand, only for what a real run cannot make on
purpose: summary files (the runtime does not write them yet), impossible
metric numbers and re-encoded or broken attributes (bad input), and a hold
that starts microseconds before the wait that led to it ends (two clock
readings). Everything else the report tests read comes from real runs. The
lines are the OTLP JSON and structlog lines the exporters write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

T0 = 1_800_000_000_000_000_000
BOUNDS = [2.0**-20 * 2**i for i in range(24)]  # ~1 µs .. ~8 s


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    return {"key": key, "value": {"stringValue": value}}


def resource(run: str, pid: int) -> dict[str, Any]:
    return {"attributes": [attr("process.pid", pid), attr("tracedsync.run_id", run)]}


def span(
    kind: str,
    name: str,
    wait: bool,
    start_ms: float,
    end_ms: float,
    span_id: str,
    thread: str,
    tid: int,
    site: str,
    links: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    attrs = {
        "sync.kind": kind,
        "sync.name": name,
        "sync.id": 1,
        "thread.id": tid,
        "thread.name": thread,
        "code.function.name": "work",
        "sync.site": site,
        **({"sync.outcome": "acquired"} if wait else {}),
        **{k.replace("__", "."): v for k, v in extra.items()},
    }
    return {
        "traceId": "0" * 31 + "1",
        "spanId": span_id,
        "name": f"{kind}.{'wait' if wait else 'hold'}",
        "kind": 1,
        "startTimeUnixNano": str(T0 + int(start_ms * 1e6)),
        "endTimeUnixNano": str(T0 + int(end_ms * 1e6)),
        "attributes": [attr(k, v) for k, v in attrs.items()],
        "links": [{"traceId": "0" * 31 + "1", "spanId": s} for s in links],
        "status": {},
    }


def spans_line(run: str, pid: int, spans: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": resource(run, pid),
                    "scopeSpans": [{"scope": {"name": "tracedsync"}, "spans": spans}],
                }
            ]
        }
    )


def counters(
    kind: str,
    name: str,
    *,
    acquisitions: int,
    contentions: int,
    timeouts: int = 0,
    waits: list[float] = (),  # type: ignore[assignment]
    holds: list[float] = (),  # type: ignore[assignment]
    uncontended: int = 0,
) -> dict[str, Any]:
    """A primitive's counters as a summary file lists them (seconds)."""

    def hist(samples: list[float], zeros: int) -> list[int]:
        out = [0] * (len(BOUNDS) + 1)
        out[0] = zeros
        for s in samples:
            i = 0
            while i < len(BOUNDS) and s > BOUNDS[i]:
                i += 1
            out[i] += 1
        return out

    return {
        "kind": kind,
        "name": name,
        "instances": 1,
        "acquisitions": acquisitions,
        "reentries": 0,
        "contentions": contentions,
        "timeouts": timeouts,
        "would_block": 0,
        "waits": len(waits) + uncontended,
        "wait_total": sum(waits),
        "wait_max": max(waits, default=0.0),
        "hold_total": sum(holds),
        "hold_max": max(holds, default=0.0),
        "wait_histogram": hist(list(waits), uncontended),
        "hold_histogram": hist(list(holds), 0),
        "spans_suppressed": 0,
    }


def metrics_line(run: str, pid: int, prims: list[dict[str, Any]], end_ms: float = 1000) -> str:
    """One cumulative metrics export holding ``prims`` (as :func:`counters` gives)."""

    def point(p: dict[str, Any], **value: Any) -> dict[str, Any]:
        return {
            "attributes": [attr("sync.kind", p["kind"]), attr("sync.name", p["name"])],
            "startTimeUnixNano": str(T0),
            "timeUnixNano": str(T0 + int(end_ms * 1e6)),
            **value,
        }

    def total(metric: str, field: str, key: str) -> dict[str, Any]:
        return {
            "name": metric,
            "sum": {
                "dataPoints": [point(p, **{key: p[field]}) for p in prims],
                "aggregationTemporality": 2,
                "isMonotonic": True,
            },
        }

    def hist(metric: str, field: str, total_: str, top: str) -> dict[str, Any]:
        return {
            "name": metric,
            "histogram": {
                "dataPoints": [
                    point(
                        p,
                        count=str(sum(p[field])),
                        sum=p[total_],
                        bucketCounts=[str(c) for c in p[field]],
                        explicitBounds=BOUNDS,
                        max=p[top],
                    )
                    for p in prims
                ],
                "aggregationTemporality": 2,
            },
        }

    metrics = [
        total("tracedsync.acquisitions", "acquisitions", "asInt"),
        total("tracedsync.contentions", "contentions", "asInt"),
        total("tracedsync.timeouts", "timeouts", "asInt"),
        total("tracedsync.wait.time", "wait_total", "asDouble"),
        total("tracedsync.hold.time", "hold_total", "asDouble"),
        hist("tracedsync.wait.duration", "wait_histogram", "wait_total", "wait_max"),
        hist("tracedsync.hold.duration", "hold_histogram", "hold_total", "hold_max"),
    ]
    return json.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": resource(run, pid),
                    "scopeMetrics": [{"scope": {"name": "tracedsync"}, "metrics": metrics}],
                }
            ]
        }
    )


def event(name: str, at_ms: float, **fields: Any) -> dict[str, Any]:
    """A structlog event as the logs file holds it."""
    stamp = (T0 + int(at_ms * 1e6)) / 1e9
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(stamp, tz=timezone.utc)
    return {
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "level": fields.pop("level", "warning"),
        "event": name,
        **{k.replace("__", "."): v for k, v in fields.items()},
    }


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path
