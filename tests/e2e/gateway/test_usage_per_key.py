"""Usage per API key: what the gateway records for each key equals the sum of the ``usage`` its clients got.

Three keys (two named, one bare) drive a real bundled gateway on the simulator through the real openai and
anthropic SDKs, over three dialects, streamed and not, with a follow-up turn that reuses its session (cached
input tokens). ``/internal/usage`` and ``/metrics`` must agree with the clients to the token.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import anthropic
import httpx
import openai

from common.settings import key_name

ALICE, BOB, BARE = "sk-usage-alice", "sk-usage-bob", "sk-usage-bare"
ADMIN = "adm-usage"
ENV = {"API_KEYS": f"alice:{ALICE},bob:{BOB},{BARE}", "ADMIN_TOKEN": ADMIN}


def _chat_usage(url: str, key: str) -> Counter[str]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    got: Counter[str] = Counter()
    history: list[Any] = [{"role": "user", "content": "count the apples in the basket please"}]
    first = client.chat.completions.create(model="auto", messages=history)
    history += [{"role": "assistant", "content": first.choices[0].message.content}]
    history += [{"role": "user", "content": "and now the pears"}]
    second = client.chat.completions.create(model="auto", messages=history)  # continues the session: cached input
    for reply in (first, second):
        assert reply.usage is not None
        got["input_tokens"] += reply.usage.prompt_tokens
        got["output_tokens"] += reply.usage.completion_tokens
        details = reply.usage.prompt_tokens_details
        got["cached_input_tokens"] += details.cached_tokens or 0 if details else 0
        got["turns"] += 1
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "stream me a short line"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert len(usage) == 1
    got["input_tokens"] += usage[0].prompt_tokens
    got["output_tokens"] += usage[0].completion_tokens
    got["turns"] += 1
    assert got["cached_input_tokens"] > 0, "the follow-up turn should have reused its session"
    return got


def _anthropic_usage(url: str, key: str) -> Counter[str]:
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    got: Counter[str] = Counter()
    messages: list[Any] = [{"role": "user", "content": "name three rivers"}]
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=messages)
    messages += [{"role": "assistant", "content": first.content[0].text}, {"role": "user", "content": "and lakes"}]  # type: ignore[union-attr]
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=messages) as stream:
        second = stream.get_final_message()
    for reply in (first, second):
        cached = reply.usage.cache_read_input_tokens or 0
        # Anthropic's input_tokens leaves out the cached ones; the gateway records the whole input.
        got["input_tokens"] += reply.usage.input_tokens + cached
        got["cached_input_tokens"] += cached
        got["output_tokens"] += reply.usage.output_tokens
        got["turns"] += 1
    return got


def _responses_usage(url: str, key: str) -> Counter[str]:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    got: Counter[str] = Counter()
    first = client.responses.create(model="auto", input="describe a lighthouse")
    second = client.responses.create(model="auto", input="and a harbour", previous_response_id=first.id)
    for reply in (first, second):
        assert reply.usage is not None
        got["input_tokens"] += reply.usage.input_tokens
        got["cached_input_tokens"] += reply.usage.input_tokens_details.cached_tokens
        got["output_tokens"] += reply.usage.output_tokens
        got["turns"] += 1
    return got


def _metric(text: str, name: str, key: str) -> float:
    pattern = re.compile(rf'^{name}\{{[^}}]*key="{re.escape(key)}"[^}}]*\}} (\S+)$', re.MULTILINE)
    return sum(float(v) for v in pattern.findall(text))


def test_usage_recorded_per_key_equals_what_its_clients_received(gateway_factory: Any) -> None:
    gw = gateway_factory(env=ENV, routes="openai_chat,openai_responses,anthropic_messages,models,admin,metrics")
    received = {
        "alice": _chat_usage(gw.url, ALICE),
        "bob": _anthropic_usage(gw.url, BOB),
        key_name(BARE): _responses_usage(gw.url, BARE),
    }
    received["alice"] += _anthropic_usage(gw.url, ALICE)  # one key over two dialects adds up too

    doc = httpx.get(gw.url + "/internal/usage", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert set(doc["keys"]) == set(received)
    metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ALICE}"}).text
    for name, got in received.items():
        recorded = doc["keys"][name]
        for field in ("turns", "input_tokens", "cached_input_tokens", "output_tokens"):
            assert recorded[field] == got[field], (name, field, recorded, got)
            family = "lingma_gateway_key_turns_total" if field == "turns" else f"lingma_gateway_key_{field}_total"
            if field == "turns":
                assert _metric(metrics, family, name) == got[field] + recorded["failed_turns"]
            else:
                assert _metric(metrics, family, name) == got[field], (name, family)
        assert recorded["failed_turns"] == 0
        assert sum(m["turns"] for m in recorded["models"].values()) == got["turns"]
    assert doc["total"]["turns"] == sum(g["turns"] for g in received.values())
    # The bare key is known by a short hash, never by itself, anywhere.
    assert BARE not in str(doc) and BARE not in metrics
    assert key_name(BARE).startswith("key-") and len(key_name(BARE)) == 12


def test_usage_needs_the_admin_token(gateway_factory: Any) -> None:
    gw = gateway_factory(env=ENV)
    assert httpx.get(gw.url + "/internal/usage").status_code == 401
    assert httpx.get(gw.url + "/internal/usage", headers={"Authorization": f"Bearer {ALICE}"}).status_code == 401
    assert httpx.get(gw.url + "/internal/usage", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
