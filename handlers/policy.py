"""One input policy for every dialect, decided once (``docs/input-policy.md`` says why each rule is what it is).

Every translator calls these, so the same mistake gets the same 400 (in the caller's envelope) whichever API
it came through:

- the body is JSON: a ``Content-Type`` other than JSON is a 415;
- sampling numbers are finite and inside the dialect's documented range; ``n`` (one answer only) is 1;
- a tool has a non-empty name; a named or forced ``tool_choice`` needs tools;
- content of a type the gateway does not know is skipped, as is its custom; a request left with nothing usable
  is a 400 that names the skipped types;
- JSON that the gateway passes on as text (tool schemas, earlier call arguments) nests at most
  ``MAX_JSON_DEPTH`` levels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from itertools import accumulate

from common.conversation import Conversation, ImagePart, Message, TextPart, ToolChoice, ToolSpec
from common.errors import BadRequestError

__all__ = (
    "MAX_JSON_DEPTH",
    "check_content_type",
    "check_conversation",
    "check_sampling",
    "check_single_choice",
    "json_depth",
    "no_usable_content",
    "resolve_tool_choice",
)

MAX_JSON_DEPTH = 64
"""Real tool schemas nest a dozen levels; this leaves room and keeps every later JSON step far from recursion."""

UNSUPPORTED_MEDIA_TYPE = 415

_JSON_MEDIA = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_KEEP_BRACKETS = {code: None for code in range(128) if code not in _DEPTH_STEP}


def check_content_type(header: str | None) -> None:
    """A body declared as anything but JSON is refused, not guessed at (a form post is not a JSON object)."""
    if header is None or not header.strip():
        return
    media = header.split(";", 1)[0].strip().lower()
    if not _JSON_MEDIA.match(media):
        raise BadRequestError(
            f"unsupported Content-Type {media!r}: send the body as application/json",
            param="content-type",
            upstream_status=UNSUPPORTED_MEDIA_TYPE,
        )


def check_sampling(temperature: float | None, top_p: float | None, *, temperature_max: float) -> None:
    """The dialect's documented ranges; a number outside them is the caller's mistake, never clamped."""
    if temperature is not None and not (math.isfinite(temperature) and 0.0 <= temperature <= temperature_max):
        raise BadRequestError(
            f"temperature must be a number between 0 and {temperature_max:g}, got {temperature!r}",
            param="temperature",
        )
    if top_p is not None and not (math.isfinite(top_p) and 0.0 <= top_p <= 1.0):
        raise BadRequestError(f"top_p must be a number between 0 and 1, got {top_p!r}", param="top_p")


def check_single_choice(n: int | None) -> None:
    """One answer per request: asking for more is refused rather than silently answered with one."""
    if n is not None and n != 1:
        raise BadRequestError(f"n must be 1: this gateway returns exactly one choice, got {n}", param="n")


def resolve_tool_choice(choice: ToolChoice, tools: Sequence[ToolSpec]) -> ToolChoice:
    """A choice that needs a tool (named, required/any) with no tools is an error; otherwise no tools means none."""
    if not tools:
        if choice.mode == "named":
            raise BadRequestError(
                f"tool_choice names {choice.name!r}, but the request has no tools", param="tool_choice"
            )
        if choice.mode == "required":
            raise BadRequestError("tool_choice requires a tool call, but the request has no tools", param="tool_choice")
        return ToolChoice(mode="none")
    return choice.require_offered(tools)


def json_depth(text: str) -> int:
    """How deeply a JSON text nests (strings ignored), without parsing it: no recursion, whatever the input."""
    brackets = _STRINGS.sub("", text).translate(_KEEP_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(_DEPTH_STEP.get(ord(c), 0) for c in brackets))


def _check_depth(text: str, where: str) -> None:
    if len(text) > 2 * MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise BadRequestError(f"{where} nests JSON deeper than {MAX_JSON_DEPTH} levels", param=where)


def check_conversation(conv: Conversation, *, skipped: Iterable[str] = ()) -> Conversation:
    """The rules every dialect shares, on the normalised conversation; returns it for chaining."""
    for index, tool in enumerate(conv.tools):
        if not tool.name.strip():
            raise BadRequestError(f"tools[{index}] has an empty name: every tool needs one", param="tools")
        _check_depth(tool.parameters, "tools")
    usable = False
    for message in conv.messages:
        for call in message.tool_calls:
            _check_depth(call.arguments, "messages")
        usable = usable or _usable(message)
    kinds = sorted(set(skipped))
    if kinds and not usable and not conv.previous_response_id:
        raise no_usable_content(kinds)
    return conv


def no_usable_content(skipped: Iterable[str]) -> BadRequestError:
    """What a request whose every message was of unknown types hears: which types, not a vague 'no messages'."""
    kinds = ", ".join(repr(k) for k in sorted(set(skipped)))
    return BadRequestError(
        f"the request has no message content this gateway can use: content of type {kinds} is not supported "
        "and was skipped",
        param="messages",
    )


def _usable(message: Message) -> bool:
    if message.tool_calls or message.role == "tool":
        return True
    if message.role in ("system", "developer"):
        return False
    return any(isinstance(p, ImagePart) or (isinstance(p, TextPart) and p.text) for p in message.content)
