"""Emulated tool calling: the prompt contract that offers tools, and the recognisers that find calls in replies."""

from .calls import OfferedTool, RecognisedCall, Recogniser, offered_tools
from .contract import (
    CALL_FORMAT_DOC,
    render_contract,
    render_tool_call,
    render_tool_calls,
    render_tool_result,
)
from .stream import CallOut, Out, TextOut, ToolCallFilter

__all__ = (
    "CALL_FORMAT_DOC",
    "CallOut",
    "OfferedTool",
    "Out",
    "RecognisedCall",
    "Recogniser",
    "TextOut",
    "ToolCallFilter",
    "offered_tools",
    "render_contract",
    "render_tool_call",
    "render_tool_calls",
    "render_tool_result",
)
