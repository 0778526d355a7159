"""``/openapi.json`` on a real gateway: a valid OpenAPI 3.1 document whose schemas match what the routes do."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from litestar.routes import HTTPRoute
from openapi_spec_validator import validate

from common.settings import load_settings
from handlers.app import create_app
from tests.support.gateway import Gateway

KEY = "openapi-test-key"
REQUEST_TYPES = {
    "/v1/chat/completions": "ChatCompletionRequest",
    "/v1/responses": "ResponsesRequest",
    "/responses": "ResponsesRequest",
    "/v1/messages": "MessagesRequest",
    "/v1/messages/count_tokens": "CountTokensRequest",
}
UNDOCUMENTED = ("/docs", "/status", "/openapi.json")  # the pages and the document itself


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    root = Path(tempfile.mkdtemp(prefix="lgw-oa-", dir="/tmp"))
    gateway = Gateway(root, env={"API_KEYS": KEY}).start()
    yield gateway
    gateway.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def document(gw: Gateway) -> dict[str, Any]:
    r = httpx.get(gw.url + "/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def _schema_check(doc: dict[str, Any], path: str, method: str, status: str, body: Any, media: str = "application/json") -> None:  # fmt: skip
    """Validate a real answer against the schema the document gives for it."""
    schema = doc["paths"][path][method]["responses"][status]["content"][media]["schema"]
    root = {**schema, "components": doc["components"]}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} {status}: {errors[0]}"


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["version"]


def test_every_post_references_its_dialect_request_type(document: dict[str, Any]) -> None:
    all_posts = {path: ops["post"] for path, ops in document["paths"].items() if "post" in ops}
    operator = {path: op for path, op in all_posts.items() if path.startswith("/internal/")}
    assert set(operator) == {"/internal/auto-login/start", "/internal/session/export"}
    assert all("requestBody" not in op for op in operator.values()), "operator POSTs take query parameters only"
    posts = {path: op for path, op in all_posts.items() if path not in operator}
    assert set(posts) == set(REQUEST_TYPES)
    for path, op in posts.items():
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{REQUEST_TYPES[path]}"}, path
        assert REQUEST_TYPES[path] in document["components"]["schemas"]
        streams = "text/event-stream" in op["responses"]["200"]["content"]
        assert streams == (path != "/v1/messages/count_tokens"), path


def test_every_route_of_the_app_is_described(document: dict[str, Any]) -> None:
    app = create_app(load_settings())
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, HTTPRoute) and not route.path.startswith(UNDOCUMENTED)
        for method in route.methods - {"OPTIONS", "HEAD"}
    }
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served - described == set()


def test_answers_match_the_documented_schemas(gw: Gateway, document: dict[str, Any]) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    chat = {"model": "auto", "messages": [{"role": "user", "content": "describe me"}]}
    answers = {
        ("/v1/chat/completions", "post"): httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=auth, timeout=30),
        ("/v1/responses", "post"): httpx.post(gw.url + "/v1/responses", json={"model": "auto", "input": "hi"}, headers=auth, timeout=30),
        ("/v1/messages", "post"): httpx.post(gw.url + "/v1/messages", json={**chat, "max_tokens": 64}, headers={"x-api-key": KEY}, timeout=30),
        ("/v1/messages/count_tokens", "post"): httpx.post(gw.url + "/v1/messages/count_tokens", json=chat, headers={"x-api-key": KEY}, timeout=30),
        ("/v1/models", "get"): httpx.get(gw.url + "/v1/models", headers=auth, timeout=30),
        ("/healthz", "get"): httpx.get(gw.url + "/healthz"),
        ("/readyz", "get"): httpx.get(gw.url + "/readyz"),
    }  # fmt: skip
    for (path, method), r in answers.items():
        assert r.status_code == 200, (path, r.text)
        _schema_check(document, path, method, "200", r.json())


def test_errors_match_the_documented_envelopes(gw: Gateway, document: dict[str, Any]) -> None:
    openai_bad = httpx.post(
        gw.url + "/v1/chat/completions", json={"model": 3}, headers={"authorization": f"Bearer {KEY}"}
    )
    anthropic_bad = httpx.post(gw.url + "/v1/messages", json={"model": "auto"}, headers={"x-api-key": KEY})
    unauthorised = httpx.post(gw.url + "/v1/responses", json={"model": "auto", "input": "x"})
    assert (openai_bad.status_code, anthropic_bad.status_code, unauthorised.status_code) == (400, 400, 401)
    _schema_check(document, "/v1/chat/completions", "post", "4XX", openai_bad.json())
    _schema_check(document, "/v1/messages", "post", "4XX", anthropic_bad.json())
    _schema_check(document, "/v1/responses", "post", "4XX", unauthorised.json())
    with pytest.raises(AssertionError):  # the check can fail: an OpenAI envelope is not an Anthropic one
        _schema_check(document, "/v1/messages", "post", "4XX", openai_bad.json())
