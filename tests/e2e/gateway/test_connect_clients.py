"""``lingma-gateway connect codex|claude --write`` into an empty HOME, then the real client completes a turn.

Nothing else configures the clients: their environment carries only ``HOME`` (every inherited ``CODEX_``,
``CLAUDE_``, ``ANTHROPIC_`` and ``OPENAI_`` variable is dropped), so the turn works only if the file
``connect`` wrote is right. Gateway and clients run in a loopback-only network namespace; the pinned npm
packages are installed once (see ``tests/clients``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.support.clients.install import CLAUDE_CODE, CODEX
from tests.support.clients.netns import client_or_skip, run_in_netns, server_logs
from tests.support.gateway import gateway_command

pytestmark = pytest.mark.timeout(900)  # a first install of a client is slow

KEY = "sk-connect-e2e"
ADMIN = "adm-connect"
PROMPT = "Please run the heron-connect check."
ANSWER = "Connected through lingma-gateway."
SCENARIO = {"turns": [{"match": "heron-connect", "reply": [{"text": ANSWER}]}]}
DROP = ("CODEX_", "CLAUDE_", "ANTHROPIC_", "OPENAI_", "API_KEYS", "GATEWAY_", "LINGMA_")


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lgcn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(root: Path, client: str, client_cmd: list[str], key_name: str) -> dict[str, Any]:
    port = free_port()
    home, work, data = root / "home", root / "work", root / "data"
    for path in (home, work, data):
        path.mkdir()
    (root / "scenario.json").write_text(json.dumps(SCENARIO))
    serve = [*gateway_command(), "serve", "--simulator", "--scenario", str(root / "scenario.json")]
    serve += ["--port", str(port), "--data-dir", str(data), "--socket", str(root / "s.sock")]
    keys = f"{key_name}:{KEY}"
    spec = {
        "servers": [{"cmd": serve, "env": {"API_KEYS": keys, "ADMIN_TOKEN": ADMIN}, "log": str(root / "serve.log")}],
        "ready_url": f"http://127.0.0.1:{port}/readyz",
        "steps": [
            {
                "name": "connect",
                "cmd": [*gateway_command(), "connect", client, "--write"],
                "cwd": str(work),
                "env": {"HOME": str(home), "API_KEYS": keys, "GATEWAY_PORT": str(port)},
                "drop_env": DROP,
                "timeout": 60.0,
            },
            {
                "name": "client",
                "cmd": client_cmd,
                "cwd": str(work),
                "env": {"HOME": str(home)},
                "drop_env": DROP,
                "timeout": 180.0,
                "after": [
                    {
                        "url": f"http://127.0.0.1:{port}/internal/usage",
                        "headers": {"Authorization": f"Bearer {ADMIN}"},
                    }
                ],
            },
        ],
    }
    outcome = run_in_netns(spec, root, timeout=400)
    if outcome.get("setup_failed"):
        raise AssertionError(f"the gateway did not come up: {outcome['setup_failed']}\n{server_logs(spec)}")
    outcome["logs"] = server_logs(spec)
    outcome["port"] = port
    return outcome


def _describe(outcome: dict[str, Any]) -> str:
    parts = []
    for name, step in outcome["steps"].items():
        parts.append(f"--- {name}: exit {step['returncode']}\n{step['stdout'][-3000:]}\n{step['stderr'][-3000:]}")
    return "\n".join(parts) + "\n" + outcome["logs"]


def _usage_of(step: dict[str, Any], name: str) -> dict[str, Any]:
    usage = json.loads(step["after"][0]["body"])
    entry: dict[str, Any] = usage["keys"][name]
    return entry


def test_connect_codex_write_into_an_empty_home(root: Path) -> None:
    codex = client_or_skip(CODEX, "the Codex CLI")
    last = root / "last.txt"
    cmd = [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--disable", "plugins"]
    cmd += ["--dangerously-bypass-approvals-and-sandbox", "--json", "-o", str(last), PROMPT]
    outcome = _run(root, "codex", cmd, "codex-user")
    connect, client = outcome["steps"]["connect"], outcome["steps"]["client"]
    assert connect["returncode"] == 0, _describe(outcome)
    config = tomllib.loads((root / "home" / ".codex" / "config.toml").read_text())
    assert config["model_provider"] == "lingma"
    assert config["model_providers"]["lingma"]["base_url"] == f"http://127.0.0.1:{outcome['port']}/v1"
    assert ((root / "home" / ".codex" / "config.toml").stat().st_mode & 0o777) == 0o600
    assert client["returncode"] == 0, _describe(outcome)
    assert last.read_text().strip() == ANSWER, _describe(outcome)
    assert _usage_of(client, "codex-user")["turns"] >= 1


def test_connect_claude_write_into_an_empty_home(root: Path) -> None:
    claude = client_or_skip(CLAUDE_CODE, "Claude Code")
    cmd = [str(claude), "-p", PROMPT, "--output-format", "json"]
    outcome = _run(root, "claude", cmd, "claude-user")
    connect, client = outcome["steps"]["connect"], outcome["steps"]["client"]
    assert connect["returncode"] == 0, _describe(outcome)
    settings = json.loads((root / "home" / ".claude" / "settings.json").read_text())
    assert settings["env"]["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{outcome['port']}"
    assert client["returncode"] == 0, _describe(outcome)
    result = json.loads(client["stdout"])
    assert result.get("is_error") is False and result["result"].strip() == ANSWER, _describe(outcome)
    assert _usage_of(client, "claude-user")["turns"] >= 1
