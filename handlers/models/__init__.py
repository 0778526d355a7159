"""The model list."""

from handlers.models.routes import router

__all__ = ("router",)
