"""Scenario files (docs/lingma-protocol.md §10.5) played by the simulator process."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .conftest import SimFactory, Turn
from .test_simulator_chat import expected_reply

THINK_OPEN = "\n````think::{THINK_TIME}\n"
THINK_CLOSE = "\n````\n"


def real_chunks(turn: Turn) -> list[str]:
    return [a["text"] for a in turn.of("chat/answer") if a["text"]]


def out_lines(lines: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["dir"] == "out" and line["method"] == method]


async def test_chunks_give_the_exact_boundaries(sims: SimFactory) -> None:
    chunks = ["<tool_", 'call>\n{"name": "Bash", "argu', 'ments": {"command": "ls"}}\n</tool', "_call>"]
    scenario = {
        "turns": [
            {"match": "split it", "chunks": chunks, "reply": [{"text": "replaced"}]},
            {"match": "five", "chunk_size": 5, "reply": [{"text": "abcdefghijkl"}]},
        ]
    }
    client = await sims(scenario=scenario).connect()
    turn = await client.turn("please split it")
    assert real_chunks(turn) == chunks
    assert turn.finish["fullAnswer"] == "".join(chunks)
    sized = await client.turn("five please")
    assert real_chunks(sized) == ["abcde", "fghij", "kl"]


async def test_think_is_wrapped_in_markers_and_split(sims: SimFactory) -> None:
    scenario = {"turns": [{"match": "think", "reply": [{"think": "pondering deeply"}, {"text": "the answer"}]}]}
    client = await sims(scenario=scenario).connect()
    turn = await client.turn("think first")
    assert turn.text == f"{THINK_OPEN}pondering deeply{THINK_CLOSE}the answer"
    assert not any(THINK_OPEN in chunk for chunk in real_chunks(turn)), "the marker must arrive split"


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [("server", "SERVER_ERROR", 500), ("rate_limit", "RATE_LIMIT", 429), ("quota", "QUOTA_EXCEEDED", 429)],
)
async def test_error_ends_the_turn(sims: SimFactory, kind: str, code: str, status: int) -> None:
    error = {"status": status, "kind": kind, "message": f"{kind} went wrong"}
    scenario = {"turns": [{"match": "fail", "reply": [{"text": "so far "}, {"error": error}, {"text": "unreached"}]}]}
    client = await sims(scenario=scenario).connect()
    turn = await client.turn("please fail")
    assert turn.finish == {
        "requestId": turn.request_id,
        "sessionId": turn.finish["sessionId"],
        "reason": "error",
        "statusCode": status,
        "errorCode": code,
        "errorMessage": f"{kind} went wrong",
        "fullAnswer": "",
        "extra": {},
    }
    assert "unreached" not in turn.text


async def test_crash_mid_stream_and_no_replay_after_restart(sims: SimFactory) -> None:
    scenario = {"turns": [{"reply": [{"text": "before the crash "}, {"crash": True}, {"text": "never"}]}]}
    sim = sims(scenario=scenario)
    client = await sim.connect()
    _, reply, start = await client.ask("boom")
    assert reply["success"] is True
    assert await sim.wait_exit() == 137

    def answered() -> str:
        return "".join(m["params"]["text"] for m in client.received[start:] if m.get("method") == "chat/answer")

    # The process may be gone before the client has read what it sent last: poll for the text, with a deadline.
    deadline = asyncio.get_running_loop().time() + 5
    while "before the crash " not in answered() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert "before the crash " in answered()
    assert not [m for m in client.received if m.get("method") == "chat/finish"]
    assert "".join(line["params"]["text"] for line in out_lines(sim.journal, "chat/answer")) == "before the crash "

    restarted = sims(scenario=scenario)
    again = await restarted.connect()
    turn = await again.turn("boom again")
    assert turn.text == expected_reply(turn.session_id, ["boom again"])


async def test_delay_ms_pauses_the_stream(sims: SimFactory) -> None:
    scenario = {"turns": [{"match": "wait", "reply": [{"text": "a"}, {"delay_ms": 400}, {"text": "b"}]}]}
    sim = sims(scenario=scenario)
    client = await sim.connect()
    turn = await client.turn("wait for it")
    assert turn.text == "ab"
    answers = {line["params"]["text"]: line["t"] for line in out_lines(sim.journal, "chat/answer")}
    assert answers["b"] - answers["a"] >= 0.39


async def test_forget_session_rejects_the_session(sims: SimFactory) -> None:
    scenario = {"turns": [{"match": "forget me", "reply": [{"forget_session": True}]}]}
    client = await sims(scenario=scenario).connect()
    first = await client.turn("hello")
    session_id = first.session_id
    forgotten = await client.turn("now forget me", session_id)
    assert forgotten.reply["success"] is True
    assert forgotten.of("chat/answer") == []
    assert (forgotten.finish["statusCode"], forgotten.finish["errorCode"]) == (404, "SESSION_NOT_FOUND")
    assert forgotten.finish["errorMessage"] == f"session not found: {session_id}"
    later = await client.turn("are you there", session_id)
    assert later.finish["errorCode"] == "SESSION_NOT_FOUND"


async def test_tool_invoke_waits_for_the_result(sims: SimFactory) -> None:
    invoke = {"name": "read_file", "parameters": {"path": "x"}}
    scenario = {
        "turns": [{"match": "tool", "reply": [{"text": "before "}, {"tool_invoke": invoke}, {"text": "after"}]}]
    }
    sim = sims(scenario=scenario)
    client = await sim.connect()
    request_id, _, start = await client.ask("use a tool", mode="agent")
    push = await client.wait_for(lambda m: m.get("method") == "tool/invoke", start)
    params = push["params"]
    assert params["requestId"] == request_id
    assert (params["name"], params["parameters"], params["async"]) == ("read_file", {"path": "x"}, True)
    assert params["toolCallId"]
    result = {
        "toolCallId": params["toolCallId"],
        "name": "read_file",
        "success": False,
        "errorMessage": "tool unavailable",
        "result": {},
        "startTime": 0,
        "timeConsuming": 0,
    }
    assert await client.result("tool/invokeResult", result) == {"errorCode": None, "errorMessage": None}
    finish = await client.wait_for(client.is_finish(request_id), start)
    assert finish["params"]["reason"] == "success"
    lines = sim.journal
    answered = next(i for i, line in enumerate(lines) if line["dir"] == "in" and line["method"] == "tool/invokeResult")
    after = next(
        i
        for i, line in enumerate(lines)
        if line["dir"] == "out" and line["method"] == "chat/answer" and line["params"]["text"] == "after"
    )
    assert answered < after, "the stream went on before the client answered tool/invoke"


async def test_tool_call_formats(sims: SimFactory) -> None:
    args = {"command": "echo hi > out.txt", "n": 2}
    turns: list[dict[str, Any]] = [
        {
            "match": f"fmt-{fmt}$",
            "reply": [{"text": "x\n"}, {"tool_call": {"name": "Bash", "arguments": args, "format": fmt}}],
        }
        for fmt in ("contract", "tool_code", "json", "json_fenced")
    ]
    positional = {"name": "Read", "arguments": {"p": "a.py"}, "format": "tool_code_positional"}
    turns.append({"match": "fmt-positional", "reply": [{"tool_call": positional}]})
    turns.append(
        {"match": "fmt-custom", "reply": [{"custom_tool_call": {"name": "apply_patch", "input": "*** Begin"}}]}
    )
    client = await sims(scenario={"turns": turns}).connect()
    as_json = '{"name": "Bash", "arguments": {"command": "echo hi > out.txt", "n": 2}}'
    expected = {
        "contract": f"x\n<tool_call>\n{as_json}\n</tool_call>",
        "tool_code": 'x\n```tool_code\nBash(command="echo hi > out.txt", n=2)\n```',
        "json": f"x\n{as_json}",
        "json_fenced": f"x\n```json\n{as_json}\n```",
        "positional": '```tool_code\nRead("a.py")\n```',
        "custom": '<tool_call>\n{"name": "apply_patch", "input": "*** Begin"}\n</tool_call>',
    }
    for name, text in expected.items():
        turn = await client.turn(f"please fmt-{name}")
        assert turn.text == text, name
    contract = await client.turn("again fmt-contract")
    body = contract.text.split("<tool_call>\n", 1)[1].split("\n</tool_call>")[0]
    assert json.loads(body) == {"name": "Bash", "arguments": args}


async def test_turn_choice_rules(sims: SimFactory) -> None:
    scenario = {
        "turns": [
            {"match": "alpha", "reply": [{"text": "A"}]},
            {"match": "beta", "reply": [{"text": "B"}]},
            {"match": "gam+a", "reply": [{"text": "C1"}]},
            {"match": "gamma", "reply": [{"text": "C2"}]},
            {"reply": [{"text": "U1"}]},
            {"reply": [{"text": "U2"}]},
            {"instance": "inst-9", "reply": [{"text": "not mine"}]},
        ]
    }
    sim = sims(scenario=scenario)
    client = await sim.connect()
    assert (await client.turn("alpha\nbeta")).text == "B"
    assert (await client.turn("beta\nalpha")).text == "A"
    assert (await client.turn("alpha beta alpha")).text == "A"
    assert (await client.turn("alpha again")).text == "A"
    assert (await client.turn("and gamma")).text == "C1"
    assert (await client.turn("nothing matches")).text == "U1"
    await sim.stop()
    client = await sims(scenario=scenario).connect()
    assert (await client.turn("still nothing")).text == "U2"
    last = await client.turn("out of entries")
    assert last.text == expected_reply(last.session_id, ["out of entries"])


async def test_instance_restriction(sims: SimFactory) -> None:
    scenario = {"turns": [{"match": "who", "instance": "inst-1", "reply": [{"text": "I am inst-1"}]}]}
    zero = await sims("inst-0", scenario=scenario).connect()
    one = await sims("inst-1", scenario=scenario).connect()
    assert (await one.turn("who are you")).text == "I am inst-1"
    other = await zero.turn("who are you")
    assert other.text == expected_reply(other.session_id, ["who are you"])


async def test_scenario_login_start_logged_out(sims: SimFactory) -> None:
    scenario = {"turns": [], "login": {"start_logged_out": True, "accounts": {"u": "p"}}, "future_key": 1}
    client = await sims(scenario=scenario).connect()
    assert (await client.result("auth/status"))["status"] == 1
    _, reply, _ = await client.ask("hi")
    assert reply["errorCode"] == "NOT_LOGIN"


async def test_bad_scenario_refuses_to_start(sims: SimFactory) -> None:
    sim = sims(scenario={"turns": [{"match": "(", "reply": []}]})
    assert await sim.wait_exit() != 0
    assert "regex" in sim.stderr
