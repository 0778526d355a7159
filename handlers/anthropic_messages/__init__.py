"""Anthropic Messages and token counting."""

from handlers.anthropic_messages.routes import router

__all__ = ("router",)
