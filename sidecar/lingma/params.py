"""The params of what the gateway sends Lingma: ``initialize``, ``chat/ask`` and ``tool/invokeResult``.

Always whole objects: Lingma decodes params into Go structs and rejects arrays or missing params
(docs/lingma-protocol.md §2).
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import Any

from common.settings import AskMode

__all__ = ("TOOL_UNAVAILABLE", "ask_params", "initialize_params", "tool_unavailable_result")

TOOL_UNAVAILABLE = "tool unavailable: the gateway has no IDE"


def initialize_params(work_dir: Path, *, name: str) -> dict[str, Any]:
    """The handshake (docs/lingma-protocol.md §3); a workspace folder avoids Lingma's ``workspacePath is empty``."""
    root = work_dir.resolve().as_uri()
    return {
        "processId": None,
        "clientInfo": {"name": "lingma-gateway", "version": _client_version()},
        "rootUri": root,
        "capabilities": {},
        "workspaceFolders": [{"uri": root, "name": work_dir.name or name}],
    }


def ask_params(
    *, request_id: str, question: str, model_key: str, session_id: str | None, is_reply: bool, mode: AskMode
) -> dict[str, Any]:
    """``chat/ask`` (docs/lingma-protocol.md §4.3), with project rules, ask-agent and auto-memory switched off."""
    return {
        "requestId": request_id,
        "sessionId": session_id or "",
        "isReply": is_reply,
        "questionText": question,
        "chatTask": "FREE_INPUT",
        "chatContext": None,
        "stream": True,
        "source": 1,
        "sessionType": "assistant" if mode == "agent" else "chat",
        "mode": mode,
        "taskDefinitionType": "",
        "extra": {"modelConfig": {"key": model_key}},
        "pluginPayloadConfig": {"isEnableProjectRule": False, "isEnableAskAgent": False, "isEnableAutoMemory": False},
        "customModel": None,
        "codeLanguage": "",
        "shellType": "",
        "targetAgent": "",
    }


def tool_unavailable_result(invoke: dict[str, Any]) -> dict[str, Any]:
    """The ``tool/invokeResult`` for a ``tool/invoke``: a gateway cannot run IDE tools (docs/lingma-protocol.md §7)."""
    return {
        "toolCallId": invoke.get("toolCallId") or "",
        "name": invoke.get("name") or "",
        "success": False,
        "errorMessage": TOOL_UNAVAILABLE,
        "result": {},
        "startTime": int(time.time() * 1000),
        "timeConsuming": 0,
    }


def _client_version() -> str:
    try:
        return metadata.version("lingma-gateway")
    except metadata.PackageNotFoundError:
        return "0"
