"""``GET /v1/models`` as typed shapes, for the API description: one page readable by OpenAI and Anthropic."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ("ModelPage",)


class ModelEntry(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    type: Literal["model"]
    display_name: str
    created_at: str
    context_window: int | None = None


class ModelPage(msgspec.Struct, kw_only=True):
    object: Literal["list"]
    data: list[ModelEntry]
    has_more: bool
    first_id: str | None
    last_id: str | None
