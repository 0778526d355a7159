"""Session reuse end to end: only the new turn goes upstream, on the same session, even across a restart."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.gateway import Gateway, sse_data


def chat(gw: Gateway, messages: list[dict[str, Any]]) -> str:
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "auto", "messages": messages}, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_follow_up_reuses_the_session_and_survives_a_restart(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory()
    history: list[dict[str, Any]] = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "one"}]
    first = chat(gw, history)
    assert first.startswith("sim: turn 1 of session")
    session = first.split("session ")[1][:8]

    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "two"}]
    second = chat(gw, history)
    assert second.startswith(f"sim: turn 2 of session {session}")
    ask = gw.asks()[-1]
    assert ask["isReply"] is True and ask["questionText"] == "two"

    # Restart everything on the same data dir: the cache (and the simulator's history) survive.
    gw.stop()
    gw.start()
    history += [{"role": "assistant", "content": second}, {"role": "user", "content": "three"}]
    third = chat(gw, history)
    assert third.startswith(f"sim: turn 3 of session {session}")
    assert gw.asks()[-1]["questionText"] == "three"

    # A regenerate of the same turn finds no entry (single use) and starts fresh with the whole transcript.
    again = chat(gw, history)
    assert again.startswith("sim: turn 1 of session")
    assert "<conversation_history>" in gw.asks()[-1]["questionText"]
    stats = httpx.get(gw.url + "/metrics", timeout=10).text
    assert 'lingma_gateway_session_cache_total{kind="hits"} 1.0' in stats


def test_an_edited_history_never_reaches_the_old_session(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory()
    first = chat(gw, [{"role": "user", "content": "alpha"}])
    edited = [{"role": "user", "content": "alpha"}, {"role": "assistant", "content": first + " (edited)"},
              {"role": "user", "content": "beta"}]  # fmt: skip
    reply = chat(gw, edited)
    assert reply.startswith("sim: turn 1 of session")
    assert gw.asks()[-1]["isReply"] is False


def test_a_forgotten_session_is_retried_fresh_and_never_offered_again(gateway_factory: Any) -> None:
    scenario = {"turns": [{"match": "^forget this$", "reply": [{"forget_session": True}]}]}
    gw: Gateway = gateway_factory(scenario=scenario)
    first = chat(gw, [{"role": "user", "content": "start"}])
    history = [{"role": "user", "content": "start"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "forget this"}]  # fmt: skip
    before = len(gw.asks())
    reply = chat(gw, history)
    asks = gw.asks()[before:]
    assert [a["isReply"] for a in asks] == [True, False], "the stale session was retried once, fresh"
    assert reply.startswith("sim: turn 1 of session") and "<conversation_history>" in asks[1]["questionText"]
    # A regenerate of the same turn must not find the dead session's entry again.
    before = len(gw.asks())
    chat(gw, history)
    assert [a["isReply"] for a in gw.asks()[before:]] == [False]


def test_a_reused_turn_reports_the_held_history_as_cached_tokens(gateway_factory: Any) -> None:
    gw: Gateway = gateway_factory()
    url = gw.url + "/v1/chat/completions"
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "Be terse. " * 40},
        {"role": "user", "content": "one"},
    ]
    first = httpx.post(url, json={"model": "auto", "messages": history}, timeout=30).json()
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    history += [first["choices"][0]["message"], {"role": "user", "content": "two"}]
    second = httpx.post(url, json={"model": "auto", "stream": True, "stream_options": {"include_usage": True},
                                   "messages": history}, timeout=30).text  # fmt: skip
    usage = json.loads([d for d in sse_data(second) if d != "[DONE]"][-1])["usage"]
    assert gw.asks()[-1]["questionText"] == "two"
    # The whole prompt is counted as a fresh session would send it; all but the new turn was already held.
    assert usage["prompt_tokens"] > first["usage"]["prompt_tokens"]
    assert 0 < usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]
    assert usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"] <= 2
