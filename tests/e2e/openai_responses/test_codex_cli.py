"""The real Codex CLI against the gateway, both inside one loopback-only network namespace.

Codex asks for a shell command through ``exec_command``, runs it, sends the output back, and the next turn
answers; the test checks the file the command wrote, Codex's exit status and its final message. A failure
mid-stream must make Codex exit non-zero and show the error. Two stacks are driven: the full bundled gateway
on the Lingma simulator (``serve --simulator``), and the split ``handler openai_responses`` on the scripted
sidecar backend, which isolates this route.

References: docs/dialects.md §3 (what Codex reads), docs/lingma-protocol.md §10.5 (scenario files).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.support.clients.install import CODEX
from tests.support.clients.netns import client_or_skip, run_in_netns, server_logs
from tests.support.gateway import gateway_command

pytestmark = pytest.mark.timeout(900)  # a first install of the CLI is slow

API_KEY = "sk-codex-e2e"
MODEL = "fake-model"
STEP_PROMPT = "Please run the zebra-step for me."
# The shell computes the marker's echo, so the text the next turn matches appears only in the tool output.
COMMAND = "printf 'codex-was-here\\n' > marker.txt && echo zebra-$((40+2))"
TOOL_OUTPUT_MARK = "zebra-42"
FINAL_TEXT = "All done: the marker file exists."
FAIL_PROMPT = "Please trigger the walrus-failure now."
FAIL_MESSAGE = "upstream failed walrus"

SIMULATOR_SCENARIO: dict[str, Any] = {
    "turns": [
        {"match": TOOL_OUTPUT_MARK, "reply": [{"text": FINAL_TEXT}]},
        {
            "match": "zebra-step",
            "reply": [{"tool_call": {"name": "exec_command", "arguments": {"cmd": COMMAND}, "format": "contract"}}],
        },
        {
            "match": "walrus-failure",
            "reply": [{"text": "Starting."}, {"error": {"status": 500, "kind": "server", "message": FAIL_MESSAGE}}],
        },
    ]
}

SIDECAR_SCRIPT: dict[str, Any] = {
    "turns": [
        {"match": TOOL_OUTPUT_MARK, "events": [{"t": "text", "text": FINAL_TEXT}, {"t": "finished", "reason": "stop"}]},
        {
            "match": "zebra-step",
            "events": [
                {
                    "t": "tool_call",
                    "index": 0,
                    "id": "z1",
                    "name": "exec_command",
                    "arguments": json.dumps({"cmd": COMMAND}),
                },
                {"t": "finished", "reason": "tool_calls"},
            ],
        },
        {
            "match": "walrus-failure",
            "events": [
                {"t": "text", "text": "Starting."},
                {"t": "failed", "code": "upstream_error", "message": FAIL_MESSAGE},
            ],
        },
    ]
}

CONFIG_TOML = """\
model = "{model}"
model_provider = "gw"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.gw]
name = "gateway"
base_url = "http://127.0.0.1:{port}/v1"
env_key = "GW_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 20000

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
"""


@dataclass
class CodexRun:
    returncode: int | None
    stdout: str
    stderr: str
    events: list[dict[str, Any]]
    last_message: str
    work: Path
    logs: str

    def describe(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}\n{self.logs}"


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    return client_or_skip(CODEX, "the Codex CLI")


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lgc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _bundled_servers(root: Path, port: int) -> list[dict[str, Any]]:
    scenario = root / "scenario.json"
    scenario.write_text(json.dumps(SIMULATOR_SCENARIO))
    cmd = [*gateway_command(), "serve", "--simulator", "--scenario", str(scenario), "--port", str(port)]
    cmd += ["--data-dir", str(root / "data"), "--socket", str(root / "s.sock")]
    return [{"cmd": cmd, "env": {"API_KEYS": API_KEY}, "log": str(root / "serve.log")}]


def _split_servers(root: Path, port: int) -> list[dict[str, Any]]:
    script = root / "script.json"
    script.write_text(json.dumps(SIDECAR_SCRIPT))
    sock = str(root / "s.sock")
    sidecar = [
        sys.executable,
        "-m",
        "sidecar",
        "--data-dir",
        str(root / "data"),
        "--socket",
        sock,
        "--script",
        str(script),
    ]
    handler = [*gateway_command(), "handler", "openai_responses", "--port", str(port), "--socket", sock]
    return [
        {"cmd": sidecar, "log": str(root / "sidecar.log")},
        {
            "cmd": handler,
            "env": {"API_KEYS": API_KEY, "GATEWAY_DATA_DIR": str(root / "data")},
            "log": str(root / "handler.log"),
        },
    ]


def run_codex(codex: Path, root: Path, stack: str, prompt: str) -> CodexRun:
    port = free_port()
    home = root / "codex-home"
    work = root / "work"
    for path in (home, work, root / "data"):
        path.mkdir(exist_ok=True)
    (home / "config.toml").write_text(CONFIG_TOML.format(model=MODEL, port=port))
    last = root / "last-message.txt"
    servers = _bundled_servers(root, port) if stack == "bundled" else _split_servers(root, port)
    cmd = [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--disable", "plugins"]
    cmd += ["--dangerously-bypass-approvals-and-sandbox", "--json", "-o", str(last), "-m", MODEL, prompt]
    spec = {
        "servers": servers,
        "ready_url": f"http://127.0.0.1:{port}/readyz",
        "ready_timeout": 90.0,
        "steps": [
            {
                "name": "codex",
                "cmd": cmd,
                "cwd": str(work),
                "env": {"CODEX_HOME": str(home), "HOME": str(root), "GW_API_KEY": API_KEY},
                "timeout": 150.0,
            }
        ],
    }
    outcome = run_in_netns(spec, root, timeout=300)
    logs = server_logs(spec)
    if outcome.get("setup_failed"):
        raise AssertionError(f"the gateway did not come up: {outcome['setup_failed']}\n{logs}")
    result = outcome["steps"]["codex"]
    events = [json.loads(line) for line in result["stdout"].splitlines() if line.startswith("{")]
    message = last.read_text() if last.exists() else ""
    return CodexRun(result["returncode"], result["stdout"], result["stderr"], events, message, work, logs)


@pytest.fixture(params=["bundled", "split"])
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_codex_runs_a_shell_tool_and_answers(codex_bin: Path, workspace: Path, stack: str) -> None:
    run = run_codex(codex_bin, workspace, stack, STEP_PROMPT)
    assert run.returncode == 0, run.describe()
    assert (run.work / "marker.txt").read_text() == "codex-was-here\n", run.describe()
    assert run.last_message.strip() == FINAL_TEXT, run.describe()
    kinds = [e.get("type") for e in run.events]
    assert "turn.completed" in kinds and "turn.failed" not in kinds, run.describe()
    completed = [e["item"] for e in run.events if e.get("type") == "item.completed"]
    commands = [i for i in completed if i.get("type") == "command_execution"]
    assert commands and "zebra" in json.dumps(commands[0]), run.describe()
    messages = [i.get("text") for i in completed if i.get("type") == "agent_message"]
    assert messages[-1] == FINAL_TEXT, run.describe()
    assert "Reconnecting" not in run.stdout + run.stderr, run.describe()


def test_codex_reports_a_mid_stream_failure(codex_bin: Path, workspace: Path, stack: str) -> None:
    run = run_codex(codex_bin, workspace, stack, FAIL_PROMPT)
    assert run.returncode not in (0, None), run.describe()
    kinds = [e.get("type") for e in run.events]
    assert "turn.failed" in kinds and "turn.completed" not in kinds, run.describe()
    failure = json.dumps([e for e in run.events if e.get("type") in ("turn.failed", "error")])
    assert FAIL_MESSAGE in failure, run.describe()
    assert "stream closed before response.completed" not in run.stdout + run.stderr, run.describe()
