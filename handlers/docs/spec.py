"""Build the OpenAPI 3.1 document from the ``ApiDoc`` each route carries and msgspec's JSON Schemas.

A route's request body type is the one its signature declares (its ``payload`` parameter, filled by
``handlers.body.json_body``), unless its ``ApiDoc`` names one.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from handlers.apidoc import AnthropicError, ApiDoc, OpenAIError
from handlers.version import VERSION

__all__ = ("build_openapi", "documented_routes")

_REF = "#/components/schemas/{name}"
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "api_key": [{"bearer": []}, {"x-api-key": []}],
    "admin": [{"bearer": []}, {"x-api-key": []}],
    "metrics": [{"bearer": []}, {"x-api-key": []}, {}],
    "none": [],
}
_AUTH_NOTE = {
    "api_key": "Needs an API key (`API_KEYS`) unless the gateway is open.",
    "admin": "Needs the admin token (`ADMIN_TOKEN`, else an API key).",
    "metrics": "Needs `METRICS_TOKEN` or an API key, unless public.",
    "none": "",
}
_ERROR_STATUSES = ("400", "401", "413", "429", "500", "502", "503", "504")


def documented_routes(app: Litestar) -> list[tuple[str, str, ApiDoc]]:
    """(path, method, doc) for every HTTP route of ``app`` that describes itself, in a stable order."""
    found: list[tuple[str, str, ApiDoc]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            doc = handler.opt.get("api") if isinstance(handler, HTTPRouteHandler) else None
            if isinstance(doc, ApiDoc):
                doc = _with_body_type(handler, doc)
                path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
                found.extend((path, method.lower(), doc) for method in sorted(handler.http_methods))
    return sorted(found, key=lambda item: (item[0], item[1]))


def _with_body_type(handler: HTTPRouteHandler, doc: ApiDoc) -> ApiDoc:
    payload = handler.parsed_fn_signature.parameters.get("payload")
    if doc.request is not None or payload is None:
        return doc
    return dataclasses.replace(doc, request=payload.annotation)


def _error_responses(doc: ApiDoc, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    if doc.errors is None:
        return {}
    if doc.errors == "openai":
        schema: dict[str, Any] = refs[OpenAIError]
    elif doc.errors == "anthropic":
        schema = refs[AnthropicError]
    else:
        schema = {"oneOf": [refs[OpenAIError], refs[AnthropicError]]}
    body = {"application/json": {"schema": schema}}
    return {
        "4XX": {"description": "a client error, in the route's dialect", "content": body},
        "5XX": {"description": "an upstream or gateway failure, in the route's dialect", "content": body},
    }


def _success(doc: ApiDoc, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if doc.response is not None:
        content[doc.media_type] = {"schema": refs[doc.response]}
    elif doc.media_type.startswith("text/"):
        content[doc.media_type] = {"schema": {"type": "string"}}
    else:
        content[doc.media_type] = {"schema": {"type": "object"}}
    if doc.streams:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": "server-sent events in the route's dialect"}
        }
    return {"description": "success" if doc.status < 300 else "refused", "content": content}


def _operation(path: str, method: str, doc: ApiDoc, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{method}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_') or 'root'}",
        "summary": doc.summary,
        "tags": [doc.tag],
        "responses": {str(doc.status): _success(doc, refs), **_error_responses(doc, refs)},
    }
    if _AUTH_NOTE[doc.auth]:
        op["description"] = _AUTH_NOTE[doc.auth]
    if _SECURITY[doc.auth]:
        op["security"] = _SECURITY[doc.auth]
    if doc.request is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[doc.request]}}}
    return op


def _any_json(kind: type) -> dict[str, Any]:
    """``object`` fields hold any JSON value (passed through as they came)."""
    if kind is object:
        return {"description": "any JSON value"}
    raise NotImplementedError(f"no JSON Schema for {kind!r}")


def build_openapi(app: Litestar) -> dict[str, Any]:
    routes = documented_routes(app)
    kinds: list[type] = [OpenAIError, AnthropicError]
    for _path, _method, doc in routes:
        kinds.extend(t for t in (doc.request, doc.response) if t is not None and t not in kinds)
    refs_list, components = msgspec.json.schema_components(kinds, schema_hook=_any_json, ref_template=_REF)
    refs = dict(zip(kinds, refs_list, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, doc in routes:
        paths.setdefault(path, {})[method] = _operation(path, method, doc, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lingma-gateway",
            "version": VERSION,
            "description": "Lingma served as OpenAI Chat Completions, OpenAI Responses and Anthropic Messages.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
