"""A Responses request, translated into the internal conversation, and the response skeleton it sets.

References: docs/dialects.md §3.1 (the request) and §3.2 (the response object echoes the request's settings).
"""

from __future__ import annotations

import json
from typing import TypeVar

import msgspec

from common.conversation import Conversation, ImagePart, Message, Part, TextPart, ToolCallRecord, ToolChoice, ToolSpec
from common.errors import BadRequestError
from handlers.openai_responses.schema import (
    ContentPart,
    CustomTool,
    CustomToolCallInput,
    CustomToolCallOutputInput,
    FunctionCallInput,
    FunctionCallOutputInput,
    FunctionTool,
    ImageUrlObject,
    InputMessage,
    ItemHead,
    Reasoning,
    Response,
    ResponsesRequest,
    ToolChoiceObject,
    ToolHead,
)
from handlers.policy import check_conversation, check_sampling, no_usable_content, resolve_tool_choice
from handlers.tool_ids import internal_id

__all__ = ("response_skeleton", "to_conversation", "unserved_tool_types")

T = TypeVar("T")

GRAMMAR_SUMMARY_LIMIT = 600
"""Characters of a custom tool's grammar quoted in its description; the contract trims long descriptions."""
SERVED_TOOL_TYPES = frozenset({"function", "custom"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})
_DEFAULT_TEXT = msgspec.Raw(b'{"format":{"type":"text"}}')


def _decode(raw: msgspec.Raw, kind: type[T], where: str) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadRequestError(f"invalid {where}: {exc}", param=where) from None


def _image_source(part: ContentPart) -> str:
    url = part.image_url.url if isinstance(part.image_url, ImageUrlObject) else part.image_url
    if url:
        # A data URL is kept as its media type only: the payload never travels to the sidecar.
        return url.split(",", 1)[0] if url.startswith("data:") else url
    return f"file:{part.file_id}" if part.file_id else ""


def _parts(content: str | list[ContentPart]) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    out: list[Part] = []
    for part in content:
        if part.type in _TEXT_PARTS and part.text is not None:
            out.append(TextPart(part.text))
        elif part.type == "refusal" and part.refusal is not None:
            out.append(TextPart(part.refusal))
        elif part.type == "input_image":
            out.append(ImagePart(_image_source(part)))
    return out


def _output_parts(output: str | list[ContentPart]) -> list[Part]:
    """Tool output: text as is; an image becomes a placeholder the model can read (Lingma takes no images)."""
    out: list[Part] = []
    for part in _parts(output):
        if isinstance(part, ImagePart):
            where = f" ({part.source})" if part.source and not part.source.startswith("data:") else ""
            out.append(TextPart(f"[image omitted{where}: the tool returned an image, which cannot be shown here]"))
        else:
            out.append(part)
    return out


class _History:
    """Builds the message list; consecutive calls join the assistant message they follow."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._names: dict[str, str] = {}

    def message(self, item: InputMessage) -> None:
        self.messages.append(Message(role=item.role, content=_parts(item.content)))

    def call(self, record: ToolCallRecord) -> None:
        self._names[record.id] = record.name
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "assistant":
            self.messages[-1] = msgspec.structs.replace(last, tool_calls=[*last.tool_calls, record])
        else:
            self.messages.append(Message(role="assistant", tool_calls=[record]))

    def result(self, call_id: str, output: str | list[ContentPart]) -> None:
        ident = internal_id(call_id)
        self.messages.append(
            Message(role="tool", content=_output_parts(output), tool_call_id=ident, name=self._names.get(ident))
        )


def _add_item(history: _History, raw: msgspec.Raw, index: int, skipped: list[str]) -> None:
    where = f"input[{index}]"
    kind = _decode(raw, ItemHead, where).type
    if kind in (None, "message"):
        history.message(_decode(raw, InputMessage, where))
    elif kind == "function_call":
        fc = _decode(raw, FunctionCallInput, where)
        history.call(ToolCallRecord(id=internal_id(fc.call_id), name=fc.name, arguments=fc.arguments or "{}"))
    elif kind == "custom_tool_call":
        ctc = _decode(raw, CustomToolCallInput, where)
        history.call(ToolCallRecord(id=internal_id(ctc.call_id), name=ctc.name, arguments=ctc.input, kind="custom"))
    elif kind == "function_call_output":
        fco = _decode(raw, FunctionCallOutputInput, where)
        history.result(fco.call_id, fco.output)
    elif kind == "custom_tool_call_output":
        cto = _decode(raw, CustomToolCallOutputInput, where)
        history.result(cto.call_id, cto.output)
    else:
        # Anything else (reasoning, item_reference, web_search_call, compaction, …) carries nothing Lingma can use.
        skipped.append(kind)


def _messages(req: ResponsesRequest, skipped: list[str]) -> list[Message]:
    history = _History()
    if isinstance(req.input, str):
        if req.input:
            history.messages.append(Message(role="user", content=[TextPart(req.input)]))
    else:
        for index, raw in enumerate(req.input):
            _add_item(history, raw, index, skipped)
    return history.messages


def _custom_description(tool: CustomTool) -> str:
    text = tool.description or ""
    fmt = tool.format
    if fmt is None or fmt.type != "grammar" or not fmt.definition:
        return (text + "\n\nInput: free-form text.").strip()
    grammar = fmt.definition
    if len(grammar) > GRAMMAR_SUMMARY_LIMIT:
        grammar = grammar[:GRAMMAR_SUMMARY_LIMIT].rsplit("\n", 1)[0] + "\n…"
    syntax = fmt.syntax or "grammar"
    return f"{text}\n\nInput: raw text (not JSON) matching this {syntax} grammar:\n{grammar}".strip()


def _tool_spec(raw: msgspec.Raw, index: int) -> ToolSpec | None:
    where = f"tools[{index}]"
    kind = _decode(raw, ToolHead, where).type
    if kind == "custom":
        custom = _decode(raw, CustomTool, where)
        return ToolSpec(name=custom.name, description=_custom_description(custom), kind="custom")
    if kind != "function":
        return None
    tool = _decode(raw, FunctionTool, where)
    name, description, parameters = tool.name, tool.description, tool.parameters
    if tool.function is not None:
        name = name or tool.function.name
        description = description or tool.function.description
        parameters = parameters if parameters is not None else tool.function.parameters
    if not name:
        raise BadRequestError(f"{where} has an empty name: every tool needs one", param="tools")
    return ToolSpec(
        name=name,
        description=description or "",
        parameters=json.dumps(parameters or {}, sort_keys=True, ensure_ascii=False),
    )


def _tools(req: ResponsesRequest) -> list[ToolSpec]:
    return [spec for index, raw in enumerate(req.tools or []) if (spec := _tool_spec(raw, index)) is not None]


def unserved_tool_types(req: ResponsesRequest) -> list[str]:
    """The ``type`` of each offered tool that Lingma cannot serve (web_search, namespace, …); they are left out."""
    out: list[str] = []
    for index, raw in enumerate(req.tools or []):
        kind = _decode(raw, ToolHead, f"tools[{index}]").type
        if kind not in SERVED_TOOL_TYPES:
            out.append(kind)
    return out


def _tool_choice(raw: str | ToolChoiceObject | None) -> ToolChoice:
    if raw is None or raw == "auto":
        return ToolChoice()
    if isinstance(raw, ToolChoiceObject):
        if raw.type in ("function", "custom") and raw.name:
            return ToolChoice(mode="named", name=raw.name)
        return ToolChoice()  # hosted-tool and allowed_tools choices: nothing narrower to enforce
    if raw == "none":
        return ToolChoice(mode="none")
    if raw == "required":
        return ToolChoice(mode="required")
    raise BadRequestError(
        f"unknown tool_choice {raw!r}: use none, auto, required or a named function", param="tool_choice"
    )


def to_conversation(
    req: ResponsesRequest,
    *,
    key_fingerprint: str,
    affinity: str | None,
    response_id: str,
) -> Conversation:
    """Normalise a request; ``affinity`` is the client's session header, if any (fallbacks: docs/architecture.md §4.2).

    Every servable tool is passed on: the sidecar applies ``TOOL_FORWARD_ENABLED`` and ``TOOL_ALLOWLIST``.
    """
    if not req.model:
        raise BadRequestError("model must not be empty", param="model")
    check_sampling(req.temperature, req.top_p, temperature_max=2.0)
    skipped: list[str] = []
    messages = _messages(req, skipped)
    if not messages:
        if skipped:
            raise no_usable_content(skipped)
        raise BadRequestError("input must contain at least one message or tool output", param="input")
    if req.instructions:
        messages.insert(0, Message(role="system", content=[TextPart(req.instructions)]))
    tools = _tools(req)
    choice = resolve_tool_choice(_tool_choice(req.tool_choice), tools)
    conversation = Conversation(
        model=req.model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        max_tokens=req.max_output_tokens,
        want_reasoning=req.reasoning is not None,
        affinity=affinity or req.prompt_cache_key or req.previous_response_id or req.user,
        api_key_fingerprint=key_fingerprint,
        previous_response_id=req.previous_response_id,
        response_id=response_id,
    )
    return check_conversation(conversation, skipped=skipped)


def response_skeleton(req: ResponsesRequest, *, response_id: str, created_at: int) -> Response:
    """The response object before any output: the request's settings echoed, ``status: in_progress``."""
    return Response(
        id=response_id,
        created_at=created_at,
        status="in_progress",
        instructions=req.instructions,
        parallel_tool_calls=True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        tool_choice=req.tool_choice if req.tool_choice is not None else "auto",
        tools=list(req.tools or []),
        model=req.model,
        previous_response_id=req.previous_response_id,
        reasoning=req.reasoning or Reasoning(),
        store=True if req.store is None else req.store,
        text=_DEFAULT_TEXT if bytes(req.text) == b"null" else req.text,
        truncation=req.truncation or "disabled",
        metadata=req.metadata or {},
        temperature=req.temperature,
        top_p=req.top_p,
        max_output_tokens=req.max_output_tokens,
    )
