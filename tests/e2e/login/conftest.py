"""Gateways for the login, bundle and liveness tests, and the scan that keeps secrets out of their logs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.integration.lingma.conftest import free_port_pair
from tests.support.gateway import Gateway

ADMIN = "adm-7f3c9e1d2b"
KEY = "key-a81d4c6e0f"
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN}"}
KEY_HEADERS = {"authorization": f"Bearer {KEY}"}
FAST_PROBES = {"LINGMA_PROBE_INTERVAL": "0.3", "LINGMA_PROBE_TIMEOUT": "2", "LINGMA_PROBE_MISSES": "3"}
"""Login state seen within 0.3 s; liveness as lenient as the defaults, since a browser may load both cores."""
HANG_PROBES = {"LINGMA_PROBE_INTERVAL": "0.3", "LINGMA_PROBE_TIMEOUT": "1", "LINGMA_PROBE_MISSES": "2"}


def need_browser() -> None:
    """Browser tests fail under CI when Chromium or Playwright is missing, and skip elsewhere."""
    problems = []
    if shutil.which("chromium") is None:
        problems.append("chromium is not on PATH (scripts/system-deps installs it)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (the login extra)")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))


class LoginGateway(Gateway):
    def work(self, instance: str) -> Path:
        return self.data / "instances" / instance

    def journal_of(self, instance: str) -> list[dict[str, Any]]:
        path = self.work(instance) / "sim-journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def methods(self, instance: str) -> list[str]:
        return [e["method"] for e in self.journal_of(instance) if e.get("dir") == "in" and e.get("method")]

    def stats(self) -> dict[str, Any]:
        r = httpx.get(self.url + "/internal/stats", headers=ADMIN_HEADERS, timeout=10)
        r.raise_for_status()
        return {i["id"]: i for i in r.json()["pool"]["instances"]}

    def state(self, instance: str) -> str:
        return str(self.stats()[instance]["state"])

    def wait_state(self, instance: str, *states: str, timeout: float = 60) -> None:
        wait_for(lambda: self.state(instance) in states, timeout, 0.05, what=f"{instance} to be {' or '.join(states)}")

    def chat(self, text: str = "hello", timeout: float = 30) -> httpx.Response:
        body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        return httpx.post(self.url + "/v1/chat/completions", json=body, headers=KEY_HEADERS, timeout=timeout)

    def wait_up(self, timeout: float = 60) -> None:
        def up() -> bool:
            try:
                return httpx.get(self.url + "/internal/stats", headers=ADMIN_HEADERS, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, 0.1, what="the gateway to answer /internal/stats")

    def gateway_logs(self) -> str:
        """What the gateway, its sidecar and its CLI wrote; the simulator's own files play Lingma and are left out."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for extra in self.root.glob("*.out"):
            text += extra.read_text(errors="replace")
        return text


def assert_no_secrets(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        if secret:
            assert secret not in text, f"a secret ({secret[:4]}…) appears in the logs"


@pytest.fixture
def login_gateways(short_dir: Path) -> Iterator[Any]:
    made: list[LoginGateway] = []

    def make(*, wait: str = "up", api_keys: bool = True, admin: bool = True, **kwargs: Any) -> LoginGateway:
        # A port pair of its own: gateways of other tests (or worktrees) start from the same default.
        ports = {"LINGMA_SOCKET_PORT": str(free_port_pair())}
        env = {**FAST_PROBES, **ports, "LOG_LEVEL": "DEBUG", **kwargs.pop("env", {})}
        if api_keys:
            env["API_KEYS"] = KEY
        if admin:
            env["ADMIN_TOKEN"] = ADMIN
        gw = LoginGateway(short_dir / f"g{len(made)}", env=env, **kwargs)
        for name in ("API_KEYS", "ADMIN_TOKEN"):
            if name not in env:
                gw.env.pop(name, None)
        made.append(gw)
        gw.start(wait=wait == "ready")
        if wait == "up":
            gw.wait_up()
        return gw

    yield make
    for gw in made:
        gw.stop()
