"""``--format perfetto`` against the Chrome Trace Event rules the viewers rely on,
checked by a validator written here from the format's documentation."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.report import files
from tests.report.test_report import Run, record, report
from tracedsync.testing import blocked_on, wait_until


def ns(ts: float) -> int:
    """A trace timestamp (µs, three decimals) as integer nanoseconds."""
    return round(ts * 1000)


def validate(trace: dict[str, Any]) -> dict[str, int]:
    """Check a JSON Object Format trace; the counts of what it holds.

    Per track (pid, tid): complete ("X") slices and B/E pairs are properly
    nested (two slices are disjoint or one holds the other); B/E pairs match.
    Flow events: ids unique per start, every start ("s") has one finish ("f")
    of the same id, category and name, not before it; each lies inside a
    slice of its own track (bound to it; "f" with "bp": "e" to the enclosing
    slice). Every track with slices is named by thread_name metadata.
    """
    events = trace["traceEvents"]
    assert isinstance(events, list)
    slices: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    open_b: dict[tuple[int, int], list[int]] = defaultdict(list)
    names: set[tuple[int, int]] = set()
    starts: dict[Any, dict[str, Any]] = {}
    finishes: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        ph = e["ph"]
        track = (e.get("pid"), e.get("tid"))
        if ph == "M":
            if e["name"] == "thread_name":
                assert isinstance(e["args"]["name"], str)
                names.add(track)
            continue
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int), e
        assert 0 <= e["tid"] < 2**31 and 0 <= e["pid"] < 2**31, e
        if ph == "X":
            assert e["dur"] >= 0 and isinstance(e["name"], str), e
            slices[track].append((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])))
        elif ph == "B":
            open_b[track].append(ns(e["ts"]))
        elif ph == "E":
            assert open_b[track], f"E without B on {track}"
            begin = open_b[track].pop()
            assert ns(e["ts"]) >= begin
            slices[track].append((begin, ns(e["ts"])))
        elif ph == "s":
            assert e["id"] not in starts, f"flow id {e['id']} started twice"
            starts[e["id"]] = e
        elif ph == "f":
            finishes[e["id"]].append(e)
        elif ph == "i":
            assert e.get("s", "t") in ("g", "p", "t")
        else:
            raise AssertionError(f"unexpected phase {ph!r}")
    assert not any(open_b.values()), "B without E"
    for track, items in slices.items():
        assert track in names, f"track {track} has no thread_name"
        items.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[int, int]] = []
        for begin, end in items:
            while stack and stack[-1][1] <= begin:
                stack.pop()
            assert not stack or end <= stack[-1][1], (
                f"improper nesting on {track}: {(begin, end)} starts in {stack[-1]} and ends after"
            )
            stack.append((begin, end))

    def inside(track: tuple[int, int], t: int) -> bool:
        return any(b <= t <= e for b, e in slices.get(track, ()))

    assert set(finishes) <= set(starts), "flow finish without a start"
    for ident, s in starts.items():
        [f] = finishes[ident]
        assert (f["cat"], f["name"]) == (s["cat"], s["name"])
        assert ns(f["ts"]) >= ns(s["ts"])
        assert inside((s["pid"], s["tid"]), ns(s["ts"])), f"flow start {ident} binds to no slice"
        assert f.get("bp") == "e", "finish binds to its enclosing slice"
        assert inside((f["pid"], f["tid"]), ns(f["ts"])), f"flow finish {ident} binds to no slice"
    return {"slices": sum(len(v) for v in slices.values()), "flows": len(starts)}


def perfetto(capsys: pytest.CaptureFixture[str], tmp_path: Path, *paths: str) -> dict[str, Any]:
    trace = tmp_path / "trace.json"
    rc, _, err = report(capsys, *paths, "-f", "perfetto", "-o", str(trace))
    assert rc == 0, err
    doc: dict[str, Any] = json.loads(trace.read_text())
    return doc


def test_validator_rejects_what_the_rules_forbid() -> None:
    """The validator itself: overlapping slices, unbound flows and reused ids fail."""
    named = [{"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "t"}}]

    def x(ts: float, dur: float) -> dict[str, Any]:
        return {"ph": "X", "name": "s", "pid": 1, "tid": 2, "ts": ts, "dur": dur}

    flow = [
        {"ph": "s", "id": 1, "cat": "c", "name": "n", "pid": 1, "tid": 2, "ts": 1.0},
        {"ph": "f", "bp": "e", "id": 1, "cat": "c", "name": "n", "pid": 1, "tid": 2, "ts": 1.5},
    ]
    assert validate({"traceEvents": [*named, x(0, 2), x(0.5, 1), *flow]}) == {
        "slices": 2,
        "flows": 1,
    }
    with pytest.raises(AssertionError, match="improper nesting"):
        validate({"traceEvents": [*named, x(0, 2), x(1, 2)]})
    with pytest.raises(AssertionError, match="binds to no slice"):
        validate({"traceEvents": [*named, x(0, 0.5), *flow]})
    with pytest.raises(AssertionError, match="started twice"):
        validate({"traceEvents": [*named, x(0, 2), *flow, *flow]})


def test_trace_of_a_real_run_obeys_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lock waits and holds of a real run: valid, one arrow per wait from its holder."""
    run: Run = record(tmp_path / "out")
    doc = perfetto(capsys, tmp_path, str(run.out))
    counts = validate(doc)
    assert counts["flows"] == 3
    assert doc["otherData"]["spans_left_out"] == 0


def test_semaphore_trace_of_a_real_run_is_properly_nested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A BoundedSemaphore(1) handed from one thread to another: the waiter's hold
    (read from its own clock reading) is drawn after its wait, never across it."""
    out = tmp_path / "out"
    tracedsync.configure(
        exporters=["jsonfile"], output_dir=str(out), wait_threshold_ms=0, hold_threshold_ms=0
    )
    sem = tracedsync.BoundedSemaphore(1, name="pool_slots")
    held = threading.Event()

    def holder() -> None:
        with sem:
            held.set()
            wait_until(blocked_on(sem))

    first = threading.Thread(target=holder, name="holder")
    first.start()
    held.wait(10)
    waiter = threading.Thread(target=lambda: sem.acquire() and sem.release(), name="waiter")
    waiter.start()
    for t in (first, waiter):
        t.join(10)
        assert not t.is_alive()
    assert tracedsync.flush()
    tracedsync.shutdown()
    doc = perfetto(capsys, tmp_path, str(out))
    validate(doc)
    events = doc["traceEvents"]
    thread = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M"}
    mine = [
        e
        for e in events
        if e["ph"] == "X"
        and e["args"]["primitive"] == "pool_slots"
        and thread[(e["pid"], e["tid"])] == "waiter"
    ]
    wait = next(e for e in mine if e["cat"] == "wait")
    hold = next(e for e in mine if e["cat"] == "hold")
    assert ns(hold["ts"]) >= ns(wait["ts"]) + ns(wait["dur"])


def test_overlaps_are_clamped_and_arrows_found_by_holder_thread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hold that starts 10 µs before its wait ends (two clock readings) and two
    holds taken hand over hand: drawn properly nested, real times in args; a wait
    without a link gets its arrow from sync.holder.thread.id's hold."""
    sem = "slots (pool.py:3)"
    a, b = "a (chain.py:1)", "b (chain.py:2)"
    spans = [
        files.span("semaphore", sem, False, 0, 10, "h1", "holder", 1, "pool.py:9"),
        files.span(
            "semaphore", sem, True, 2, 10.01, "w1", "waiter", 2, "pool.py:8",
            sync__holder__thread__name="holder", sync__holder__thread__id=1,
        ),
        files.span("semaphore", sem, False, 10.0, 30, "h2", "waiter", 2, "pool.py:8"),
        files.span("lock", a, False, 40, 60, "ha", "chain", 3, "chain.py:5"),
        files.span("lock", b, False, 50, 70, "hb", "chain", 3, "chain.py:6"),
    ]  # fmt: skip
    files.write(tmp_path / "spans-c1-5.jsonl", [files.spans_line("c1", 5, spans)])
    doc = perfetto(capsys, tmp_path, str(tmp_path / "spans-c1-5.jsonl"))
    assert validate(doc)["flows"] == 1
    slices = {e["args"]["span_id"]: e for e in doc["traceEvents"] if e["ph"] == "X"}
    assert slices["h2"]["ts"] >= slices["w1"]["ts"] + slices["w1"]["dur"]
    assert slices["h2"]["args"]["real_dur"] == 20000.0
    assert slices["hb"]["ts"] == slices["ha"]["ts"] + slices["ha"]["dur"]
    assert slices["hb"]["args"]["real_dur"] == 20000.0
