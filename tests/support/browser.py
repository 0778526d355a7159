"""Drive a real headless Chromium over the DevTools protocol: open a page, type, click, read and screenshot.

Run as ``python -m tests.support.browser SPEC.json`` (inside a loopback-only namespace, see ``tests.support.clients.netns``).
The spec lists actions; the result (one JSON line on stdout) holds each page's rendered text and the URLs
Chromium asked for. Screenshots are written where the spec says. Needs only the standard library and
``websockets``.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
DEADLINE_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=DEADLINE_S))
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> None:
        """Poll a JS predicate until it is true (rendering is asynchronous)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"timed out waiting for {expression}; page text: {self.evaluate('document.body && document.body.innerText')!r:.500}"
        )

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def screenshot(self, path: str) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(data))

    def requested(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


def _start_chromium(profile: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as r:
                targets = json.loads(r.read())
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return proc, pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("Chromium did not open its DevTools port")


def _act(page: Page, action: dict[str, Any], out: dict[str, Any]) -> None:
    kind = action["do"]
    if kind == "open":
        page.navigate(action["url"])
    elif kind == "wait":
        page.wait_for(action["js"], action.get("timeout", 30.0))
    elif kind == "type":
        page.evaluate(f"document.querySelector({json.dumps(action['selector'])}).value = {json.dumps(action['text'])}")
    elif kind == "submit":
        # The old document carries a mark; the new one (after the submit's navigation) does not.
        page.evaluate("window.__lgwOldDocument = true")
        page.evaluate(f"document.querySelector({json.dumps(action['selector'])}).submit()")
        page.wait_for("!window.__lgwOldDocument && document.readyState === 'complete'")
    elif kind == "read":
        out[action["as"]] = {"text": page.evaluate("document.body.innerText"), "url": page.evaluate("location.href")}
    elif kind == "screenshot":
        page.screenshot(action["path"])


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    profile = tempfile.mkdtemp(prefix="lgw-chromium-")
    proc, ws_url = _start_chromium(profile)
    out: dict[str, Any] = {}
    try:
        with connect(ws_url, max_size=None) as ws:
            page = Page(ws)
            page.call("Page.enable")
            page.call("Network.enable")
            page.call("Runtime.enable")
            for action in spec["actions"]:
                _act(page, action, out)
            out["requested"] = page.requested()
            out["console"] = [e["params"] for e in page.events if e.get("method") == "Runtime.exceptionThrown"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
