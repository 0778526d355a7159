"""``/status``: the operator's HTML page, behind the admin token exchanged for a session cookie."""

from handlers.status.routes import router

__all__ = ("router",)
