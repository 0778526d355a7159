"""Run servers and client commands inside a fresh, loopback-only network namespace.

The test side calls ``run_in_netns(spec, root)``: it writes the spec and starts
``unshare -n python -m tests.support.clients.netns SPEC.json``. Inside, ``main`` brings ``lo`` up, starts each server
(its output appended to its ``log``), polls ``ready_url`` with a deadline, runs each step's command in order
with a timeout, fetches the step's ``after`` URLs (metrics, stats) while the servers still run, stops the
servers and writes one JSON result::

    {"steps": {name: {"returncode", "stdout", "stderr", "after": [{"status", "body"}, ...]}}}
    {"steps": {}, "setup_failed": "why"}     # a server died or never became ready

A step's (and a server's) ``env`` is laid over this environment after the variables starting with any of its
``drop_env`` prefixes are removed. Nothing here can reach beyond loopback, so a misconfigured client fails
instead of phoning out. The driver half needs the standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.clients.install import ClientUnavailableError, NpmClient, install

__all__ = ("client_or_skip", "run", "run_in_netns", "server_logs", "unshare_works")

POLL_INTERVAL_S = 0.05
READY_PROBE_TIMEOUT_S = 1.0
AFTER_PROBE_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[3]


# --- the test side -----------------------------------------------------------------------------------------------


def unshare_works() -> bool:
    """Whether this host lets an unprivileged ``unshare -n`` bring ``lo`` up (else the client tests skip)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return probe.returncode == 0


def client_or_skip(client: NpmClient, name: str) -> Path:
    """``client``'s binary, installed once; the calling test skips without a private namespace or an install."""
    import pytest  # the test side only: the driver inside the namespace needs nothing beyond the standard library

    if not unshare_works():
        pytest.skip(f"needs unshare -n and ip (a private network namespace) to run {name} on loopback only")
    try:
        return install(client)
    except ClientUnavailableError as exc:
        pytest.skip(f"{name} cannot be installed here: {exc}")


def server_logs(spec: dict[str, Any], tail: int = 6000) -> str:
    """The last ``tail`` characters of each server's log, for an assertion message."""
    logs = sorted(Path(server["log"]) for server in spec["servers"])
    return "".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}\n" for p in logs if p.exists())


def run_in_netns(spec: dict[str, Any], root: Path, *, timeout: float) -> dict[str, Any]:
    """Write ``spec`` (with its ``result`` file) under ``root``, run the driver in a new namespace, read the result."""
    spec = {**spec, "result": str(root / "result.json")}
    (root / "spec.json").write_text(json.dumps(spec))
    subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.support.clients.netns", str(root / "spec.json")],
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    result_file = root / "result.json"
    if not result_file.exists():
        raise AssertionError(f"the namespace driver wrote no result\n{server_logs(spec)}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


# --- the driver, inside the namespace ----------------------------------------------------------------------------


def _env(entry: dict[str, Any]) -> dict[str, str]:
    drop = tuple(entry.get("drop_env", ()))
    base = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**base, **entry.get("env", {})}


def _get(url: str, headers: dict[str, str], timeout: float = AFTER_PROBE_TIMEOUT_S) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
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
        if _get(url, {}, READY_PROBE_TIMEOUT_S)["status"] == 200:
            return
        time.sleep(POLL_INTERVAL_S)
    raise SystemExit(f"netns: {url} was not ready within {timeout}s")


def _stop(servers: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(servers):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(servers):
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_step(step: dict[str, Any]) -> dict[str, Any]:
    try:
        done = subprocess.run(
            step["cmd"],
            env=_env(step),
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
                env = _env(server)
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
