"""OpenAI Responses wire types (docs/dialects.md §3): the request, the response object, its items and stream events.

Input items and tools are heterogeneous and partly unknown (Codex adds types over time), so the request keeps
them as ``msgspec.Raw`` and ``translate`` decodes each one by its ``type``; an unknown type is skipped, never
a 400. Unknown fields are ignored everywhere.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from common.conversation import TokenLimit

__all__ = (
    "ContentPart",
    "CustomFormat",
    "CustomTool",
    "CustomToolCallInput",
    "CustomToolCallItem",
    "CustomToolCallOutputInput",
    "FunctionCallInput",
    "FunctionCallItem",
    "FunctionCallOutputInput",
    "FunctionTool",
    "ImageUrlObject",
    "IncompleteDetails",
    "InputMessage",
    "InputTokensDetails",
    "ItemHead",
    "ItemStatus",
    "NestedFunction",
    "OutputItem",
    "OutputMessage",
    "OutputText",
    "OutputTokensDetails",
    "Reasoning",
    "ReasoningItem",
    "Response",
    "ResponseCompletedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseCreatedEvent",
    "ResponseCustomToolCallInputDeltaEvent",
    "ResponseCustomToolCallInputDoneEvent",
    "ResponseError",
    "ResponseFailedEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseReasoningSummaryPartAddedEvent",
    "ResponseReasoningSummaryPartDoneEvent",
    "ResponseReasoningSummaryTextDeltaEvent",
    "ResponseReasoningSummaryTextDoneEvent",
    "ResponseStreamEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseUsage",
    "ResponsesRequest",
    "SummaryText",
    "ToolChoiceObject",
    "ToolHead",
)

# --- request ------------------------------------------------------------------------------------------------


class ImageUrlObject(msgspec.Struct):
    url: str = ""


class ContentPart(msgspec.Struct):
    """One part of a message or tool output: ``input_text``, ``output_text``, ``input_image``, ``refusal``, …"""

    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | ImageUrlObject | None = None
    file_id: str | None = None


class ItemHead(msgspec.Struct):
    """Just enough of an input item to choose its decoder; an "easy" message has no ``type``."""

    type: str | None = None


class InputMessage(msgspec.Struct):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart] = ""


class FunctionCallInput(msgspec.Struct):
    call_id: str
    name: str
    arguments: str = "{}"


class FunctionCallOutputInput(msgspec.Struct):
    call_id: str
    output: str | list[ContentPart] = ""


class CustomToolCallInput(msgspec.Struct):
    call_id: str
    name: str
    input: str = ""


class CustomToolCallOutputInput(msgspec.Struct):
    call_id: str
    output: str | list[ContentPart] = ""


class ToolHead(msgspec.Struct):
    type: str = "function"


class NestedFunction(msgspec.Struct):
    name: str
    description: str | None = None
    parameters: dict[str, object] | None = None


class FunctionTool(msgspec.Struct):
    """A function tool: flat (Responses) or nested under ``function`` (tolerated Chat shape)."""

    name: str | None = None
    description: str | None = None
    parameters: dict[str, object] | None = None
    strict: bool | None = None
    function: NestedFunction | None = None


class CustomFormat(msgspec.Struct):
    type: str = "text"
    syntax: str | None = None
    definition: str | None = None


class CustomTool(msgspec.Struct):
    """A freeform tool (``apply_patch``): the model writes raw text, not JSON arguments."""

    name: str
    description: str | None = None
    format: CustomFormat | None = None


class ToolChoiceObject(msgspec.Struct, omit_defaults=True):
    type: str
    name: str | None = None


class Reasoning(msgspec.Struct):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(msgspec.Struct):
    model: str = ""
    input: str | list[msgspec.Raw] = ""
    instructions: str | None = None
    tools: list[msgspec.Raw] | None = None
    tool_choice: str | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    reasoning: Reasoning | None = None
    text: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    """Echoed as given (``format``, ``verbosity``); Lingma has no structured-output switch."""
    max_output_tokens: TokenLimit | None = None
    temperature: float | None = None
    top_p: float | None = None
    truncation: str | None = None
    metadata: dict[str, str] | None = None
    prompt_cache_key: str | None = None
    user: str | None = None


# --- response object and items ------------------------------------------------------------------------------

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputText(msgspec.Struct, tag="output_text", tag_field="type"):
    text: str
    annotations: list[object] = msgspec.field(default_factory=list)
    logprobs: list[object] = msgspec.field(default_factory=list)


class SummaryText(msgspec.Struct, tag="summary_text", tag_field="type"):
    text: str


class OutputMessage(msgspec.Struct, tag="message", tag_field="type"):
    id: str
    status: ItemStatus
    content: list[OutputText]
    role: Literal["assistant"] = "assistant"


class FunctionCallItem(msgspec.Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


class CustomToolCallItem(msgspec.Struct, tag="custom_tool_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    input: str
    status: ItemStatus


class ReasoningItem(msgspec.Struct, tag="reasoning", tag_field="type"):
    id: str
    summary: list[SummaryText]
    status: ItemStatus


OutputItem = OutputMessage | FunctionCallItem | CustomToolCallItem | ReasoningItem


class ResponseError(msgspec.Struct):
    code: str
    message: str


class IncompleteDetails(msgspec.Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class Response(msgspec.Struct, kw_only=True):
    """The response object (docs/dialects.md §3.2); request settings are echoed as the API does."""

    id: str
    object_: Literal["response"] = msgspec.field(default="response", name="object")
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    output: list[OutputItem] = msgspec.field(default_factory=list)
    parallel_tool_calls: bool = True
    tool_choice: str | ToolChoiceObject = "auto"
    tools: list[msgspec.Raw] = msgspec.field(default_factory=list)
    model: str
    usage: ResponseUsage | None = None
    previous_response_id: str | None = None
    reasoning: Reasoning = msgspec.field(default_factory=Reasoning)
    store: bool = True
    text: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b'{"format":{"type":"text"}}'))
    truncation: str = "disabled"
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None


# --- stream events (docs/dialects.md §3.3) ------------------------------------------------------------------


class _Event(msgspec.Struct, tag_field="type", kw_only=True):
    sequence_number: int


class ResponseCreatedEvent(_Event, tag="response.created"):
    response: Response


class ResponseInProgressEvent(_Event, tag="response.in_progress"):
    response: Response


class ResponseCompletedEvent(_Event, tag="response.completed"):
    response: Response


class ResponseIncompleteEvent(_Event, tag="response.incomplete"):
    response: Response


class ResponseFailedEvent(_Event, tag="response.failed"):
    response: Response


class ResponseOutputItemAddedEvent(_Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class ResponseOutputItemDoneEvent(_Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ResponseContentPartAddedEvent(_Event, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ResponseContentPartDoneEvent(_Event, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ResponseTextDeltaEvent(_Event, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[object] = msgspec.field(default_factory=list)


class ResponseTextDoneEvent(_Event, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[object] = msgspec.field(default_factory=list)


class ResponseFunctionCallArgumentsDeltaEvent(_Event, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(_Event, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    arguments: str
    name: str


class ResponseCustomToolCallInputDeltaEvent(_Event, tag="response.custom_tool_call_input.delta"):
    item_id: str
    output_index: int
    delta: str


class ResponseCustomToolCallInputDoneEvent(_Event, tag="response.custom_tool_call_input.done"):
    item_id: str
    output_index: int
    input: str


class ResponseReasoningSummaryPartAddedEvent(_Event, tag="response.reasoning_summary_part.added"):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ResponseReasoningSummaryPartDoneEvent(_Event, tag="response.reasoning_summary_part.done"):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ResponseReasoningSummaryTextDeltaEvent(_Event, tag="response.reasoning_summary_text.delta"):
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ResponseReasoningSummaryTextDoneEvent(_Event, tag="response.reasoning_summary_text.done"):
    item_id: str
    output_index: int
    summary_index: int
    text: str


ResponseStreamEvent = (
    ResponseCreatedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseIncompleteEvent
    | ResponseFailedEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseCustomToolCallInputDeltaEvent
    | ResponseCustomToolCallInputDoneEvent
    | ResponseReasoningSummaryPartAddedEvent
    | ResponseReasoningSummaryPartDoneEvent
    | ResponseReasoningSummaryTextDeltaEvent
    | ResponseReasoningSummaryTextDoneEvent
)
