"""Hostile input (issue 18 §6): impossible numbers refused with file:line, bidi
controls escaped, giant names cut and marked in every output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.helpers import Contention
from tests.report import files
from tests.report.test_report import report
from tracedsync._format import MAX_TEXT, cap, clean
from tracedsync.report.read import available_decoders
from tracedsync.testing import run_threads

LOCK = "db_lock (app.py:3)"


def metrics_with(change: Any) -> str:
    """A valid metrics line after ``change(doc)`` edits it."""
    doc = json.loads(
        files.metrics_line(
            "r1", 7, [files.counters("lock", LOCK, acquisitions=4, contentions=1, waits=[0.01])]
        )
    )
    change(doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"])
    return json.dumps(doc)


def point(metrics: list[dict[str, Any]], name: str) -> dict[str, Any]:
    metric = next(m for m in metrics if m["name"] == name)
    body = metric.get("sum") or metric.get("histogram")
    assert body is not None
    p: dict[str, Any] = body["dataPoints"][0]
    return p


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: point(m, "tracedsync.wait.duration")["explicitBounds"].__setitem__(3, "NaN"),
         "a bucket bound of a tracedsync.wait.duration data point is not a finite number"),
        (lambda m: point(m, "tracedsync.wait.duration")["explicitBounds"].__setitem__(
            3, float("inf")), "is not a finite number"),
        (lambda m: point(m, "tracedsync.contentions").__setitem__("asInt", "-5"),
         "a tracedsync.contentions value is not a count: '-5'"),
        (lambda m: point(m, "tracedsync.acquisitions").__setitem__("asInt", 1e999),
         "a tracedsync.acquisitions value is not a count: inf"),
        (lambda m: point(m, "tracedsync.wait.duration")["bucketCounts"].__setitem__(0, "-5"),
         "a bucket count of a tracedsync.wait.duration data point is not a count"),
        (lambda m: point(m, "tracedsync.wait.time").__setitem__("asDouble", float("nan")),
         "a tracedsync.wait.time value is not a finite duration"),
        (lambda m: point(m, "tracedsync.hold.duration").__setitem__("explicitBounds", [2.0, 1.0]),
         "do not increase"),
    ],
)  # fmt: skip
def test_impossible_metric_numbers_are_refused_with_file_and_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    edit: Any,
    message: str,
) -> None:
    """NaN or infinite bounds and times, negative or infinite counts: exit 2 and
    one line naming file:line, whatever the format and the decoder (one rule:
    refuse). The standard library reads NaN and 1e999 and the report refuses
    the number; msgspec refuses them as JSON."""
    path = files.write(tmp_path / "metrics-r1-7.jsonl", [metrics_with(lambda m: None), ""])
    path.write_text(path.read_text() + metrics_with(edit) + "\n")
    for decoder in available_decoders():
        monkeypatch.setenv("TRACEDSYNC_REPORT_DECODER", decoder)
        for fmt in ("table", "json", "html", "perfetto"):
            extra = ["-o", str(tmp_path / "out")] if fmt in ("html", "perfetto") else []
            rc, out, err = report(capsys, str(tmp_path), "-f", fmt, *extra)
            assert rc == 2 and out == ""
            assert err.startswith(f"tracedsync report: {path}:3: "), err
            assert message in err or (decoder != "stdlib" and "not JSON" in err), err
            assert len(err.splitlines()) == 1


BIDI = "\u202eevil\u202c \u2066x\u2069"


def hostile_run(out: Path, lock_name: str, waiter: str, rounds: int = 1) -> Path:
    """A real contended run: a lock named ``lock_name`` waited for by a thread
    named ``waiter``, ``rounds`` times."""
    tracedsync.configure(
        exporters=["jsonfile"], output_dir=str(out), wait_threshold_ms=0, hold_threshold_ms=0
    )
    lock = tracedsync.Lock(name=lock_name)
    for _ in range(rounds):
        c = Contention(lock, extra_hold=0.001)
        run_threads(c.holder, c.waiter, names=["holder", waiter])
    assert tracedsync.flush()
    tracedsync.shutdown()
    return out


def bidi_run(tmp_path: Path) -> Path:
    return hostile_run(tmp_path / "out", f"lock{BIDI}", f"worker{BIDI}")


def test_bidi_controls_are_escaped_in_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """U+202A-U+202E and U+2066-U+2069 never reach a terminal, a page or a trace raw."""
    d = bidi_run(tmp_path)
    controls = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
    assert clean(BIDI) == "\\u202eevil\\u202c \\u2066x\\u2069"
    rc, table, _ = report(capsys, str(d), "--width", "200")
    assert rc == 0 and clean(BIDI) in table
    for fmt in ("json", "html", "perfetto", "folded"):
        target = tmp_path / f"r.{fmt}"
        assert report(capsys, str(d), "-f", fmt, "-o", str(target))[0] == 0
        text = target.read_text()
        assert not any(c in text for c in controls), fmt
        if fmt == "perfetto":  # escaped in the JSON text, the same value once decoded
            events = json.loads(text)["traceEvents"]
            assert {e["args"]["primitive"] for e in events if e["ph"] == "X"} == {f"lock{BIDI}"}
            assert f"worker{BIDI}" in {e["args"]["thread"] for e in events if e["ph"] == "X"}
        if fmt == "folded":
            assert (
                text.splitlines()[0]
                .rpartition(" ")[0]
                .endswith(f"lock.wait {clean('lock' + BIDI)}")
            )
    rc, out, _ = report(capsys, str(d), "-f", "json")
    doc = json.loads(out)
    assert doc["primitives"][0]["name"] == f"lock{BIDI}"  # JSON escapes, same value


def test_a_cut_name_is_not_cut_again() -> None:
    """The runtime cuts a giant name where it is made; the report's cut of the
    cut text keeps it, first count and all. A text that only looks cut (a mark
    with a hundred digits) is cut."""
    once = cap("L" * 100_000)
    assert cap(once) == once
    fake = "L" * MAX_TEXT + "…[" + "9" * 100 + " more characters cut]"
    assert cap(fake) == "L" * MAX_TEXT + f"…[{len(fake) - MAX_TEXT} more characters cut]"


def test_giant_names_are_cut_and_marked_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 100 KB lock name: cut to 1 KiB and marked in the table, JSON, HTML and
    Perfetto, which stay small."""
    giant = "L" * 100_000
    out = hostile_run(tmp_path / "out", giant, "worker", rounds=5)
    marked = cap(giant)
    assert marked.startswith("L" * MAX_TEXT) and marked.endswith("…[98,976 more characters cut]")
    rc, table, _ = report(capsys, str(out), "--width", "2000")
    assert rc == 0 and "more characters cut]" in table and "L" * (MAX_TEXT + 1) not in table
    rc, text, _ = report(capsys, str(out), "-f", "json")
    assert json.loads(text)["primitives"][0]["name"] == marked
    for fmt in ("html", "perfetto", "folded"):
        target = tmp_path / f"r.{fmt}"
        assert report(capsys, str(out), "-f", fmt, "-o", str(target))[0] == 0
        text = target.read_text()
        assert "more characters cut]" in text and "L" * (MAX_TEXT + 1) not in text
        assert len(text) < 200_000, (fmt, len(text))
