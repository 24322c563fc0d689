"""``tracedsync report --format html`` in a real headless Chromium.

The browser is Debian's ``chromium`` (``.ci/run`` installs it when missing),
driven over the DevTools protocol with the small websocket client below: no
browser download, no extra Python package. Without a chromium binary the
browser test skips and says how to get one.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.report.test_report import EVIL, Run, record, report
from tracedsync._format import clean
from tracedsync.cli import main

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
    "--remote-debugging-port=0",
]


class WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: text frames, pings, close."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlparse(url)
        assert parts.hostname and parts.port
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        assert b" 101 " in status, status
        self._buffer = head.split(b"\r\n\r\n", 1)[1]

    def _exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("websocket closed")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else b""
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:
                self._send_frame(0xA, data)
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """A DevTools session on one page: calls, and the events seen meanwhile."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == name:
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name} within {timeout}s")
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)

    def js(self, expression: str) -> Any:
        """Evaluate in the page (promises awaited); the JSON value."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def frame(self) -> None:
        """Let the page render (two animation frames)."""
        self.js("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(1))))")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads, dialogs (an alert is XSS)."""
        out = []
        for e in self.events:
            method, p = e["method"], e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {p.get('message')}")
            elif method == "Network.loadingFailed":
                out.append(f"load failed: {p.get('errorText')}")
        return out


def chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Page]:
    """A headless Chromium with a DevTools session on a blank page."""
    exe = chromium()
    if exe is None:
        pytest.skip(
            "no chromium binary found (tried: " + ", ".join(BROWSERS) + "); install Debian's "
            "chromium (apt-get install -y chromium) to run the HTML report in a browser"
        )
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    ws = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (tmp_path / "chromium.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"chromium did not start (exit {proc.poll()}): {tail}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = []
        while time.monotonic() < deadline:
            with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if targets:
                break
            time.sleep(0.05)
        assert targets, "chromium has no page"
        ws = WebSocket(targets[0]["webSocketDebuggerUrl"])
        page = Page(ws)
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.call(f"{domain}.enable")
        yield page
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        log.close()


def span_ids(out: Path) -> dict[str, tuple[str, str]]:
    """spanId -> (wait|hold, sync.name) of every tracedsync span in the files."""
    found = {}
    for path in out.glob("spans-*.jsonl"):
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        attrs = {a["key"]: a["value"] for a in span["attributes"]}
                        kind = span["name"].rsplit(".", 1)[1]
                        found[span["spanId"]] = (kind, attrs["sync.name"]["stringValue"])
    return found


@pytest.fixture
def html_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Run, Path]:
    """A real contended run (lock named with markup and escapes) and its HTML report."""
    run = record(tmp_path / "out", rounds=3, lock_name=EVIL)
    page = tmp_path / "report.html"
    rc, _, err = report(capsys, str(run.out), "--format", "html", "-o", str(page))
    assert rc == 0, err
    return run, page


def test_html_is_one_self_contained_file(html_run: tuple[Run, Path]) -> None:
    """No external resource: no src/href, a CSP forbidding fetches, inline script and style."""
    _, page = html_run
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in text
    assert not re.search(r"\b(src|href)\s*=", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert text.count("<script") == 2 and "<style>" in text


def test_html_report_in_chromium(browser: Page, html_run: tuple[Run, Path], tmp_path: Path) -> None:
    """In Chromium: no console error, one bar per span, tooltip, zoom, pan, screenshot."""
    run, page_path = html_run
    expected = span_ids(run.out)
    assert expected
    browser.call("Page.navigate", url=page_path.as_uri())
    browser.wait_event("Page.loadEventFired")
    assert browser.js("document.body.getAttribute('data-ready')") == "1"
    browser.frame()

    bars = browser.js(
        "Array.from(document.querySelectorAll('.bar[data-span-id]'))"
        ".map(e => [e.dataset.spanId, e.dataset.type, e.dataset.primitive])"
    )
    assert {b[0]: (b[1], b[2]) for b in bars} == expected
    lock_waits = [b for b in bars if b[1] == "wait" and b[2] == EVIL]
    assert len(lock_waits) == 3
    assert browser.js("document.querySelectorAll('#rows .row').length") >= 3
    assert "waiter" in browser.js("document.getElementById('rows').textContent")

    # Hover a wait on the lock: the tooltip says what, how long, where and who held it.
    rect = browser.js(
        f"(() => {{ const e = document.querySelector('.bar[data-span-id=\"{lock_waits[0][0]}\"]');"
        " const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()"
    )
    x, y = rect[0] + rect[2] / 2, rect[1] + rect[3] / 2
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    browser.frame()
    assert browser.js("document.getElementById('tip').hidden") is False
    tip = browser.js("document.getElementById('tip').textContent")
    assert clean(EVIL) in tip  # shown escaped, as in the tables
    assert "duration" in tip and "ms" in tip
    assert "helpers.py:" in tip
    assert "holder holder at tests/helpers.py:" in tip

    # Zoom in with the wheel: a narrower view; drag pans it; reset shows everything.
    def view() -> tuple[float, float]:
        a, b = browser.js("document.getElementById('tl').getAttribute('data-view')").split()
        return float(a), float(b)

    full = view()
    browser.call("Input.dispatchMouseEvent", type="mouseWheel", x=x, y=y, deltaX=0, deltaY=-800)
    browser.frame()
    zoomed = view()
    assert zoomed[1] - zoomed[0] < (full[1] - full[0]) / 2
    browser.call(
        "Input.dispatchMouseEvent", type="mousePressed", x=700, y=y, button="left", clickCount=1
    )
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=900, y=y, button="left")
    browser.call(
        "Input.dispatchMouseEvent", type="mouseReleased", x=900, y=y, button="left", clickCount=1
    )
    browser.frame()
    panned = view()
    assert panned[0] < zoomed[0]
    assert panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0], rel=1e-6)
    browser.js("document.getElementById('zoom-reset').click()")
    browser.frame()
    assert view() == pytest.approx(full)

    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 10_000
    (tmp_path / "report.png").write_bytes(shot)
    assert browser.problems() == []
    # The hostile name stayed text: no element was made from it.
    assert browser.js("document.querySelectorAll('body script').length") == 2


def test_html_with_no_spans_loads_cleanly(browser: Page, tmp_path: Path) -> None:
    """A run without spans (only metrics) still gives a page without errors."""
    out = tmp_path / "out"
    import tracedsync

    tracedsync.configure(exporters=["jsonfile"], output_dir=str(out))
    lock = tracedsync.Lock(name="quiet_lock")
    with lock:
        pass
    assert tracedsync.flush()
    tracedsync.shutdown()
    page_path = tmp_path / "empty.html"
    assert main(["report", str(out), "-f", "html", "-o", str(page_path)]) == 0
    browser.call("Page.navigate", url=page_path.as_uri())
    browser.wait_event("Page.loadEventFired")
    assert browser.js("document.body.getAttribute('data-ready')") == "1"
    assert browser.js("document.querySelectorAll('.bar').length") == 0
    assert "quiet_lock" in browser.js("document.querySelector('table.prims').textContent")
    assert browser.problems() == []


def test_both_sections_visible_in_chromium(browser: Page, tmp_path: Path) -> None:
    """Contention and idle waits are two visible sections of the page, each with its rows."""
    import subprocess
    import sys

    from tests.report.test_report import ROOT

    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "tracedsync", "run", "--output-dir", str(out), "--",
         sys.executable, str(ROOT / "examples" / "config_reload.py")],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page_path = tmp_path / "sections.html"
    assert main(["report", str(out), "-f", "html", "-o", str(page_path)]) == 0
    browser.call("Page.navigate", url=page_path.as_uri())
    browser.wait_event("Page.loadEventFired")
    assert browser.js("document.body.getAttribute('data-ready')") == "1"
    for section, name in (("primitives", "config_lock"), ("idle-waits", "not_empty")):
        box = browser.js(
            f"(() => {{ const s = document.getElementById('{section}');"
            " const r = s.getBoundingClientRect(); return [r.width, r.height, s.textContent]; })()"
        )
        assert box[0] > 0 and box[1] > 0, section
        assert name in box[2], (section, box[2][:200])
    assert "not_empty" not in browser.js("document.getElementById('primitives').textContent")
    assert browser.problems() == []


def test_flame_graph_in_chromium(browser: Page, tmp_path: Path) -> None:
    """The flame graph: the root spans the width, each frame as wide as its share
    of the time waited, the hot lock's stack under it; a click zooms into a
    frame, hovering tells its total; reset shows everything."""
    from tests.report.test_profiles import run_app

    out = run_app(tmp_path)
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert main(["report", str(out), "-f", "folded"]) == 0
    folded = {
        line.rpartition(" ")[0]: int(line.rpartition(" ")[2])
        for line in capture.getvalue().splitlines()
    }
    total = sum(folded.values())
    hot = next(v for k, v in folded.items() if k.endswith("lock.wait hot_lock (app.py:6)"))
    page_path = tmp_path / "flame.html"
    assert main(["report", str(out), "-f", "html", "-o", str(page_path)]) == 0
    browser.call("Page.navigate", url=page_path.as_uri())
    browser.wait_event("Page.loadEventFired")
    assert browser.js("document.body.getAttribute('data-ready')") == "1"
    browser.frame()

    def box(frame: str) -> list[float]:
        found: list[float] = browser.js(
            "(() => { const e = Array.from(document.querySelectorAll('#flame-graph .frame'))"
            f".find(e => e.dataset.frame === {json.dumps(frame)} && e.style.display !== 'none');"
            " if (!e) return null; const r = e.getBoundingClientRect();"
            " return [r.x, r.y, r.width, r.height, Number(e.dataset.value)]; })()"
        )
        assert found is not None, frame
        return found

    root = box("all contention waits")
    assert root[4] == total
    leaf = box("lock.wait hot_lock (app.py:6)")
    assert leaf[4] == hot
    assert leaf[2] / root[2] == pytest.approx(hot / total, abs=0.01)
    assert leaf[1] > root[1]  # the primitive below the frames (an icicle)
    [load_user] = [k.split(";")[-2] for k in folded if k.endswith("hot_lock (app.py:6)")]
    caller = box(load_user)
    assert caller[2] == pytest.approx(leaf[2], abs=1)

    # Hover: the tooltip tells the frame, its total and share.
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=leaf[0] + 3, y=leaf[1] + 5)
    browser.frame()
    tip = browser.js("document.getElementById('tip').textContent")
    assert "lock.wait hot_lock (app.py:6)" in tip and "waited" in tip and "3 waits" in tip

    # Click the caller: it spans the whole width; reset: back to the root.
    browser.call(
        "Input.dispatchMouseEvent", type="mousePressed", x=caller[0] + 3, y=caller[1] + 5,
        button="left", clickCount=1,
    )  # fmt: skip
    browser.call(
        "Input.dispatchMouseEvent", type="mouseReleased", x=caller[0] + 3, y=caller[1] + 5,
        button="left", clickCount=1,
    )  # fmt: skip
    browser.frame()
    assert browser.js("document.getElementById('flame-graph').dataset.focus") != "0"
    assert box(load_user)[2] == pytest.approx(root[2], abs=1)
    assert "zoomed into" in browser.js("document.getElementById('flame-focus').textContent")
    browser.js("document.getElementById('flame-reset').click()")
    browser.frame()
    assert box(load_user)[2] == pytest.approx(caller[2], abs=1)
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "flame.png").write_bytes(shot)
    assert browser.problems() == []
