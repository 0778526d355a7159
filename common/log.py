"""Logging set-up shared by both sides: plain or JSON lines, with the request id carried along.

Every line names the process that wrote it (``serve``, ``handler`` or ``sidecar``, and its pid), because a
bundled gateway writes the lines of two processes to one stream.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from typing import NoReturn

__all__ = ("REQUEST_ID", "exit_now", "setup_logging")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "proc": self.component,
            "pid": record.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str, *, json_lines: bool, component: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json_lines:
        handler.setFormatter(_JsonFormatter(component))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s {component}[%(process)d] [%(request_id)s] %(name)s: %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own start-up chatter is INFO on "uvicorn.error"; the gateway says what it listens on itself.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))


def exit_now(code: int) -> NoReturn:
    """End the process at once after a clean shutdown: flush logs and stdio, skip the interpreter's teardown.

    Everything that matters is closed by then (the socket, SQLite, the children). The teardown would free
    every object one by one (the tokenizer's 150,000-entry table among them), which kept a process that had
    already stopped alive for up to two seconds on a busy machine.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
