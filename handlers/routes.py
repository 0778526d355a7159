"""The route packages a handler process can serve, by name (``lingma-gateway handler ROUTE[,ROUTE]``).

Apart from the app factory so that the command line knows them without loading the HTTP stack.
"""

from __future__ import annotations

__all__ = ("ROUTES",)

ROUTES = ("openai_chat", "openai_responses", "anthropic_messages", "models", "admin", "metrics", "docs")
