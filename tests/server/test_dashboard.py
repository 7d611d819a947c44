"""The dashboard in headless Chromium: the page loads, shows a job submitted during the test, and its
cancel button cancels it.

Chromium is driven over its DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
ending in a NUL byte on file descriptors 3 and 4), so no driver or WebSocket library is needed.
Set GEARTRAIN_SCREENSHOT_DIR to keep the screenshot the test takes.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from geartrain.protocol.packets import T
from tests.conftest import free_port, need_peer, start_geartrain, wait_port
from tests.interop.wire import Wire, wait_for
from tests.server.test_http import Web, grab, submit_bg

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--window-size=1280,860"]


def chromium_binary() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    need_peer("chromium (apt-get install chromium)", path is not None)
    return path  # type: ignore[return-value]


class Chromium:
    """A headless Chromium and a minimal DevTools-protocol client over its pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def plumb() -> None:  # in the child: the pipe ends become fds 3 (commands in) and 4 (replies out)
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=plumb, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


class Page:
    """One tab, attached in flat mode."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        targets = browser.call("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, params: dict | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element, scrolled into view first (as a person would)."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                        " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"], "button": "left",
                                                   "clickCount": 1})

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    chrome = Chromium(chromium_binary(), tmp_path / "profile")
    try:
        yield chrome
    finally:
        chrome.close()


def test_dashboard_shows_a_queued_job_and_cancels_it(tmp_path: Path, browser: Chromium) -> None:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port))
    try:
        wait_port(port, server.proc)
        web = Web(server, port)
        with Wire(server.host, server.port) as worker:
            worker.send(T.CAN_DO, b"dash_other")  # a worker to list
            page = Page(browser)
            page.call("Page.navigate", {"url": f"http://127.0.0.1:{port}/?interval=300"})
            assert wait_for(lambda: page.eval("document.querySelector('#status')?.className") == "status ok",
                            timeout=15), page.eval("document.querySelector('#status')?.textContent")
            # a job submitted while the page is open shows up in the queued jobs and the functions
            handle = submit_bg(web, "dash_fn", b"payload", X_Gearman_Priority="high")
            row = f'#jobs tr[data-handle="{handle}"]'
            assert wait_for(lambda: page.eval(f"!!document.querySelector({json.dumps(row)})"), timeout=10)
            cells = page.eval(f"[...document.querySelectorAll({json.dumps(row + ' td')})].map(td => td.textContent)")
            assert cells[:4] == [handle, "dash_fn", "high", "queued"]
            assert page.eval("document.querySelector('#functions tr[data-function=\"dash_fn\"] td:nth-child(2)')"
                             ".textContent") == "1 / 0 / 0"
            assert page.eval("document.querySelectorAll('#functions svg.spark').length") >= 2
            assert wait_for(lambda: "dash_other" in page.eval("document.querySelector('#workers tbody').textContent"),
                            timeout=10)
            page.screenshot(tmp_path / "dashboard.png")
            keep = os.environ.get("GEARTRAIN_SCREENSHOT_DIR")
            if keep:
                shutil.copy(tmp_path / "dashboard.png", Path(keep) / "dashboard.png")
            # its cancel button cancels it
            page.click(row + " button.cancel")
            assert wait_for(lambda: web.request("GET", f"/api/jobs/{handle}")[0] == 404, timeout=10)
            assert wait_for(lambda: not page.eval(f"!!document.querySelector({json.dumps(row)})"), timeout=10)
            assert handle.encode() not in b"".join(worker.admin("show jobs"))
    finally:
        server.stop()


def _bury(web: Web, worker: Wire, function: bytes, data: bytes, text: bytes) -> str:
    """A background job of FUNCTION (tries=2 delay=0) whose two tries raise TEXT: it goes to the registry."""
    handle = submit_bg(web, function.decode(), data)
    for _ in range(2):
        got = grab(worker)[0]
        assert got.decode() == handle
        worker.send(T.WORK_EXCEPTION, got, text)
    return handle


def test_dashboard_shows_ended_and_failed_jobs_and_requeues_one(tmp_path: Path, browser: Chromium) -> None:
    port = free_port()
    server = start_geartrain(tmp_path, "--http-port", str(port), "--policy", "dash_bad", "tries=2 delay=0",
                             "--policy", "dash_ok", "keep=60")
    try:
        wait_port(port, server.proc)
        web = Web(server, port)
        with Wire(server.host, server.port) as worker:
            worker.send(T.SET_CLIENT_ID, b"dash-worker")
            worker.send(T.CAN_DO, b"dash_ok")
            worker.send(T.CAN_DO, b"dash_bad")
            ok = submit_bg(web, "dash_ok", b"fine")
            worker.send(T.WORK_COMPLETE, grab(worker)[0], b"done")
            bad = _bury(web, worker, b"dash_bad", b"doomed", b"ZeroDivisionError: division by zero\nTraceback")
            page = Page(browser)
            page.call("Page.navigate", {"url": f"http://127.0.0.1:{port}/?interval=300"})
            assert wait_for(lambda: page.eval("document.querySelector('#status')?.className") == "status ok",
                            timeout=15), page.eval("document.querySelector('#status')?.textContent")
            # the jobs that ended: newest first, with the exception's first line
            rows = ("[...document.querySelectorAll('#recent tbody tr')]"
                    ".map(tr => [...tr.cells].map(td => td.textContent))")
            assert wait_for(lambda: len(page.eval(rows)) == 2, timeout=10), page.eval(rows)
            recent = page.eval(rows)
            assert [(r[0], r[1], r[2], r[6]) for r in recent] == [
                (bad, "dash_bad", "exception", "ZeroDivisionError: division by zero"), (ok, "dash_ok", "complete", "")]
            assert recent[0][5].endswith("dash-worker")
            # the failed/s card counts exceptions as the functions' rows do
            counters = json.loads(web.request("GET", "/api/server")[2])["counters"]
            assert counters["exceptions"] == 1 and counters["failed"] == 0
            assert page.eval("document.querySelector('#card-failed').dataset.total") == "1"
            assert page.eval("document.querySelector('#card-registry').textContent") == "1"
            assert page.eval("document.querySelector('#card-kept').textContent") == "1"
            # per-worker counts: one completed, two failed tries
            cells = page.eval("[...document.querySelector('#workers tr[data-worker]').cells].map(td => td.textContent)")
            assert cells[3] == "dash-worker" and cells[9:12] == ["1", "2", "0"]
            # the registry, with the exception's text, every try on demand
            (entry,) = json.loads(web.request("GET", "/api/failed")[2])["failed"]
            row = f'#failed tr[data-id="{entry["id"]}"]'
            assert wait_for(lambda: page.eval(f"!!document.querySelector({json.dumps(row)})"), timeout=10)
            assert "ZeroDivisionError: division by zero" in page.eval(f"document.querySelector({json.dumps(row)})"
                                                                       ".textContent")
            page.click(row + " button.tries")
            tries = f'#failed tr[data-tries-of="{entry["id"]}"] li'
            assert wait_for(lambda: page.eval(f"document.querySelectorAll({json.dumps(tries)}).length") == 2,
                            timeout=10)
            page.screenshot(tmp_path / "dashboard-failed.png")
            keep = os.environ.get("GEARTRAIN_SCREENSHOT_DIR")
            if keep:
                shutil.copy(tmp_path / "dashboard-failed.png", Path(keep) / "dashboard-failed.png")
            # its requeue button moves it out of the registry and queues it again
            page.click(row + " button.requeue")
            assert wait_for(lambda: json.loads(web.request("GET", "/api/failed")[2])["total"] == 0, timeout=10)
            assert wait_for(lambda: not page.eval(f"!!document.querySelector({json.dumps(row)})"), timeout=10)
            handle, _, data = grab(worker)
            assert data == b"doomed" and handle.decode() != bad
            worker.send(T.WORK_COMPLETE, handle, b"")
            # another, discarded
            _bury(web, worker, b"dash_bad", b"again", b"KeyError")
            (entry,) = json.loads(web.request("GET", "/api/failed")[2])["failed"]
            row = f'#failed tr[data-id="{entry["id"]}"]'
            assert wait_for(lambda: page.eval(f"!!document.querySelector({json.dumps(row)})"), timeout=10)
            page.click(row + " button.discard")
            assert wait_for(lambda: json.loads(web.request("GET", "/api/failed")[2])["total"] == 0, timeout=10)
            assert not json.loads(web.request("GET", "/api/jobs?function=dash_bad")[2])["jobs"]
    finally:
        server.stop()
