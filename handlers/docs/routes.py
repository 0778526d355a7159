"""``/openapi.json`` and ``/docs``: the API description and Swagger UI, served from files in the package.

The page loads nothing from elsewhere (a Content-Security-Policy of ``'self'`` says so to the browser), so it
works on a machine without internet access.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader, State
from litestar.static_files import create_static_files_router

from handlers.docs.spec import build_openapi

__all__ = ("router",)

ASSETS = Path(__file__).resolve().parent / "static"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"

_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lingma-gateway API</title>
<link rel="icon" type="image/png" href="/docs/assets/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
"""


@get("/openapi.json", cache=False)
async def openapi(request: Request[object, object, State]) -> Response[bytes]:
    state = request.app.state
    body: bytes | None = state.get("openapi_document")
    if body is None:
        body = msgspec.json.encode(build_openapi(request.app))
        state["openapi_document"] = body
    return Response(body, media_type="application/json")


@get("/docs")
async def docs() -> Response[bytes]:
    return Response(_PAGE, media_type="text/html", headers={"content-security-policy": CSP})


assets = create_static_files_router(
    path="/docs/assets",
    directories=[ASSETS],
    name="docs_assets",
    cache_control=CacheControlHeader(max_age=3600),
    include_in_schema=False,
)

router = Router(path="/", route_handlers=[openapi, docs, assets])
