"""The chat stream of the gateway's own API: the data of its `start`, `content`, `error` and
`end` events, the frames that carry them, and the answer to a stop request.

Start, error and end data are serialized from these models (once per stream); a content
frame is a byte template (gateway/api/sse.py ContentFrames), which tests/api/test_schemas.py
holds to ContentFrame."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from gateway.api.schemas.common import FinishReason, PolicyEvent, Schema, empty, is_none, is_true


def message_id_field() -> Any:
    return Field(
        description="the assistant message's id", examples=["0b7c6a5e-8d2f-4a51-9a0e-2f4c1f7f9d3e"]
    )


class StreamStart(Schema):
    message_id: str = message_id_field()
    conversation_id: str | None
    chat_session_id: str | None
    model: str = Field(description="the model answering", examples=["gpt-4o-mini"])
    user_message_id: str | None = Field(description="the stored prompt's id")
    resume_token: str | None = Field(
        None,
        exclude_if=is_none,
        description="lets GET .../stream attach without a bearer token "
        "(`?resume_token=`), for this message only",
    )


class StreamContent(Schema):
    delta: str = Field(description="the next piece of the answer", examples=["Hel"])


class StreamToolCall(Schema):
    """A piece of a tool call the model makes. Its first piece carries the call's id and
    the tool's name; the next ones the following fragment of its JSON arguments (split
    anywhere, even inside a string): a call's arguments are its pieces' `arguments` joined,
    by `index`."""

    index: int = Field(description="the call's number in this answer, from 0", ge=0)
    id: str | None = Field(
        None, exclude_if=is_none, description="on the first piece", examples=["call_5b0f1c"]
    )
    name: str | None = Field(
        None, exclude_if=is_none, description="on the first piece", examples=["send_email"]
    )
    arguments: str = Field(description="the next fragment of the JSON arguments")


class StreamError(Schema):
    code: str = Field(
        description="policy_blocked | provider_error | producer_lost | ...",
        examples=["provider_error"],
    )
    message: str


class StreamUsage(Schema):
    input_tokens: int
    output_tokens: int
    estimated: bool = Field(
        False, exclude_if=empty, description="counted by the gateway: the provider never said"
    )


class ConversationUsage(Schema):
    """The conversation's running totals after this answer."""

    tokens_in: int
    tokens_out: int
    cost: float = Field(description="USD so far, each answer priced when it was recorded")


class StreamEnd(Schema):
    message_id: str = message_id_field()
    finish_reason: FinishReason
    usage: StreamUsage
    conversation_usage: ConversationUsage | None = Field(None, exclude_if=is_none)
    policy: list[PolicyEvent] = Field(default_factory=list, exclude_if=empty)
    stored: bool = Field(
        True,
        exclude_if=is_true,
        description="false: Redis was away when the answer ended; the gateway keeps "
        "retrying the write",
    )


class StartFrame(Schema):
    event: Literal["start"]
    data: StreamStart


class ContentFrame(Schema):
    event: Literal["content"]
    id: str = Field(pattern=r"^.+:[0-9]+$", description="`<message_id>:<seq>`, seq from 1")
    data: StreamContent


class ToolCallFrame(Schema):
    event: Literal["tool_call"]
    id: str = Field(
        pattern=r"^.+:[0-9]+$",
        description="`<message_id>:<seq>`, numbered with the content events",
    )
    data: StreamToolCall


class ErrorFrame(Schema):
    event: Literal["error"]
    data: StreamError


class EndFrame(Schema):
    event: Literal["end"]
    data: StreamEnd


class ChatStreamEvent(
    RootModel[
        Annotated[
            StartFrame | ContentFrame | ToolCallFrame | ErrorFrame | EndFrame,
            Field(discriminator="event"),
        ]
    ]
):
    """One frame of a chat stream (`event:`, `id:`, `data:` lines). Every stream is exactly:
    one start, zero or more content and tool_call, at most one error, one end."""


class StopAccepted(Schema):
    success: Literal[True] = True
    message_id: str = message_id_field()
    stopping: Literal[True] = True
