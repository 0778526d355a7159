"""``GET /metrics``: Prometheus text."""

from handlers.metrics.routes import router

__all__ = ("router",)
