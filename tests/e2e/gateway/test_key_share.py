"""A fair share per key: under a flood from one key, that key never holds more than its cap of turns in flight,
and a second key is still served promptly.

The flood's turns are slow (the simulator waits before answering), the pool-wide limit is small, and the
flooding key sends more requests at once than the whole pool could hold: without the cap the second key would
queue behind it and time out.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

FLOOD, OTHER = "sk-share-flood", "sk-share-other"
ADMIN = "adm-share"
CAP = 2
FLOOD_SIZE = 8
SLOW_MS = 2500
SCENARIO = {"turns": [{"match": "flood", "reply": [{"delay_ms": SLOW_MS}, {"text": "flood answered"}]}]}
ENV = {
    "API_KEYS": f"flood:{FLOOD},other:{OTHER}",
    "ADMIN_TOKEN": ADMIN,
    "GATEWAY_KEY_MAX_IN_FLIGHT": str(CAP),
    "GATEWAY_MAX_IN_FLIGHT": "3",
    "GATEWAY_QUEUE_TIMEOUT_SEC": "1",
}


async def _warm(client: httpx.AsyncClient, connections: int = 12) -> None:
    """Open the handler's sidecar connections before the flood: on a loaded machine, dialling many at once can
    take longer than the handler's connect timeout, which would turn flood requests into 503s."""
    deadline = time.monotonic() + 20
    while True:
        replies = await asyncio.gather(*(client.get("/readyz") for _ in range(connections)))
        if all(r.status_code == 200 for r in replies):
            return
        assert time.monotonic() < deadline, [r.text for r in replies]


def _body(text: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


async def _flood_and_other(url: str) -> tuple[list[httpx.Response], httpx.Response, float, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await _warm(client)
        flood = [
            asyncio.create_task(
                client.post(
                    "/v1/chat/completions",
                    json=_body(f"flood number {i}"),
                    headers={"Authorization": f"Bearer {FLOOD}"},
                )
            )
            for i in range(FLOOD_SIZE)
        ]
        admin = {"Authorization": f"Bearer {ADMIN}"}
        deadline = time.monotonic() + 10
        while True:  # wait until the flooding key holds its whole share
            stats = (await client.get("/internal/stats", headers=admin)).json()
            if stats["key_share"]["in_flight"].get("flood") == CAP:
                break
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.05)
        started = time.monotonic()
        other = await client.post(
            "/v1/chat/completions", json=_body("a quick question"), headers={"Authorization": f"Bearer {OTHER}"}
        )
        other_latency = time.monotonic() - started
        during = (await client.get("/internal/stats", headers=admin)).json()
        return list(await asyncio.gather(*flood)), other, other_latency, during


def test_the_per_key_cap_holds_under_a_flood_and_another_key_is_served(gateway_factory: Any) -> None:
    gw = gateway_factory(env=ENV, scenario=SCENARIO)
    flood, other, other_latency, during = asyncio.run(_flood_and_other(gw.url))

    assert other.status_code == 200, other.text
    assert other_latency < SLOW_MS / 1000, "the second key waited for the flood"
    assert during["key_share"]["in_flight"].get("flood", 0) <= CAP

    statuses = sorted(r.status_code for r in flood)
    assert statuses == [200] * CAP + [429] * (FLOOD_SIZE - CAP), statuses
    for reply in flood:
        if reply.status_code != 429:
            assert reply.json()["choices"][0]["message"]["content"] == "flood answered"
            continue
        error = reply.json()["error"]
        assert f"limit of {CAP} turns in flight" in error["message"], error
        assert "GATEWAY_KEY_MAX_IN_FLIGHT" in error["message"]
        assert FLOOD not in reply.text
        assert reply.headers.get("retry-after") == "1"

    stats = httpx.get(gw.url + "/internal/stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    share = stats["key_share"]
    assert share["limit"] == CAP
    assert share["in_flight_max"]["flood"] == CAP
    assert share["rejected_total"] == {"flood": FLOOD_SIZE - CAP}
    assert share["in_flight"] == {}
    metrics = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {OTHER}"}).text
    assert f'lingma_gateway_key_rejected_total{{key="flood"}} {float(FLOOD_SIZE - CAP)}' in metrics
    assert f"lingma_gateway_key_in_flight_limit {float(CAP)}" in metrics
    assert FLOOD not in json.dumps(stats) and FLOOD not in metrics


def test_without_a_cap_one_key_may_use_every_slot(gateway_factory: Any) -> None:
    """The control: the same flood with no per-key cap is limited only by the pool-wide limit."""
    env = {**ENV, "GATEWAY_KEY_MAX_IN_FLIGHT": "0"}
    gw = gateway_factory(env=env, scenario=SCENARIO)

    async def flood() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            await _warm(client)
            headers = {"Authorization": f"Bearer {FLOOD}"}
            replies = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=_body(f"flood {i}"), headers=headers) for i in range(4))
            )
            return sorted((r.status_code, r.text[:200]) for r in replies)

    replies = asyncio.run(flood())
    assert [status for status, _ in replies] == [200, 200, 200, 429], replies
    stats = httpx.get(gw.url + "/internal/stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert stats["key_share"]["in_flight_max"]["flood"] == 4  # the one waiting for a pool slot counts too
    assert stats["key_share"]["rejected_total"] == {}
