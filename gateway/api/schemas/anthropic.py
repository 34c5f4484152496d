"""The Anthropic-compatible API's answers, as Anthropic's own API shapes them: the message,
the stream's events, the model list and the error body.

The stream's events other than text deltas are serialized from these models; a text delta
is a byte template (gateway/api/compat/anthropic.py text_frame), which
tests/api/test_schemas.py holds to AnthropicStreamFrame."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gateway.api.schemas.common import Schema


class AnthropicErrorDetail(Schema):
    type: str = Field(examples=["invalid_request_error"])
    message: str


class AnthropicError(Schema):
    """Anthropic's error body, from which the official SDK picks its exception class."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail


class AnthropicUsage(Schema):
    input_tokens: int = Field(description="the input apart from what the prompt cache held")
    output_tokens: int
    cache_creation_input_tokens: int = Field(default=0, description="input written to the cache")
    cache_read_input_tokens: int = Field(default=0, description="input read from the cache")


class AnthropicTextBlock(Schema):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(Schema):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = Field(description="hand the block back unchanged in a tool loop")


class RedactedThinkingBlock(Schema):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str = Field(description="the provider's encrypted reasoning")


class ToolUseBlock(Schema):
    type: Literal["tool_use"] = "tool_use"
    id: str = Field(examples=["toolu_01A09q90qw90lq917835lq9"])
    name: str
    input: dict[str, Any] = Field(description="the call's arguments; {} as its block starts")


AnthropicBlock = Annotated[
    AnthropicTextBlock | ThinkingBlock | RedactedThinkingBlock | ToolUseBlock,
    Field(discriminator="type"),
]


class AnthropicMessage(Schema):
    id: str = Field(examples=["msg_0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e"])
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[AnthropicBlock] = Field(
        description="thinking, redacted_thinking, text and tool_use blocks; none in message_start"
    )
    stop_reason: str | None = Field(
        description="end_turn | max_tokens | stop_sequence | tool_use | refusal | pause_turn; "
        "null in message_start",
        examples=["end_turn"],
    )
    stop_sequence: str | None = Field(description="the stop sequence that ended the answer")
    usage: AnthropicUsage


class MessageStart(Schema):
    type: Literal["message_start"] = "message_start"
    message: AnthropicMessage = Field(
        description="input_tokens is the gateway's estimate; message_delta has the count"
    )


class ContentBlockStart(Schema):
    type: Literal["content_block_start"] = "content_block_start"
    index: int = 0
    content_block: AnthropicBlock


class Ping(Schema):
    type: Literal["ping"] = "ping"


class TextDelta(Schema):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(Schema):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str = Field(description="the next fragment of the tool call's JSON input")


class ThinkingDelta(Schema):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(Schema):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


class ContentBlockDelta(Schema):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int = 0
    delta: Annotated[
        TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta, Field(discriminator="type")
    ]


class ContentBlockStop(Schema):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int = 0


class StopReason(Schema):
    stop_reason: str = Field(examples=["end_turn"])
    stop_sequence: str | None = None


class MessageDelta(Schema):
    type: Literal["message_delta"] = "message_delta"
    delta: StopReason
    usage: AnthropicUsage = Field(description="the provider's counts")


class MessageStop(Schema):
    type: Literal["message_stop"] = "message_stop"


AnthropicEventData = (
    MessageStart
    | ContentBlockStart
    | Ping
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | AnthropicError
)
AnthropicEvent = Annotated[AnthropicEventData, Field(discriminator="type")]


class AnthropicStreamFrame(Schema):
    """message_start, content_block_start, ping, content_block_delta..., content_block_stop,
    message_delta, message_stop; or `error`. The `event:` line names the data's type."""

    event: Literal[
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    ]
    data: AnthropicEvent

    @model_validator(mode="after")
    def _event_names_its_data(self) -> AnthropicStreamFrame:
        if self.event != self.data.type:
            raise ValueError(f"event {self.event!r} carries data of type {self.data.type!r}")
        return self


class AnthropicModel(Schema):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str = Field(
        json_schema_extra={"format": "date-time"},
        description="when the gateway began serving it",
    )
    lifecycle: Literal["active"] = "active"
    max_input_tokens: int | None = Field(description="its context window, when configured")
    max_tokens: int | None = Field(description="its output limit, when configured")


class AnthropicModelList(Schema):
    data: list[AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None
