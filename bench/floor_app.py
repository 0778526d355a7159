"""The bare Litestar app of the route floor (bench/floor.py): one streaming POST route and nothing else.

A module of its own, without postponed annotations, because Litestar resolves a handler's annotations in
the globals of the module that defines it.
"""

from typing import Any

from litestar import Litestar, post
from litestar.response import Stream

__all__ = ("app",)


async def _body() -> Any:
    yield b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    yield b"data: [DONE]\n\n"


@post("/v1/chat/completions", status_code=200)
async def chat(data: dict[str, Any]) -> Stream:
    return Stream(_body(), media_type="text/event-stream")


app = Litestar([chat])
