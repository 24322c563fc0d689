"""Wait time by stack: ``--format pprof`` read by the real ``go tool pprof``,
``--format folded``, both sides (waiter, holder), from a real traced run.

``go tool pprof`` comes with Go (Debian's ``golang-go``, which ``.ci/run``
installs); without a ``go`` binary the pprof tests skip and say how to get it.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.report.test_report import prim, report, report_json

GO = shutil.which("go")
needs_go = pytest.mark.skipif(
    GO is None,
    reason="no go binary: install Debian's golang-go (apt-get install -y golang-go) "
    "to check the pprof profile with go tool pprof",
)

#: The program: three 50 ms waits for hot_lock in serve_request -> load_user
#: (the holder releases it in writer -> commit), one short wait for
#: cold_lock at module level (a one-frame stack: sync.site only), and an
#: idle wait of 20 ms for the event go.
APP = """\
import threading
import time

from tracedsync.testing import blocked_on, wait_until

hot_lock = threading.Lock()
cold_lock = threading.Lock()
held = threading.Event()


def load_user():
    with hot_lock:  # HOT-WAIT
        pass


def serve_request():
    held.wait(10)
    load_user()  # CALL


def begin():
    hot_lock.acquire()
    held.set()


def commit():
    hot_lock.release()  # RELEASE


def writer():
    begin()
    wait_until(blocked_on(hot_lock))
    time.sleep(0.05)
    commit()  # COMMIT


for _ in range(3):
    held.clear()
    threads = [
        threading.Thread(target=writer, name="writer"),
        threading.Thread(target=serve_request, name="server"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


def hold_cold():
    with cold_lock:
        held.set()
        wait_until(blocked_on(cold_lock))
        time.sleep(0.005)


held.clear()
helper = threading.Thread(target=hold_cold, name="helper")
helper.start()
held.wait(10)
with cold_lock:  # COLD-WAIT
    pass
helper.join(10)

go = threading.Event()
setter = threading.Thread(target=lambda: (time.sleep(0.02), go.set()), name="setter")
setter.start()
go.wait(10)  # IDLE-WAIT
setter.join(10)
"""


def line_of(marker: str) -> int:
    return next(i for i, text in enumerate(APP.splitlines(), 1) if marker in text)


def run_app(directory: Path) -> Path:
    """Run APP under ``tracedsync run``; its output directory."""
    app = directory / "app.py"
    app.write_text(APP)
    out = directory / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--output-dir", str(out),
         "--", sys.executable, str(app)],
        capture_output=True, text=True, timeout=120, cwd=str(directory),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_app(tmp_path_factory.mktemp("profile"))


def hot_and_cold(capsys: pytest.CaptureFixture[str], out: Path) -> tuple[dict[str, Any], ...]:
    doc = report_json(capsys, str(out))
    return prim(doc, "hot_lock (app.py:6)"), prim(doc, "cold_lock (app.py:7)")


def folded(capsys: pytest.CaptureFixture[str], *args: str) -> dict[tuple[str, ...], int]:
    rc, out, err = report(capsys, *args, "--format", "folded")
    assert rc == 0, err
    stacks: dict[tuple[str, ...], int] = {}
    for line in out.splitlines():
        path, _, value = line.rpartition(" ")
        stacks[tuple(path.split(";"))] = int(value)
    return stacks


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


# -- folded ----------


def test_folded_is_root_first_with_the_wait_total(
    profile_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each line: the outermost frame first, the primitive last, the value the
    nanoseconds the report's wait spans add up to; a one-frame wait by its site."""
    hot, cold = hot_and_cold(capsys, profile_run)
    stacks = folded(capsys, str(profile_run))
    assert len(stacks) == 2
    hot_stack = next(s for s in stacks if s[-1] == "lock.wait hot_lock (app.py:6)")
    assert hot_stack[0].startswith("_bootstrap (threading.py:")
    assert hot_stack[-3:-1] == (
        f"serve_request (app.py:{line_of('# CALL')})",
        f"load_user (app.py:{line_of('HOT-WAIT')})",
    )
    assert stacks[hot_stack] == ns(hot["spans"]["wait_total"])
    assert hot["spans"]["waits"] == 3 and stacks[hot_stack] > 3 * 50_000_000
    cold_stack = (f"<module> (app.py:{line_of('COLD-WAIT')})", "lock.wait cold_lock (app.py:7)")
    assert stacks[cold_stack] == ns(cold["spans"]["wait_total"])


def test_holder_side_charges_the_releasing_stack(
    profile_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--profile-side holder: the hot waits are charged to writer -> commit,
    where the holder released the lock, as Go's mutex profile charges the unlocker."""
    hot, cold = hot_and_cold(capsys, profile_run)
    stacks = folded(capsys, str(profile_run), "--profile-side", "holder")
    hot_stack = next(s for s in stacks if s[-1] == "lock.release hot_lock (app.py:6)")
    assert hot_stack[-3:-1] == (
        f"writer (app.py:{line_of('# COMMIT')})",
        f"commit (app.py:{line_of('RELEASE')})",
    )
    assert stacks[hot_stack] == ns(hot["spans"]["wait_total"])
    cold_stack = next(s for s in stacks if s[-1] == "lock.release cold_lock (app.py:7)")
    assert cold_stack[-2].startswith("hold_cold (app.py:")
    assert sum(stacks.values()) == ns(hot["spans"]["wait_total"]) + ns(cold["spans"]["wait_total"])


def test_idle_waits_on_request(profile_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--profile-waits idle: the event waits, not the locks; all: both."""
    event = f"go (app.py:{line_of('go = threading.Event()')})"
    waited = prim(report_json(capsys, str(profile_run)), event)["spans"]["wait_total"]
    idle = folded(capsys, str(profile_run), "--profile-waits", "idle")
    assert idle[(f"<module> (app.py:{line_of('IDLE-WAIT')})", f"event.wait {event}")] == ns(waited)
    assert all(s[-1].startswith("event.wait ") for s in idle)
    both = folded(capsys, str(profile_run), "--profile-waits", "all")
    assert set(both) == set(idle) | set(folded(capsys, str(profile_run)))


def test_empty_profile_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run without lock waits: an empty profile and a warning naming --profile-waits."""
    out = tmp_path / "out"
    app = tmp_path / "quiet.py"
    app.write_text("import threading\nlock = threading.Lock()\nwith lock:\n    pass\n")
    subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--output-dir", str(out), "--",
         sys.executable, str(app)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    rc, text, err = report(capsys, str(out), "-f", "folded")
    assert rc == 0 and text == ""
    assert "the profile is empty: no lock or semaphore waits" in err
    assert "--profile-waits idle or all" in err


# -- pprof ----------


def varints(data: bytes) -> list[tuple[int, int, Any]]:
    """(field, wire type, value) of one protobuf message: bytes for
    length-delimited fields (a reader written apart from the report's encoder)."""
    out = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, wire, varint()))
        elif wire == 2:
            n = varint()
            out.append((field, wire, data[i : i + n]))
            i += n
        else:
            raise AssertionError(f"wire type {wire}")
    return out


def test_pprof_format_details(
    profile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """string_table[0] is "", ids start at 1, period_type and
    default_sample_type (delay) set, sample values (count, delay)."""
    path = tmp_path / "waits.pb.gz"
    rc, _, err = report(capsys, str(profile_run), "-f", "pprof", "-o", str(path))
    assert rc == 0, err
    fields = varints(gzip.decompress(path.read_bytes()))
    strings = [v.decode() for f, _, v in fields if f == 6]
    assert strings[0] == ""
    sample_types = [varints(v) for f, _, v in fields if f == 1]
    assert [(strings[t[0][2]], strings[t[1][2]]) for t in sample_types] == [
        ("contentions", "count"),
        ("delay", "nanoseconds"),
    ]
    [period_type] = [varints(v) for f, _, v in fields if f == 11]
    assert (strings[period_type[0][2]], strings[period_type[1][2]]) == ("contentions", "count")
    assert [v for f, _, v in fields if f == 12] == [1]
    assert [strings[v] for f, _, v in fields if f == 14] == ["delay"]
    for f in (4, 5):  # locations, functions: ids 1, 2, 3, ...
        ids = [varints(v)[0] for field, _, v in fields if field == f]
        assert [(x[0], x[2]) for x in ids] == [(1, i) for i in range(1, len(ids) + 1)]
    hot, _ = hot_and_cold(capsys, profile_run)
    samples = [varints(v) for f, _, v in fields if f == 2]
    assert len(samples) == 2
    values = [v for f, _, v in samples[0] if f == 2]
    assert [v for _, _, v in varints(_as_fields(values[0]))] == [3, ns(hot["spans"]["wait_total"])]
    labels = [varints(v) for f, _, v in samples[0] if f == 3]
    assert {(strings[x[0][2]], strings[x[1][2]]) for x in labels} == {
        ("kind", "lock"),
        ("primitive", "hot_lock (app.py:6)"),
    }


def _as_fields(data: bytes) -> bytes:
    """A packed list of varints as field-1 varints, for varints()."""
    out = bytearray()
    i = 0
    while i < len(data):
        j = i
        while data[j] & 0x80:
            j += 1
        out += b"\x08" + data[i : j + 1]
        i = j + 1
    return bytes(out)


def go_pprof(*args: str, cwd: Path) -> str:
    assert GO is not None
    env = {**os.environ, "PPROF_TMPDIR": str(cwd), "HOME": str(cwd), "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(
        [GO, "tool", "pprof", *args], capture_output=True, text=True, timeout=120, cwd=str(cwd),
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def delay_ms(text: str) -> float:
    """``150.23ms`` / ``1.20s`` / ``830us`` as milliseconds."""
    match = re.fullmatch(r"([\d.]+)(ns|us|µs|ms|s)", text)
    assert match, text
    scale = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]
    return float(match.group(1)) * scale


def trace_of(traces: str, leaf: str) -> tuple[dict[str, str], list[str]]:
    """The labels and frames (innermost first) of the ``-traces`` block whose
    innermost frame starts with ``leaf``."""
    for block in re.split(r"^-+\+-+$", traces, flags=re.M):
        labels: dict[str, str] = {}
        frames: list[str] = []
        for line in block.splitlines():
            label = re.match(r"^\s*([\w.]+):\s+(.*)$", line)
            if label and not frames:
                labels[label.group(1)] = label.group(2)
            elif line.strip():
                value = re.match(r"^\s*[\d.]+\w*\s{2,}(.*)$", line)
                frames.append(value.group(1) if value else line.strip())
        if frames and frames[0].startswith(leaf):
            return labels, frames
    raise AssertionError(f"no trace ending in {leaf}: {traces}")


@needs_go
def test_go_tool_pprof_reads_the_profile(
    profile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real go tool pprof: -top ranks the hot lock first with its delay;
    -traces shows its stack, innermost first, with the kind and primitive labels,
    and with -lines each frame's file and line."""
    hot, cold = hot_and_cold(capsys, profile_run)
    path = tmp_path / "waits.pb.gz"
    rc, _, err = report(capsys, str(profile_run), "-f", "pprof", "-o", str(path))
    assert rc == 0, err
    top = go_pprof("-top", str(path), cwd=tmp_path)
    assert "Type: delay" in top
    row = re.compile(r"^\s*[\d.]+\w*\s+[\d.]+%")
    rows = [line.split(None, 5) for line in top.splitlines() if row.match(line)]
    flat, _, _, _, _, name = rows[0]
    assert name == "lock.wait hot_lock (app.py:6)"
    assert delay_ms(flat) == pytest.approx(hot["spans"]["wait_total"] * 1e3, rel=0.005)
    total = (hot["spans"]["wait_total"] + cold["spans"]["wait_total"]) * 1e3
    match = re.search(r"Total samples = ([\d.]+\w*s)", top)
    assert match and delay_ms(match.group(1)) == pytest.approx(total, rel=0.005)
    assert {r[5] for r in rows} >= {"load_user", "serve_request", "lock.wait cold_lock (app.py:7)"}

    labels, frames = trace_of(go_pprof("-traces", str(path), cwd=tmp_path), "lock.wait hot_lock")
    assert labels == {"kind": "lock", "primitive": "hot_lock (app.py:6)"}
    assert frames[:3] == ["lock.wait hot_lock (app.py:6)", "load_user", "serve_request"]
    assert frames[-1] == "_bootstrap"
    _, frames = trace_of(
        go_pprof("-traces", "-lines", str(path), cwd=tmp_path), "lock.wait hot_lock"
    )
    assert frames[:3] == [
        "lock.wait hot_lock (app.py:6) app.py:6",
        f"load_user app.py:{line_of('HOT-WAIT')}",
        f"serve_request app.py:{line_of('# CALL')}",
    ]
    assert re.fullmatch(r"_bootstrap threading\.py:\d+", frames[-1])

    counts = go_pprof("-top", "-sample_index=contentions", str(path), cwd=tmp_path)
    assert re.search(r"^\s*3\s+[\d.]+%.*lock\.wait hot_lock", counts, re.M)
    raw = go_pprof("-raw", str(path), cwd=tmp_path)
    assert "contentions/count delay/nanoseconds" in raw

    holder = tmp_path / "holder.pb.gz"
    rc, _, err = report(
        capsys, str(profile_run), "-f", "pprof", "--profile-side", "holder", "-o", str(holder)
    )
    assert rc == 0, err
    traces = go_pprof("-traces", str(holder), cwd=tmp_path)
    _, frames = trace_of(traces, "lock.release hot_lock")
    assert frames[:3] == ["lock.release hot_lock (app.py:6)", "commit", "writer"]


def test_pprof_to_a_terminal_needs_o(
    profile_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Binary output is never written to a terminal: one line asking for -o."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    rc, _, err = report(capsys, str(profile_run), "-f", "pprof")
    assert rc == 2
    assert "--format pprof writes a binary file: give -o FILE" in err


def test_pprof_to_a_pipe(profile_run: Path, tmp_path: Path) -> None:
    """``tracedsync report -f pprof > file``: the same bytes as -o."""
    to_file = tmp_path / "a.pb.gz"
    cmd = [sys.executable, "-m", "tracedsync", "report", str(profile_run), "-f", "pprof"]
    subprocess.run([*cmd, "-o", str(to_file)], check=True, timeout=120)
    piped = subprocess.run(cmd, check=True, capture_output=True, timeout=120).stdout
    assert piped == to_file.read_bytes()
    assert varints(gzip.decompress(piped))[0][0] == 1  # a sample type first


def test_holder_side_joins_across_worker_chunks() -> None:
    """A wait read by one worker whose hold another worker read before it: the
    parent charges it to the hold's stack when it merges the parts in order; a
    wait whose hold never comes is charged to "(holder unknown)"."""
    from tracedsync.report.profile import HOLDER_UNKNOWN, Profile
    from tracedsync.report.read import NO_HOLDER, SpanAttrs, SpanRecord

    def span(span_id: str, wait: bool, stack: tuple[str, ...], links: list[str]) -> SpanRecord:
        attrs = SpanAttrs("lock", "l (a.py:1)")
        attrs.stack = stack
        return SpanRecord(attrs, NO_HOLDER, "r", 1, wait, 0, 5_000, span_id, links, None)

    first, second = Profile("holder"), Profile("holder")
    first.add(span("h1", False, ("a.py:9 in release_it", "a.py:20 in main"), []))
    second.add(span("w1", True, ("a.py:5 in wait_it",), ["h1"]))
    second.add(span("w2", True, ("a.py:5 in wait_it",), ["never"]))
    whole = Profile("holder")
    for part in (first.part(), second.part()):
        whole.merge(part)
    whole.finish()
    assert {s[0]: (s[3], s[4]) for s in whole.sorted_samples()} == {
        ("a.py:9 in release_it", "a.py:20 in main"): (1, 5_000),
        (HOLDER_UNKNOWN,): (1, 5_000),
    }
    assert whole.count == 2 and whole.unresolved == 1
