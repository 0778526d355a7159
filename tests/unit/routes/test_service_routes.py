"""The routes over the real Lingma backend (pool, turns, session cache in memory) on a stand-in instance.

Only the Lingma process is replaced; the handlers, the transport, the server and the backend are the
gateway's own, so session reuse can be followed from one HTTP request to the next.
"""

from __future__ import annotations

from typing import Any

from sidecar.lingma.events import AnswerText, AskAccepted, AskFinished, SessionAssigned
from tests.support.fake_lingma import FakeInstance, answer
from tests.support.inprocess import lingma_sidecar

from .conftest import ANTHROPIC_AUTH, AUTH, gateway, settings


async def test_a_chat_follow_up_reuses_the_session_over_http() -> None:
    inst = FakeInstance("inst-0").script([answer("Paris.", "sess-7"), answer("About 2 million.", "sess-7")])
    side = await lingma_sidecar([inst], settings())
    first_turn = [{"role": "user", "content": "Capital of France?"}]
    async with gateway(sidecar=side) as client:
        first = await client.post("/v1/chat/completions", json={"model": "auto", "messages": first_turn}, headers=AUTH)
        history = [*first_turn, first.json()["choices"][0]["message"], {"role": "user", "content": "Population?"}]
        second = await client.post("/v1/chat/completions", json={"model": "auto", "messages": history}, headers=AUTH)
    assert first.json()["choices"][0]["message"]["content"] == "Paris."
    assert second.json()["choices"][0]["message"]["content"] == "About 2 million."
    assert second.headers["x-lingma-instance"] == "inst-0"
    assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert first.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert [(a.is_reply, a.session_id, a.question) for a in inst.asks][1] == (True, "sess-7", "Population?")


async def test_a_responses_continuation_sends_only_the_new_input() -> None:
    inst = FakeInstance("inst-0").script([answer("Noted.", "s-1"), answer("You said blue.", "s-1")])
    side = await lingma_sidecar([inst], settings())
    async with gateway(sidecar=side) as client:
        first = await client.post("/v1/responses", json={"model": "auto", "input": "My colour is blue."}, headers=AUTH)
        body: dict[str, Any] = {
            "model": "auto",
            "input": "What is my colour?",
            "previous_response_id": first.json()["id"],
        }
        second = await client.post("/v1/responses", json=body, headers=AUTH)
    assert second.status_code == 200, second.text
    assert second.json()["output"][0]["content"][0]["text"] == "You said blue."
    ask = inst.asks[-1]
    assert (ask.is_reply, ask.session_id, ask.question) == (True, "s-1", "What is my colour?")


async def test_a_mid_turn_failure_reaches_the_anthropic_stream_as_its_error_event() -> None:
    from common.errors import UpstreamError

    inst = FakeInstance("inst-0").script(
        [[AskAccepted(), SessionAssigned("s"), AnswerText("Half an answer"), UpstreamError("Lingma broke")]]
    )
    side = await lingma_sidecar([inst], settings())
    body = {"model": "claude-x", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with gateway(sidecar=side) as client:
        r = await client.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)
    assert r.status_code == 200
    assert "Half an answer" in r.text
    assert r.text.rstrip().split("\n")[-2] == "event: error"
    assert "Lingma broke" in r.text


async def test_models_and_readiness_come_from_the_pool() -> None:
    ready, starting = FakeInstance("a"), FakeInstance("b", state="starting")
    side = await lingma_sidecar([ready, starting], settings())
    async with gateway(sidecar=side) as client:
        models = await client.get("/v1/models", headers=AUTH)
        readyz = await client.get("/readyz")
        stats = await client.get("/internal/stats", headers=AUTH)
    assert [m["id"] for m in models.json()["data"]] == ["qwen3-coder", "lingma-agent"]
    assert readyz.json() == {"status": "ready", "instances_ready": 1}
    assert {i["id"]: i["state"] for i in stats.json()["pool"]["instances"]} == {"a": "ready", "b": "starting"}


async def test_no_ready_instance_is_503_with_retry_after() -> None:
    side = await lingma_sidecar([FakeInstance("a", state="restarting")], settings())
    async with gateway(sidecar=side) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
            headers=AUTH,
        )
        readyz = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "service_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert readyz.status_code == 503


async def test_a_finish_without_text_is_an_empty_answer_not_an_error() -> None:
    inst = FakeInstance("a").script([[AskAccepted(), SessionAssigned("s"), AskFinished("s", "", 200, "")]])
    side = await lingma_sidecar([inst], settings())
    async with gateway(sidecar=side) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
            headers=AUTH,
        )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] in ("", None)
    assert r.json()["choices"][0]["finish_reason"] == "stop"
