"""The ``route`` label of the HTTP metrics comes from the app's own routes, not from a copy of their paths."""

from __future__ import annotations

from litestar.routes import HTTPRoute
from prometheus_client import generate_latest

from common.settings import Settings
from handlers.app import create_app
from handlers.observability import HTTP_METRICS, route_label
from tests.unit.routes.conftest import gateway


def _count(route: str, status: int) -> float:
    value = HTTP_METRICS.registry.get_sample_value(
        "lingma_gateway_http_requests_total", {"route": route, "status": str(status)}
    )
    return value or 0.0


def test_every_route_is_labelled_by_its_template() -> None:
    app = create_app(Settings())
    templates = {route.path_format for route in app.routes if isinstance(route, HTTPRoute)}
    labels = {route_label({"path_template": t}) for t in templates}
    assert {
        "/v1/chat/completions",
        "/v1/responses",
        "/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
    } <= labels
    assert {"/v1/models", "/healthz", "/readyz", "/metrics", "/internal"} <= labels
    assert not any(label.startswith("/internal/") for label in labels)  # operator routes share one label
    assert route_label({"path": "/v1/chat/completions"}) == "other"  # a raw path is never a label


async def test_a_request_is_counted_under_its_route_template() -> None:
    before = (_count("/v1/messages", 401), _count("/internal", 401), _count("/docs/assets/{file_path}", 404))
    async with gateway() as client:
        assert (await client.post("/v1/messages", json={})).status_code == 401
        assert (await client.get("/internal/stats")).status_code == 401
        assert (await client.get("/docs/assets/nothing-here.css")).status_code == 404
    after = (_count("/v1/messages", 401), _count("/internal", 401), _count("/docs/assets/{file_path}", 404))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1.0, 1.0, 1.0]
    assert b"/docs/assets/nothing-here.css" not in generate_latest(HTTP_METRICS.registry)
