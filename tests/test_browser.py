"""report.html in a real headless Chromium: loads offline, no console errors, no network requests, plots drawn.

Talks to the browser over the Chrome DevTools Protocol with a minimal stdlib WebSocket client (no selenium,
no driver). Skipped when no Chromium is installed (`apt-get install chromium`; CHROME=/path overrides).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from test_report import FIGURES, make_run_dir

from ticketbench.reports.html import write_report


def _chrome() -> str | None:
    if os.environ.get("CHROME"):
        return shutil.which(os.environ["CHROME"])
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


CHROME = _chrome()
pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(CHROME is None, reason="no Chromium installed (apt-get install chromium)"),
]


class WebSocket:
    """Just enough RFC 6455 for CDP: client text frames (masked), server frames (unmasked, maybe fragmented)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._chunk()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def _chunk(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("browser closed the DevTools connection")
        return data

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._chunk()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, opcode: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def send(self, obj: dict) -> None:
        self._frame(0x1, json.dumps(obj).encode())

    def recv(self) -> dict:
        payload = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping
                self._frame(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError("browser closed the DevTools connection")
            payload += data
            if b0 & 0x80:
                return json.loads(payload)


class Page:
    """One browser tab over CDP: commands, plus every event seen, for the checks."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws, self.next_id, self.events = ws, 0, []
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = self.ws.recv()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        seen = len(self.events)
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events[seen:]):
                return
            self.events.append(self.ws.recv())
        raise TimeoutError(event)

    def load(self, url: str) -> list[dict]:
        """Navigate and wait for the load event, then let late events arrive; returns this page's events."""
        start = len(self.events)
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.eval("new Promise(r => setTimeout(r, 300))")  # a beat for late console messages and requests
        return self.events[start:]

    def eval(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")


def problems(events: list[dict]) -> tuple[list[str], list[str]]:
    """(console errors and uncaught exceptions, URLs requested over the network)."""
    errors, requests = [], []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            errors.append(p["exceptionDetails"].get("text", "exception"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(json.dumps(p.get("args")))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith(("file:", "data:", "about:")):
                requests.append(url)
    return errors, requests


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chrome-profile")
    proc = subprocess.Popen(
        [
            CHROME,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: we stop exactly what we started
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        ws = WebSocket(ws_url)
        yield Page(ws)
        ws.sock.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_report_loads_offline_without_errors_and_draws_every_plot(page, tmp_path):
    a = make_run_dir(tmp_path / "a", "RA")
    b = make_run_dir(tmp_path / "b", "RB", device="jetson", latency_scale=2.0, seed=1)
    html = write_report([a, b], tmp_path / "report.html")
    events = page.load(html.resolve().as_uri())
    errors, requests = problems(events)
    assert errors == []
    assert requests == []
    seen = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert seen and all(u.startswith(("file:", "data:")) for u in seen)  # the network log did record the load
    drawn = page.eval(
        "Array.from(document.querySelectorAll('figure.plot svg'))"
        ".filter(s => s.getBoundingClientRect().width > 200 && s.getBoundingClientRect().height > 100)"
        ".map(s => s.closest('figure').dataset.title)"
    )
    assert drawn == FIGURES
    # the heat map's raster is an inline data: image that decoded
    assert page.eval("document.querySelectorAll('figure.plot svg image').length") >= 1
    assert page.eval("document.querySelectorAll('#results tbody tr').length") == 20


def test_results_table_sorts_numerically_with_empty_cells_last(page, tmp_path):
    d = make_run_dir(tmp_path / "a", failed=("c-mag80",))
    page.load(write_report([d], tmp_path / "report.html").resolve().as_uri())
    col = page.eval(
        "Array.from(document.querySelectorAll('#results th')).findIndex(th => th.textContent === 'latency_ms_p50')"
    )
    cells = f"Array.from(document.querySelectorAll('#results tbody tr')).map(r => r.cells[{col}].textContent)"
    page.eval(f"document.querySelectorAll('#results th')[{col}].click()")
    up = page.eval(cells)
    page.eval(f"document.querySelectorAll('#results th')[{col}].click()")
    down = page.eval(cells)
    values = [float(x) for x in up if x]
    assert values == sorted(values) and up[-2:] == ["", ""]  # the failed case's two rows have no latency
    assert [float(x) for x in down if x] == sorted(values, reverse=True) and down[-2:] == ["", ""]


def test_the_harness_catches_errors_and_requests(page, tmp_path):
    """Negative control: a page with a script error and a remote image must be caught by the same checks."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/x.png"><script>notDefined();</script>')
    errors, requests = problems(page.load(bad.as_uri()))
    assert any("notDefined" in e or "ReferenceError" in e or "Uncaught" in e for e in errors), errors
    assert requests == ["http://127.0.0.1:9/x.png"]


def test_comparison_page_loads_offline_without_errors(page, tmp_path):
    from ticketbench.bench.cli import main

    base = make_run_dir(tmp_path / "b", "B", seed=1)
    slow = make_run_dir(tmp_path / "x", "X", seed=2, latency_scale=1.3)
    assert main(["compare", str(base), str(slow), "--html", str(tmp_path / "c.html")]) == 1
    errors, requests = problems(page.load((tmp_path / "c.html").resolve().as_uri()))
    assert (errors, requests) == ([], [])
    assert page.eval("document.querySelectorAll('tr.bad').length") >= 10
