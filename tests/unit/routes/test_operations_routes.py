"""Health, readiness, models, admin stats and metrics in process, including a sidecar that cannot be reached."""

from __future__ import annotations

import asyncio
import importlib.metadata

import pytest

from common.client import InProcessTransport, SidecarClient
from common.frames import read_frame
from handlers.context import GatewayContext
from tests.support.inprocess import InProcessSidecar, scripted_sidecar

from .conftest import ANTHROPIC_AUTH, API_KEY, AUTH, gateway, settings


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_frame(reader)
    writer.close()


def lost_sidecar() -> InProcessSidecar:
    """A sidecar whose server hangs up on every connection, as a dead one would."""
    side = scripted_sidecar()
    side.client = SidecarClient(InProcessTransport(_hang_up))
    return side


async def test_healthz_answers_without_the_sidecar() -> None:
    async with gateway(sidecar=lost_sidecar()) as client:
        r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {
        "status": "ok",
        "version": importlib.metadata.version("lingma-gateway"),
    }


async def test_readyz_reports_the_sidecars_ready_instances() -> None:
    async with gateway() as client:
        r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "instances_ready": 1}


async def test_readyz_is_503_when_the_sidecar_is_lost() -> None:
    async with gateway(sidecar=lost_sidecar()) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reason": "sidecar_unavailable"}


async def test_readyz_is_503_once_draining() -> None:
    side = scripted_sidecar()
    ctx = GatewayContext(settings=settings(), client=side.client)
    ctx.draining.set()
    async with gateway(sidecar=side, context=ctx) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"


@pytest.mark.parametrize("headers", [AUTH, ANTHROPIC_AUTH])
async def test_models_lists_the_backends_models_for_both_families(headers: dict[str, str]) -> None:
    async with gateway() as client:
        r = await client.get("/v1/models", headers=headers)
    assert r.status_code == 200
    out = r.json()
    assert out["object"] == "list" and out["has_more"] is False
    assert [m["id"] for m in out["data"]] == ["scripted"]
    assert out["data"][0]["display_name"] == "Scripted" and out["first_id"] == out["last_id"] == "scripted"


@pytest.mark.parametrize("limit", ["0", "x", "1001", "-1"])
async def test_a_bad_models_limit_is_a_400(limit: str) -> None:
    async with gateway() as client:
        r = await client.get(f"/v1/models?limit={limit}", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "limit"


async def test_a_lost_sidecar_is_503_in_each_dialect_at_once() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    msg = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with gateway(sidecar=lost_sidecar()) as client:
        openai = await client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=AUTH)
        responses = await client.post("/v1/responses", json={"model": "m", "input": "hi"}, headers=AUTH)
        anthropic = await client.post("/v1/messages", json=msg, headers=ANTHROPIC_AUTH)
        models = await client.get("/v1/models", headers=ANTHROPIC_AUTH)
    assert openai.status_code == responses.status_code == 503
    assert openai.json()["error"]["code"] == responses.json()["error"]["code"] == "sidecar_unavailable"
    assert anthropic.status_code == models.status_code == 529
    assert anthropic.json()["error"]["type"] == models.json()["error"]["type"] == "overloaded_error"


async def test_admin_stats_needs_the_admin_token_and_shows_the_sidecars_numbers() -> None:
    async with gateway(admin_token="adm-secret") as client:
        await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "TURN-TEXT"}]},
            headers=AUTH,
        )
        missing = await client.get("/internal/stats")
        with_key = await client.get("/internal/stats", headers=AUTH)
        ok = await client.get("/internal/stats", headers={"authorization": "Bearer adm-secret"})
    assert missing.status_code == with_key.status_code == 401
    assert "adm-secret" not in missing.text
    snap = ok.json()
    assert snap["version"] == 1
    assert snap["requests"]["started"] == 1 and snap["requests"]["finished"] == 1
    assert snap["backpressure"]["in_flight"] == 0 and snap["backpressure"]["limit"] == 32
    assert snap["pool"]["instances"][0]["id"] == "scripted"


async def test_admin_stats_keep_the_documented_shape() -> None:
    """docs/operations.md §6: every section and every instance key, always present, in this order."""
    async with gateway(admin_token="adm-secret") as client:
        snap = (await client.get("/internal/stats", headers={"authorization": "Bearer adm-secret"})).json()
    assert list(snap) == [
        "version", "requests", "pool", "session_cache", "tools", "recent_failures", "backpressure", "key_share",
        "usage",
    ]  # fmt: skip
    [inst] = snap["pool"]["instances"]
    assert list(inst) == [
        "id", "state", "pid", "in_flight", "served_total", "restarts_total", "unhealthy_total", "probes", "auth",
        "auto_login", "reason", "cooldown_until", "last_error",
    ]  # fmt: skip
    assert inst["probes"] == {
        "total": 0,
        "missed_total": 0,
        "busy_total": 0,
        "missed_in_a_row": 0,
        "last_answer_at": None,
    }
    assert set(inst["auto_login"]) == {"state", "attempts", "max_attempts", "step", "last_error", "started_at", "finished_at"}  # fmt: skip
    assert list(snap["backpressure"]) == ["in_flight", "in_flight_max", "limit", "queued", "rejected_total"]
    assert list(snap["key_share"]) == ["limit", "in_flight", "in_flight_max", "rejected_total"]
    assert list(snap["recent_failures"]) == ["window_s", "by_kind", "last_kind", "last_age_s"]
    assert list(snap["usage"]) == ["since", "keys", "models", "total"]


async def test_admin_routes_fall_back_to_api_keys_and_hide_without_either() -> None:
    async with gateway() as client:
        raw = await client.get("/internal/models/raw", headers=AUTH)
    assert raw.status_code == 200 and raw.json()["chat"][0]["key"] == "scripted"
    async with gateway(api_keys=()) as client:
        hidden = await client.get("/internal/stats")
    assert hidden.status_code == 404


async def test_metrics_render_the_sidecar_stats_behind_a_key() -> None:
    async with gateway() as client:
        await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "TURN-TEXT"}]},
            headers=AUTH,
        )
        denied = await client.get("/metrics")
        r = await client.get("/metrics", headers=AUTH)
    assert denied.status_code == 401
    assert r.status_code == 200
    assert "lingma_gateway_sidecar_up 1" in r.text
    assert "lingma_gateway_in_flight_limit 32.0" in r.text
    assert 'lingma_gateway_instance_state{instance="scripted",state="ready"} 1.0' in r.text
    assert 'lingma_gateway_requests_total{kind="finished"} 1.0' in r.text


async def test_metrics_token_and_public_metrics() -> None:
    async with gateway(metrics_token="m-tok") as client:
        by_token = await client.get("/metrics", headers={"authorization": "Bearer m-tok"})
        by_key = await client.get("/metrics", headers={"authorization": f"Bearer {API_KEY}"})
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
    assert by_token.status_code == by_key.status_code == 200
    assert wrong.status_code == 401
    async with gateway(metrics_public=True) as client:
        assert (await client.get("/metrics")).status_code == 200


async def test_metrics_say_when_the_sidecar_is_down() -> None:
    async with gateway(sidecar=lost_sidecar(), metrics_public=True) as client:
        r = await client.get("/metrics")
    assert r.status_code == 200
    assert "lingma_gateway_sidecar_up 0" in r.text


async def test_a_per_route_app_serves_only_its_routes() -> None:
    async with gateway(routes=["anthropic_messages"]) as client:
        chat = await client.post("/v1/chat/completions", json={}, headers=AUTH)
        health = await client.get("/healthz")
    assert chat.status_code == 404
    assert health.status_code == 200
