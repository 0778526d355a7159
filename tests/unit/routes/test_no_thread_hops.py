"""Nothing on a request's path makes Litestar hop to a worker thread.

Litestar runs a plain-function guard, dependency or handler in a thread (``sync_to_thread``): a thread
hop per request for work that never blocks. Every guard the app routes through must therefore be a
coroutine function, and every dependency and handler a coroutine function or marked to run in place.
"""

from __future__ import annotations

import inspect

from litestar.routes import HTTPRoute

from common.settings import Settings
from handlers.app import create_app


def test_every_guard_dependency_and_handler_is_a_coroutine() -> None:
    app = create_app(Settings())
    blocking: list[str] = []
    handlers = [h for route in app.routes if isinstance(route, HTTPRoute) for h in route.route_handlers]
    assert len(handlers) > 10
    for handler in handlers:
        where = f"{handler.paths} {handler.handler_name}"
        if not inspect.iscoroutinefunction(handler.fn) and handler.sync_to_thread:
            blocking.append(f"{where}: the handler")
        for guard in handler.guards or []:
            if not inspect.iscoroutinefunction(guard):
                blocking.append(f"{where}: guard {guard.__name__}")
        for name, provider in handler.resolve_dependencies().items():
            if provider.sync_to_thread and not inspect.iscoroutinefunction(provider.dependency):
                blocking.append(f"{where}: dependency {name}")
    assert blocking == []
