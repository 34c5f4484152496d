"""The OpenAI-compatible API's answers, as OpenAI's own API shapes them: the completion,
the stream's chunks, the model list and the error body.

Only a completion and an error are serialized from these models; a stream's chunks are byte
templates (gateway/api/compat/openai.py ChunkFrames), which tests/api/test_schemas.py holds
to ChatCompletionStreamFrame."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, RootModel, Tag

from gateway.api.schemas.common import Schema, is_none


class OpenAIErrorDetail(Schema):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(
        description="the request field at fault, e.g. `messages.0.content`", examples=["n"]
    )
    code: str | None = Field(examples=["unsupported_parameter"])


class OpenAIError(Schema):
    """OpenAI's error body, from which the official SDK picks its exception class."""

    error: OpenAIErrorDetail


class OpenAIUsage(Schema):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionMessage(Schema):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None
    annotations: list[dict[str, Any]] = Field(default_factory=list)


class ChatCompletionChoice(Schema):
    index: int = 0
    message: ChatCompletionMessage
    logprobs: None = None
    finish_reason: str | None = Field(examples=["stop"])


class ChatCompletion(Schema):
    id: str = Field(examples=["chatcmpl-0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix seconds")
    model: str
    choices: list[ChatCompletionChoice]
    usage: OpenAIUsage
    system_fingerprint: None = None


class ChunkDelta(Schema):
    """The first chunk's delta names the role; the next ones carry content; the finishing
    one is empty."""

    role: Literal["assistant"] | None = Field(None, exclude_if=is_none)
    content: str | None = Field(None, exclude_if=is_none)
    refusal: None = Field(None, exclude_if=is_none)


class ChunkChoice(Schema):
    index: int
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class ChatCompletionChunk(Schema):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[ChunkChoice] = Field(description="empty in the usage chunk")
    usage: OpenAIUsage | None = Field(
        None,
        exclude_if=is_none,
        description="with stream_options.include_usage: null in every chunk but the last",
    )


class ChunkFrame(Schema):
    data: ChatCompletionChunk


class DoneFrame(Schema):
    data: Literal["[DONE]"]


class ChunkErrorFrame(Schema):
    data: OpenAIError


def _frame_kind(frame: Any) -> str:
    data = frame.get("data") if isinstance(frame, dict) else getattr(frame, "data", None)
    if data == "[DONE]":
        return "done"
    is_error = isinstance(data, OpenAIError) or (isinstance(data, dict) and "error" in data)
    return "error" if is_error else "chunk"


class ChatCompletionStreamFrame(
    RootModel[
        Annotated[
            Annotated[ChunkFrame, Tag("chunk")]
            | Annotated[DoneFrame, Tag("done")]
            | Annotated[ChunkErrorFrame, Tag("error")],
            Discriminator(_frame_kind),
        ]
    ]
):
    """`data: <chunk>` frames, then `data: [DONE]`; a failed answer ends with one
    `data: {"error": ...}` frame and no [DONE]."""


class OpenAIModel(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds: when the gateway began serving it")
    owned_by: str = Field(description="its provider", examples=["openai"])


class OpenAIModelList(Schema):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
