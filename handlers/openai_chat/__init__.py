"""OpenAI Chat Completions."""

from handlers.openai_chat.routes import router

__all__ = ("router",)
