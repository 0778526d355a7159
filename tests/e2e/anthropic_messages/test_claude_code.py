"""The real Claude Code CLI against the bundled gateway on the Lingma simulator, in one loopback-only namespace.

Claude Code asks for a Bash command, runs it, sends the output back, and the next turn answers; the test checks
the file the command wrote and the JSON result. A failure mid-stream must not come out as an empty success.
``claude -p "/context"`` fires parallel count_tokens calls, and every one must get 200.

References: docs/dialects.md §4.3 (the stream and its terminal), docs/lingma-protocol.md §10.5 (scenario files).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.support.clients.install import CLAUDE_CODE
from tests.support.clients.netns import client_or_skip, run_in_netns
from tests.support.gateway import gateway_command

API_KEY = "sk-claude-e2e"
STEP_PROMPT = "Please run the ocelot-step for me."
# The shell computes the number, so the text the next turn matches appears only in the tool's output.
COMMAND = "printf 'claude-was-here\\n' > marker.txt && echo ocelot-$((70+7))"
TOOL_OUTPUT_MARK = "ocelot-77"
FINAL_TEXT = "All done: the marker file exists."
FAIL_PROMPT = "Please trigger the walrus-failure now."
FAIL_MESSAGE = "upstream failed walrus"

SCENARIO: dict[str, Any] = {
    "turns": [
        {"match": TOOL_OUTPUT_MARK, "reply": [{"text": FINAL_TEXT}]},
        {
            "match": "ocelot-step",
            "reply": [
                {"text": "I will run it.\n"},
                {
                    "tool_call": {
                        "name": "Bash",
                        "arguments": {"command": COMMAND, "description": "Write the marker file"},
                        "format": "contract",
                    }
                },
            ],
        },
        {
            "match": "walrus-failure",
            "reply": [{"text": "Starting."}, {"error": {"status": 500, "kind": "server", "message": FAIL_MESSAGE}}],
        },
    ]
}

_REQUESTS = re.compile(r"^lingma_gateway_http_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
# Inherited variables with these prefixes are dropped before ``_claude_env`` is laid over the environment.
CLAUDE_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_")


def _claude_env(root: Path, port: int, *, fallback: bool) -> dict[str, str]:
    """Claude Code settings: loopback base URL, no telemetry, no auto-update, no retries, no non-stream fallback."""
    env = {
        "HOME": str(root / "home"),
        "CLAUDE_CONFIG_DIR": str(root / "claude_cfg"),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    if not fallback:
        env["CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK"] = "1"
    return env


def requests_by_route(metrics: str) -> dict[tuple[str, str], float]:
    """``lingma_gateway_http_requests_total`` samples as {(route, status): count}."""
    out: dict[tuple[str, str], float] = {}
    for match in _REQUESTS.finditer(metrics):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        out[(labels["route"], labels["status"])] = float(match["value"])
    return out


def _delta(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """The requests made in between, leaving out the scrapes of /metrics themselves."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) and k[0] != "/metrics"}


@pytest.fixture(scope="module")
def claude_bin() -> Path:
    return client_or_skip(CLAUDE_CODE, "Claude Code")


@pytest.fixture(scope="module")
def session(claude_bin: Path) -> Iterator[dict[str, Any]]:
    """One gateway, three Claude Code runs in order; each run's result plus the metrics after it."""
    root = Path(tempfile.mkdtemp(prefix="lgcc-", dir="/tmp"))
    port = free_port()
    scenario = root / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    for name in ("home", "claude_cfg", "work", "data"):
        (root / name).mkdir()
    serve = [*gateway_command(), "serve", "--simulator", "--scenario", str(scenario), "--port", str(port)]
    serve += ["--data-dir", str(root / "data"), "--socket", str(root / "s.sock")]
    metrics = {"url": f"http://127.0.0.1:{port}/metrics", "headers": {"Authorization": f"Bearer {API_KEY}"}}
    anthropic_headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "User-Agent": "claude-code/2.1.332"}
    models = [{"url": f"http://127.0.0.1:{port}/v1/models{q}", "headers": anthropic_headers} for q in ("", "?limit=1")]
    claude = [str(claude_bin), "-p"]
    steps = [
        ("baseline", [sys.executable, "-c", "pass"], False),
        ("tool", [*claude, STEP_PROMPT, "--output-format", "json", "--allowedTools", "Bash"], False),
        ("failure", [*claude, FAIL_PROMPT, "--output-format", "json"], False),
        ("failure_with_fallback", [*claude, FAIL_PROMPT, "--output-format", "json"], True),
        ("context", [*claude, "/context", "--output-format", "json"], False),
    ]
    spec = {
        "servers": [{"cmd": serve, "env": {"API_KEYS": API_KEY}, "log": str(root / "serve.log")}],
        "ready_url": f"http://127.0.0.1:{port}/readyz",
        "steps": [
            {
                "name": name,
                "cmd": cmd,
                "env": _claude_env(root, port, fallback=fallback),
                "drop_env": CLAUDE_ENV_PREFIXES,
                "cwd": str(root / "work"),
                "timeout": 180.0,
                "after": [*(models if name == "baseline" else []), metrics],
            }
            for name, cmd, fallback in steps
        ],
    }
    result = run_in_netns(spec, root, timeout=900)
    result["work"] = root / "work"
    result["log"] = (root / "serve.log").read_text(errors="replace")
    yield result
    shutil.rmtree(root, ignore_errors=True)


def _step(session: dict[str, Any], name: str) -> dict[str, Any]:
    assert "setup_failed" not in session, f"{session['setup_failed']}\n{session['log'][-4000:]}"
    step: dict[str, Any] = session["steps"][name]
    step["describe"] = (
        f"exit {step['returncode']}\nstdout:\n{step['stdout'][-3000:]}\nstderr:\n{step['stderr'][-3000:]}"
    )
    return step


def _metrics_delta(session: dict[str, Any], previous: str, name: str) -> dict[tuple[str, str], float]:
    before = _step(session, previous)["after"][-1]
    after = _step(session, name)["after"][-1]
    assert before["status"] == 200 and after["status"] == 200, after["body"][:500]
    return _delta(requests_by_route(before["body"]), requests_by_route(after["body"]))


def _json_result(step: dict[str, Any]) -> dict[str, Any]:
    lines = [line for line in step["stdout"].splitlines() if line.strip().startswith("{")]
    assert lines, step["describe"]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def test_claude_code_runs_a_bash_tool_and_answers(session: dict[str, Any]) -> None:
    step = _step(session, "tool")
    assert step["returncode"] == 0, step["describe"] + session["log"][-3000:]
    result = _json_result(step)
    assert result["is_error"] is False and result["subtype"] == "success", step["describe"]
    assert FINAL_TEXT in result["result"]
    assert result["num_turns"] >= 2
    assert (session["work"] / "marker.txt").read_text() == "claude-was-here\n"
    calls = _metrics_delta(session, "baseline", "tool")
    assert calls == {("/v1/messages", "200"): 2.0}, f"one streamed request per turn, no fallback: {calls}"
    assert "Invalid tool parameters" not in step["stdout"] + step["stderr"]


@pytest.mark.parametrize(("name", "previous"), [("failure", "tool"), ("failure_with_fallback", "failure")])
def test_an_upstream_error_mid_stream_is_not_an_empty_success(
    session: dict[str, Any], name: str, previous: str
) -> None:
    step = _step(session, name)
    result = _json_result(step)
    assert result["is_error"] is True or step["returncode"] != 0, step["describe"]
    assert not (result.get("subtype") == "success" and not result.get("is_error")), step["describe"]
    assert FAIL_MESSAGE in step["stdout"] + step["stderr"], step["describe"]
    calls = _metrics_delta(session, previous, name)
    assert calls.get(("/v1/messages", "200"), 0) >= 1, calls


def test_context_counts_tokens_and_every_count_gets_200(session: dict[str, Any]) -> None:
    step = _step(session, "context")
    assert step["returncode"] == 0, step["describe"] + session["log"][-3000:]
    assert _json_result(step)["is_error"] is False, step["describe"]
    calls = _metrics_delta(session, "failure_with_fallback", "context")
    counted = {status: n for (route, status), n in calls.items() if route == "/v1/messages/count_tokens"}
    assert counted.get("200", 0) >= 1 and set(counted) == {"200"}, calls
    assert ("/v1/messages", "200") not in calls, "/context makes no model call"


def test_models_list_reads_as_anthropic_and_honours_limit(session: dict[str, Any]) -> None:
    full, limited = (json.loads(probe["body"]) for probe in _step(session, "baseline")["after"][:2])
    assert full["data"] and full["has_more"] is False
    for page in (full, limited):
        assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        for entry in page["data"]:
            assert entry["type"] == "model" and entry["display_name"] and entry["created_at"].endswith("Z")
    assert [m["id"] for m in limited["data"]] == [full["data"][0]["id"]]
    assert limited["has_more"] is (len(full["data"]) > 1)
