"""What a route tells the API description about itself: attached as ``opt=api(...)`` on its decorator.

Routes decode their bodies themselves (size limit, gzip/zstd, errors in the caller's dialect; see
``handlers.body.json_body``), so Litestar's own description would not know them. A route declares its body
type in its signature (``payload: <Struct>``) and names its response type here, and ``handlers.docs`` turns
both into ``/openapi.json`` with msgspec's own schema generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec

__all__ = ("AnthropicError", "ApiDoc", "Auth", "OpenAIError", "api")

Auth = Literal["api_key", "admin", "metrics", "none"]


@dataclass(frozen=True)
class ApiDoc:
    summary: str
    tag: str
    request: type | None = None
    response: type | None = None
    media_type: str = "application/json"
    """The success answer's media type (``response`` describes it when it is JSON)."""
    streams: bool = False
    """With ``stream: true`` the answer is ``text/event-stream`` instead."""
    errors: Literal["openai", "anthropic", "either"] | None = "openai"
    auth: Auth = "api_key"
    status: int = 200


def api(
    summary: str,
    tag: str,
    *,
    request: type | None = None,
    response: type | None = None,
    media_type: str = "application/json",
    streams: bool = False,
    errors: Literal["openai", "anthropic", "either"] | None = "openai",
    auth: Auth = "api_key",
    status: int = 200,
) -> dict[str, object]:
    """The ``opt`` mapping for a route decorator."""
    return {"api": ApiDoc(summary, tag, request, response, media_type, streams, errors, auth, status)}


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(msgspec.Struct):
    """The error envelope of the OpenAI routes (and of the operator routes)."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicError(msgspec.Struct):
    """The error envelope of the Anthropic routes."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None = None
