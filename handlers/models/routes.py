"""``GET /v1/models``: one list readable by OpenAI and Anthropic clients alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency

from common.errors import BadRequestError
from common.protocol import ModelInfo
from handlers.apidoc import api
from handlers.context import GatewayContext, require_api_key
from handlers.dialect import any_dialect_exception_handlers
from handlers.models.schema import ModelPage

__all__ = ("model_list", "router")

_EPOCH = 1_735_689_600  # a fixed creation date: Lingma reports none, and a changing one churns client caches


def model_list(models: list[ModelInfo], limit: int | None) -> dict[str, Any]:
    created_at = datetime.fromtimestamp(_EPOCH, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data: list[dict[str, Any]] = []
    for m in models:
        entry: dict[str, Any] = {
            "id": m.key,
            "object": "model",
            "created": _EPOCH,
            "owned_by": "lingma",
            "type": "model",
            "display_name": m.display_name or m.key,
            "created_at": created_at,
        }
        if m.context_window:
            entry["context_window"] = m.context_window
        data.append(entry)
    shown = data[:limit] if limit else data
    return {
        "object": "list",
        "data": shown,
        "has_more": len(shown) < len(data),
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
    }


@get(
    "/v1/models",
    guards=[require_api_key],
    opt=api("List the models", "Models", response=ModelPage, errors="either"),
)
async def list_models(
    request: Request[object, object, State], gateway: NamedDependency[GatewayContext]
) -> dict[str, Any]:
    raw_limit = request.query_params.get("limit")
    limit: int | None = None
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise BadRequestError("limit must be a whole number from 1 to 1000", param="limit")
        limit = int(raw_limit)
    return model_list(await gateway.client.models(), limit)


router = Router(path="/", route_handlers=[list_models], exception_handlers=any_dialect_exception_handlers)
