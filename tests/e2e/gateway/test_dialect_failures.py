"""Upstream failures mid-stream through the real simulator, for the Responses and Anthropic dialects.

References: docs/dialects.md §3.5 (response.failed, never a made-up completed), docs/dialects.md §4.3
(event: error, no message_stop), docs/dialects.md §1.4 (exactly one terminal per stream).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.support.anthropic_sse import check_stream as check_anthropic
from tests.support.gateway import Gateway
from tests.support.responses_sse import check_stream as check_responses

SCENARIO = {
    "turns": [
        {"match": "crash now", "reply": [{"text": "partial answer "}, {"delay_ms": 300}, {"crash": True}]},
        {"match": "fail now", "reply": [{"text": "partial answer "}, {"error": {"status": 500, "kind": "server", "message": "model overloaded upstream"}}]},
        {"match": "quota now", "reply": [{"text": "partial "}, {"error": {"status": 429, "kind": "quota", "message": "monthly quota used up"}}]},
    ]
}  # fmt: skip


@pytest.fixture
def gw(gateway_factory: Any) -> Gateway:
    return gateway_factory(scenario=SCENARIO)  # type: ignore[no-any-return]


def responses(gw: Gateway, text: str) -> bytes:
    body = {"model": "auto", "stream": True, "input": text}
    r = httpx.post(gw.url + "/v1/responses", json=body, timeout=60)
    assert r.status_code == 200
    return r.content


def messages(gw: Gateway, text: str) -> bytes:
    body = {"model": "m", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": text}]}
    r = httpx.post(gw.url + "/v1/messages", json=body, timeout=60)
    assert r.status_code == 200
    return r.content


def ready(gw: Gateway) -> bool:
    r = httpx.post(gw.url + "/v1/responses", json={"model": "auto", "input": "are you back"}, timeout=30)
    return r.status_code == 200


@pytest.mark.parametrize(("prompt", "code"), [("crash now", "server_error"), ("fail now", "server_error"), ("quota now", "insufficient_quota")])  # fmt: skip
def test_responses_stream_ends_with_response_failed(gw: Gateway, prompt: str, code: str) -> None:
    checked = check_responses(responses(gw, prompt))
    assert checked.types.count("response.completed") == 0
    assert checked.types[-1] == "response.failed"
    assert checked.response["status"] == "failed" and checked.response["error"]["code"] == code
    assert "response.output_text.delta" in checked.types, "the partial answer streamed before the failure"
    if prompt == "crash now":
        wait_for(lambda: ready(gw), 30, 0.2, what="a successful turn after the simulator restarted")


@pytest.mark.parametrize(("prompt", "kind"), [("crash now", "api_error"), ("fail now", "api_error"), ("quota now", "rate_limit_error")])  # fmt: skip
def test_anthropic_stream_ends_with_an_error_event(gw: Gateway, prompt: str, kind: str) -> None:
    raw = messages(gw, prompt)
    summary = check_anthropic(raw)
    assert summary.error is not None and summary.error["type"] == kind
    assert b"event: message_stop" not in raw and b"event: message_delta" not in raw
    assert raw.rstrip().endswith(b"}") and b"event: error" in raw.rsplit(b"\n\n", 2)[-2]
    if prompt == "crash now":
        wait_for(lambda: ready(gw), 30, 0.2, what="a successful turn after the simulator restarted")


def test_unservable_responses_tools_are_left_out_and_counted(gw: Gateway) -> None:
    body = {"model": "auto", "input": "hello", "tools": [{"type": "web_search"}, {"type": "function", "name": "run"}]}
    for _ in range(2):
        assert httpx.post(gw.url + "/v1/responses", json=body, timeout=30).status_code == 200
    prompt = gw.asks()[-1]["questionText"]
    assert '"name":"run"' in prompt.replace(" ", "") and "web_search" not in prompt
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'lingma_gateway_unserved_tools_total{type="web_search"} 2.0' in metrics
