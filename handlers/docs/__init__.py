"""The API description (``/openapi.json``) and its offline Swagger UI page (``/docs``)."""

from handlers.docs.routes import router

__all__ = ("router",)
