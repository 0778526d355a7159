"""Request ids, HTTP metrics and the access log for every route, as one ASGI middleware.

The request id is taken from ``x-request-id`` (when it looks sane) or minted, set for the logs, passed to
the sidecar, and returned on every response. The access log has one line per request, in uvicorn's familiar
shape plus the duration and the instance (with ``LOG_JSON``, the same as fields); never a query string, a
header or a body, so never a key.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from common.log import REQUEST_ID
from handlers.body import mark_arrival

__all__ = ("HTTP_METRICS", "HttpMetrics", "RequestIdMiddleware")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("lingma_gateway.access")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_GROUPED = ("/internal/",)
"""Path prefixes whose routes share one label: the operator endpoints are counted together."""


def route_label(scope: Scope) -> str:
    """The matched route's path template (Litestar routes before this middleware runs), never the raw path,
    so the label set is the app's routes; a request no route matched is ``other``."""
    template = scope.get("path_template")
    if not isinstance(template, str) or not template:
        return "other"
    for prefix in _GROUPED:
        if template.startswith(prefix):
            return prefix.rstrip("/")
    return template


class HttpMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lingma_gateway_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lingma_gateway_http_request_seconds",
            "time to the end of the response, by route",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.first_byte = Histogram(
            "lingma_gateway_http_first_byte_seconds",
            "time to the first body byte (time to first token for streams), by route",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.unserved_tools = Counter(
            "lingma_gateway_unserved_tools",
            "offered tools left out because Lingma cannot serve their type (web_search, namespace, ...)",
            ["type"],
            registry=self.registry,
        )


HTTP_METRICS = HttpMetrics()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics = HTTP_METRICS) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if _SANE_ID.match(given) else "req_" + uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        mark_arrival(scope)
        route = route_label(scope)
        started = time.perf_counter()
        status = 500
        first = True
        instance = ""

        async def wrapped(message: Message) -> None:
            nonlocal status, first, instance
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                instance = next((v.decode("latin-1") for k, v in headers if k.lower() == b"x-lingma-instance"), "")
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and first and message.get("body"):
                first = False
                self.metrics.first_byte.labels(route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            _access(scope, route, status, elapsed, instance)
            REQUEST_ID.reset(token)


def _access(scope: Scope, route: str, status: int, elapsed: float, instance: str) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "-"
    method = scope.get("method", "-")
    path = str(scope.get("path", ""))[:256]
    access_log.info(
        '%s - "%s %s HTTP/%s" %d %.1fms instance=%s',
        peer,
        method,
        path,
        scope.get("http_version", "1.1"),
        status,
        elapsed * 1000,
        instance or "-",
        extra={
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 1),
            "instance": instance,
            "client": peer,
        },
    )
