"""Run servers and one client inside the current (fresh, loopback-only) network namespace.

Started as ``unshare -n python -m tests.openai_responses.netns SPEC.json`` by the Codex CLI tests: it brings
``lo`` up, starts each server, polls a readiness URL with a deadline, runs the client with a timeout, stops
the servers and writes ``{"returncode", "stdout", "stderr"}`` to the spec's result file. Nothing here can
reach beyond loopback, so a misconfigured client fails instead of phoning out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

POLL_INTERVAL_S = 0.05


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(url: str, timeout: float, servers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in servers:
            if proc.poll() is not None:
                raise SystemExit(f"netns: a server exited with {proc.returncode} before {url} was ready")
        if _ready(url):
            return
        time.sleep(POLL_INTERVAL_S)
    raise SystemExit(f"netns: {url} was not ready within {timeout}s")


def _stop(servers: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(servers):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(servers):
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for server in spec["servers"]:
            with Path(server["log"]).open("ab") as log:
                servers.append(
                    subprocess.Popen(
                        server["cmd"],
                        env={**os.environ, **server.get("env", {})},
                        stdout=log,
                        stderr=log,
                        stdin=subprocess.DEVNULL,
                    )
                )
        _wait_ready(spec["ready_url"], spec.get("ready_timeout", 60.0), servers)
        client = spec["client"]
        try:
            done = subprocess.run(
                client["cmd"],
                env={**os.environ, **client.get("env", {})},
                cwd=client["cwd"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=client.get("timeout", 120.0),
                check=False,
            )
            return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            return {"returncode": None, "stdout": out, "stderr": err + "\nnetns: the client timed out"}
    finally:
        _stop(servers)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = run(spec)
    except SystemExit as exc:
        result = {"returncode": None, "stdout": "", "stderr": str(exc), "setup_failed": True}
    Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
