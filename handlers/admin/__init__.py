"""``/internal/*``: operator endpoints behind the admin token."""

from handlers.admin.routes import router

__all__ = ("router",)
