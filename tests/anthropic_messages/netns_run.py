"""Run a gateway and several client commands inside the current, fresh, loopback-only network namespace.

Started as ``unshare -n python -m tests.anthropic_messages.netns_run SPEC.json``: it brings ``lo`` up, starts
the servers, polls a readiness URL with a deadline, runs each step's command with a timeout, fetches the
step's ``after`` URLs (metrics, stats) while the servers still run, stops the servers and writes one JSON
result. A client that tries to reach beyond loopback fails instead of phoning out.
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


def _get(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            return {"status": response.status, "body": response.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode("utf-8", "replace")}
    except (urllib.error.URLError, OSError) as exc:
        return {"status": None, "body": str(exc)}


def _wait_ready(url: str, timeout: float, servers: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in servers:
            if proc.poll() is not None:
                raise SystemExit(f"netns: a server exited with {proc.returncode} before {url} was ready")
        if _get(url, {})["status"] == 200:
            return
        time.sleep(POLL_INTERVAL_S)
    raise SystemExit(f"netns: {url} was not ready within {timeout}s")


def _stop(servers: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(servers):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(servers):
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_step(step: dict[str, Any]) -> dict[str, Any]:
    try:
        done = subprocess.run(
            step["cmd"],
            env=step["env"],
            cwd=step["cwd"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=step.get("timeout", 180.0),
            check=False,
        )
        result: dict[str, Any] = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        result = {"returncode": None, "stdout": out, "stderr": err + "\nnetns: the client timed out"}
    result["after"] = [_get(probe["url"], probe.get("headers", {})) for probe in step.get("after", [])]
    return result


def run(spec: dict[str, Any]) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for server in spec["servers"]:
            with Path(server["log"]).open("ab") as log:
                env = {**os.environ, **server.get("env", {})}
                proc = subprocess.Popen(server["cmd"], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            servers.append(proc)
        _wait_ready(spec["ready_url"], spec.get("ready_timeout", 90.0), servers)
        return {"steps": {step["name"]: _run_step(step) for step in spec["steps"]}}
    finally:
        _stop(servers)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = run(spec)
    except SystemExit as exc:
        result = {"steps": {}, "setup_failed": str(exc)}
    Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
