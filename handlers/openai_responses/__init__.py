"""OpenAI Responses (the Codex CLI's API)."""

from handlers.openai_responses.routes import router

__all__ = ("router",)
