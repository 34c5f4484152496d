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


class PromptTokensDetails(Schema):
    cached_tokens: int = Field(description="of prompt_tokens, read from the prompt cache")


class CompletionTokensDetails(Schema):
    reasoning_tokens: int = Field(description="of completion_tokens, spent reasoning")


class OpenAIUsage(Schema):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class FunctionCallOut(Schema):
    name: str
    arguments: str = Field(description="JSON text, as the model wrote it")


class ToolCallOut(Schema):
    id: str = Field(examples=["call_5b0f1c2a9e"])
    type: Literal["function"] = "function"
    function: FunctionCallOut


class TokenLogprobOut(Schema):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobWithTop(TokenLogprobOut):
    top_logprobs: list[TokenLogprobOut]


class ChoiceLogprobs(Schema):
    content: list[TokenLogprobWithTop] | None
    refusal: list[TokenLogprobWithTop] | None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class ChatCompletionMessage(Schema):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(description="null when the answer is tool calls or a refusal")
    refusal: str | None = None
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[ToolCallOut] | None = Field(None, exclude_if=is_none)
    reasoning_content: str | None = Field(
        None,
        exclude_if=is_none,
        description="the model's reasoning, as OpenAI-compatible servers return it",
    )


class ChatCompletionChoice(Schema):
    index: int = 0
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = Field(examples=["stop"])


class ChatCompletion(Schema):
    id: str = Field(examples=["chatcmpl-0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix seconds")
    model: str
    choices: list[ChatCompletionChoice]
    usage: OpenAIUsage
    system_fingerprint: None = None


class ToolCallDeltaFunction(Schema):
    name: str | None = Field(None, exclude_if=is_none)
    arguments: str


class ToolCallDeltaOut(Schema):
    """A piece of tool call `index`: the first with id, type and name, the next ones the
    following fragment of its arguments."""

    index: int
    id: str | None = Field(None, exclude_if=is_none)
    type: Literal["function"] | None = Field(None, exclude_if=is_none)
    function: ToolCallDeltaFunction


class ChunkDelta(Schema):
    """The first chunk's delta names the role; the next ones carry content, a refusal,
    tool-call pieces or reasoning; the finishing one is empty."""

    role: Literal["assistant"] | None = Field(None, exclude_if=is_none)
    content: str | None = Field(None, exclude_if=is_none)
    refusal: str | None = Field(None, exclude_if=is_none)
    tool_calls: list[ToolCallDeltaOut] | None = Field(None, exclude_if=is_none)
    reasoning_content: str | None = Field(None, exclude_if=is_none)


class ChunkChoice(Schema):
    index: int
    delta: ChunkDelta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None


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
