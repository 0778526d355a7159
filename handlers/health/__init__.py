"""Liveness and readiness probes."""

from handlers.health.routes import router

__all__ = ("router",)
