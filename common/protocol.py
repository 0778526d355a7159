"""The sidecar protocol: typed requests from handlers, typed frames back.

A connection opens with ``Hello``; then each request gets either one reply frame (unary operations) or,
for ``Complete``, one ``Started``, any number of event frames and exactly one terminal frame
(``Finished`` or ``Failed``). Fields are only ever added, with defaults, so a newer minor version on
either side is accepted.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from common.conversation import Conversation
from common.errors import Failed
from common.stats import StatsReport

__all__ = (
    "PROTOCOL_MAJOR",
    "PROTOCOL_MINOR",
    "AdminRequest",
    "AdminResult",
    "Complete",
    "CountTokens",
    "Event",
    "ExportSession",
    "Failed",
    "Finished",
    "GetStats",
    "Hello",
    "HelloOk",
    "ImportSession",
    "ListModels",
    "LoginCallback",
    "LoginStart",
    "LoginStatus",
    "LoginUrl",
    "ModelInfo",
    "ModelList",
    "Ping",
    "Pong",
    "RawModels",
    "RawResult",
    "ReasoningDelta",
    "Reply",
    "Request",
    "Started",
    "Stats",
    "TextDelta",
    "TokenCount",
    "ToolCall",
    "Usage",
    "decode_reply",
    "decode_request",
    "encode",
)

PROTOCOL_MAJOR = 2
PROTOCOL_MINOR = 1
"""1.1: ``HelloOk`` names the sidecar's pid and data dir, so ``serve`` can tell its own sidecar from another's.
1.2: the login and session-bundle operations (``LoginStart`` … ``ImportSession``, ``AdminResult``).
2.0: ``Stats`` carries the stats object as typed fields (``common/stats.py``) instead of JSON text.
2.1: an instance's ``probes`` count the probes excused as busy (``busy_total``)."""


class _Op(msgspec.Struct, tag_field="op", kw_only=True, omit_defaults=True):
    pass


class Hello(_Op, tag="hello"):
    major: int
    minor: int


class Complete(_Op, tag="complete"):
    conversation: Conversation
    request_id: str = ""
    arrived_at: float = 0.0
    """Unix time the request arrived at the handler (0: unknown); the queue wait counts from it. Handler and
    sidecar share a host (the socket is a Unix socket), so they share a clock."""


class CountTokens(_Op, tag="count_tokens"):
    conversation: Conversation


class ListModels(_Op, tag="list_models"):
    pass


class RawModels(_Op, tag="raw_models"):
    instance: str | None = None


class Ping(_Op, tag="ping"):
    pass


class GetStats(_Op, tag="get_stats"):
    pass


class LoginStart(_Op, tag="login_start"):
    """Start a browser login (an admin's start: it runs after ``login_failed`` too)."""

    instance: str | None = None
    show_browser: bool = False
    request_id: str = ""


class LoginStatus(_Op, tag="login_status"):
    pass


class LoginUrl(_Op, tag="login_url"):
    """A fresh login URL for a person to open (when no browser can run beside the gateway)."""

    instance: str | None = None


class LoginCallback(_Op, tag="login_callback"):
    """The callback URL a person's browser reached, handed to the instance's Lingma."""

    instance: str
    url: str


class ExportSession(_Op, tag="session_export"):
    instance: str | None = None
    request_id: str = ""


class ImportSession(_Op, tag="session_import"):
    instance: str
    bundle_b64: str


Request = (
    Hello
    | Complete
    | CountTokens
    | ListModels
    | RawModels
    | Ping
    | GetStats
    | LoginStart
    | LoginStatus
    | LoginUrl
    | LoginCallback
    | ExportSession
    | ImportSession
)
AdminRequest = LoginStart | LoginStatus | LoginUrl | LoginCallback | ExportSession | ImportSession


class _Frame(msgspec.Struct, tag_field="t", kw_only=True, omit_defaults=True):
    pass


class HelloOk(_Frame, tag="hello_ok"):
    major: int
    minor: int
    pid: int = 0
    """The sidecar's process id (0 from a 1.0 sidecar)."""
    data_dir: str = ""
    """The absolute data dir the sidecar serves ("" from a 1.0 sidecar)."""


class Started(_Frame, tag="started"):
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    instance: str = ""
    session: Literal["fresh", "reused"] = "fresh"


class TextDelta(_Frame, tag="text"):
    text: str


class ReasoningDelta(_Frame, tag="reasoning"):
    text: str


class ToolCall(_Frame, tag="tool_call"):
    index: int
    id: str
    name: str
    kind: Literal["function", "custom"] = "function"
    arguments: str = ""
    """JSON text for a function tool, raw text for a custom tool."""


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


class Finished(_Frame, tag="finished"):
    reason: Literal["stop", "tool_calls", "length", "cancelled"] = "stop"
    usage: Usage = Usage()


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    key: str
    display_name: str = ""
    is_default: bool = False
    is_reasoning: bool = False
    is_vision: bool = False
    context_window: int | None = None


class ModelList(_Frame, tag="models"):
    models: list[ModelInfo]


class RawResult(_Frame, tag="raw"):
    json: str
    """Lingma's own answer passed through as text, unchanged (``raw_models``)."""


class Pong(_Frame, tag="pong"):
    ready: bool
    instances_ready: int = 0


class Stats(_Frame, tag="stats"):
    report: StatsReport


class TokenCount(_Frame, tag="token_count"):
    input_tokens: int


class AdminResult(_Frame, tag="admin"):
    """An operator answer: the HTTP status it stands for and its JSON body (never a secret, except an export)."""

    status: int
    json: str


Event = Started | TextDelta | ReasoningDelta | ToolCall | Finished | Failed
Reply = (
    HelloOk | Started | TextDelta | ReasoningDelta | ToolCall | Finished | Failed | ModelList | RawResult | Pong | Stats
) | (TokenCount | AdminResult)

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


def encode(msg: Request | Reply) -> bytes:
    return _encoder.encode(msg)


def decode_request(body: bytes) -> Request:
    request: Request = _request_decoder.decode(body)
    return request


def decode_reply(body: bytes) -> Reply:
    reply: Reply = _reply_decoder.decode(body)
    return reply
