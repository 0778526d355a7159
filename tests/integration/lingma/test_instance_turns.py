"""LingmaInstance turns against the real simulator subprocess (what the gateway sees, and what reached it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from common.errors import NoCapacityError, QuotaExhaustedError, RateLimitedError, UpstreamError
from sidecar.lingma.errors import StaleSessionError
from sidecar.lingma.events import AskAccepted, SessionAssigned, ToolInvoked
from sidecar.lingma.params import TOOL_UNAVAILABLE

from .conftest import InstanceFactory, read_journal, wait_journal, write_scenario
from .helpers import answer_of, collect, expected_default_reply, finished, think_of


def _pushes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["dir"] == "out" and "params" in e and e.get("id") is not None]


def _replies(entries: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {e["id"]: e for e in entries if e["dir"] == "in" and ("result" in e or "error" in e)}


def _all_pushes_answered(entries: list[dict[str, Any]]) -> bool:
    replies = _replies(entries)
    return bool(_pushes(entries)) and all(p["id"] in replies for p in _pushes(entries))


async def test_turns_carry_the_default_reply_and_the_wire_is_clean(make_instance: InstanceFactory) -> None:
    inst = make_instance()
    await inst.start()
    assert inst.state == "ready" and inst.pid is not None

    first = await collect(
        inst.ask(
            question="system: be brief\nhello there", model_key="auto", session_id=None, is_reply=False, mode="chat"
        )
    )
    done = finished(first)
    assert first[0] == AskAccepted()
    assert SessionAssigned(done.session_id) in first and done.session_id
    second = await collect(
        inst.ask(question="and a follow-up", model_key="auto", session_id=done.session_id, is_reply=True, mode="chat")
    )
    assert finished(second).session_id == done.session_id
    assert inst.served_total == 2

    entries = await wait_journal(inst.work_dir, _all_pushes_answered)
    asks = [e["params"] for e in entries if e["dir"] == "in" and e["method"] == "chat/ask"]
    questions = [a["questionText"] for a in asks]
    assert answer_of(first) == expected_default_reply(done.session_id, questions[:1]) == done.full_answer
    assert answer_of(second) == expected_default_reply(done.session_id, questions[:2])

    inbound = [e for e in entries if e["dir"] == "in" and "params" in e]
    assert inbound[0]["method"] == "initialize"
    assert all(isinstance(e["params"], dict) for e in inbound)
    init = inbound[0]["params"]
    assert init["processId"] is None and init["clientInfo"]["name"] == "lingma-gateway"
    assert init["rootUri"] == inst.work_dir.resolve().as_uri() and init["capabilities"] == {}
    assert asks[0]["sessionId"] == "" and asks[0]["isReply"] is False
    assert (asks[1]["sessionId"], asks[1]["isReply"]) == (done.session_id, True)
    assert asks[0]["extra"] == {"modelConfig": {"key": "auto"}}
    assert (asks[0]["mode"], asks[0]["sessionType"]) == ("chat", "chat")
    replies = _replies(entries)
    for push in _pushes(entries):
        want = True if push["method"] in ("chat/answer", "chat/finish") else None
        assert replies[push["id"]]["result"] is want, push


async def test_reasoning_arrives_as_think_text(make_instance: InstanceFactory, tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "think.json",
        [{"match": "ponder", "reply": [{"think": "step one; step two"}, {"text": "The answer is 42."}]}],
    )
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)})
    await inst.start()
    events = await collect(
        inst.ask(question="please ponder", model_key="auto", session_id=None, is_reply=False, mode="chat")
    )
    assert think_of(events) == "step one; step two"
    assert answer_of(events) == "The answer is 42."
    assert "````" not in answer_of(events) and "think" not in answer_of(events)


async def test_agent_mode_tool_invoke_is_answered_unavailable(make_instance: InstanceFactory, tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "agent.json",
        [
            {
                "match": "look at the file",
                "reply": [
                    {"text": "Let me look."},
                    {"tool_invoke": {"name": "read_file", "parameters": {"path": "x"}, "timeout_ms": 15000}},
                    {"text": " I cannot."},
                ],
            }
        ],
    )
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)})
    await inst.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await collect(
        inst.ask(question="look at the file", model_key="auto", session_id=None, is_reply=False, mode="agent")
    )
    assert loop.time() - started < 10, "the turn waited for the simulator's tool timeout"
    assert answer_of(events) == "Let me look. I cannot."
    assert next(e for e in events if isinstance(e, ToolInvoked)).name == "read_file"
    assert sum(isinstance(e, ToolInvoked) for e in events) == 1  # what the stats book counts

    entries = await wait_journal(
        inst.work_dir, lambda es: _all_pushes_answered(es) and any(e["method"] == "tool/invokeResult" for e in es)
    )
    ask = next(e["params"] for e in entries if e["dir"] == "in" and e["method"] == "chat/ask")
    assert (ask["mode"], ask["sessionType"]) == ("agent", "assistant")
    invoke = next(p for p in _pushes(entries) if p["method"] == "tool/invoke")
    ack = _replies(entries)[invoke["id"]]
    assert ack["result"] is None
    result = next(e for e in entries if e["dir"] == "in" and e["method"] == "tool/invokeResult" and "params" in e)
    assert entries.index(ack) < entries.index(result)
    assert result["params"]["toolCallId"] == invoke["params"]["toolCallId"]
    assert result["params"]["success"] is False and result["params"]["errorMessage"] == TOOL_UNAVAILABLE


async def test_failures_are_classified(make_instance: InstanceFactory, tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path / "errors.json",
        [
            {"match": "use quota", "reply": [{"error": {"status": 429, "kind": "quota", "message": "quota exceeded"}}]},
            {"match": "too fast", "reply": [{"error": {"status": 429, "kind": "rate_limit", "message": "slow down"}}]},
            {"match": "break it", "reply": [{"text": "partial"}, {"error": {"status": 500, "kind": "server"}}]},
        ],
    )
    inst = make_instance(env={"LINGMA_SIM_SCENARIO": str(scenario)})
    await inst.start()
    cases: list[tuple[str, str | None, type[Exception]]] = [
        ("use quota", None, QuotaExhaustedError),
        ("too fast", None, RateLimitedError),
        ("break it", None, UpstreamError),
        ("hello", "no-such-session", StaleSessionError),
    ]
    for question, session, error in cases:
        with pytest.raises(error) as info:
            await collect(
                inst.ask(question=question, model_key="auto", session_id=session, is_reply=bool(session), mode="chat")
            )
        assert type(info.value) is error
    with pytest.raises(UpstreamError, match="MODEL_NOT_FOUND"):
        await collect(inst.ask(question="hi", model_key="no_such_model", session_id=None, is_reply=False, mode="chat"))
    events = await collect(
        inst.ask(question="still fine", model_key="auto", session_id=None, is_reply=False, mode="chat")
    )
    assert "you said: still fine" in answer_of(events)
    assert inst.state == "ready" and inst.served_total == 1  # only the turn that finished counts as served


async def test_concurrent_turns_on_one_connection(make_instance: InstanceFactory) -> None:
    inst = make_instance()
    await inst.start()
    turns = [
        collect(inst.ask(question=f"question {name}", model_key="auto", session_id=None, is_reply=False, mode="chat"))
        for name in ("alpha", "beta", "gamma")
    ]
    results = await asyncio.gather(*turns)
    sessions = {finished(events).session_id for events in results}
    assert len(sessions) == 3
    for name, events in zip(("alpha", "beta", "gamma"), results, strict=True):
        done = finished(events)
        assert answer_of(events) == expected_default_reply(done.session_id, [f"question {name}"])
        assigned = [e for e in events if isinstance(e, SessionAssigned)]
        assert assigned == [SessionAssigned(done.session_id)]


async def test_logged_out_instance(make_instance: InstanceFactory) -> None:
    inst = make_instance(instance_id="acct-2", env={"LINGMA_SIM_LOGGED_OUT": "1"})
    await inst.start()
    state: str = inst.state
    assert state == "login_required"
    assert await inst.wait_ready(5) is False
    assert not (await inst.auth_status()).get("id")
    assert await inst.query_models() == {}
    with pytest.raises(NoCapacityError, match=r"acct-2.*login"):
        await collect(inst.ask(question="hi", model_key="auto", session_id=None, is_reply=False, mode="chat"))
    assert not any(e["method"] == "chat/ask" for e in read_journal(inst.work_dir) if e["dir"] == "in")


async def test_logged_out_behind_our_back(make_instance: InstanceFactory) -> None:
    inst = make_instance(instance_id="acct-5")
    await inst.start()
    assert inst.state == "ready"
    await inst.request("auth/logout", {})
    with pytest.raises(NoCapacityError, match="acct-5"):
        await collect(inst.ask(question="hi", model_key="auto", session_id=None, is_reply=False, mode="chat"))
    state: str = inst.state
    assert state == "login_required"
