"""The OpenAI-compatible legacy completion, as OpenAI's API shapes it: the whole completion
and the stream's chunks (byte templates in gateway/api/compat/completions.py, which
tests/api/compat/test_completions.py holds to TextCompletionStreamFrame)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, RootModel, Tag

from gateway.api.schemas.common import Schema, is_none
from gateway.api.schemas.openai import ChunkErrorFrame, DoneFrame, OpenAIUsage


class TextCompletionChoice(Schema):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: str | None = Field(
        description="stop | length | content_filter; null until the last chunk",
        examples=["stop"],
    )


class TextCompletion(Schema):
    id: str = Field(examples=["cmpl-0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e"])
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(description="Unix seconds")
    model: str
    system_fingerprint: None = None
    choices: list[TextCompletionChoice]
    usage: OpenAIUsage


class TextCompletionChunk(Schema):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None = None
    choices: list[TextCompletionChoice] = Field(description="empty in the usage chunk")
    usage: OpenAIUsage | None = Field(
        None, exclude_if=is_none, description="with stream_options.include_usage: the last chunk"
    )


class TextCompletionChunkFrame(Schema):
    data: TextCompletionChunk


def _frame_kind(frame: Any) -> str:
    data = frame.get("data") if isinstance(frame, dict) else getattr(frame, "data", None)
    if data == "[DONE]":
        return "done"
    is_error = isinstance(data, dict) and "error" in data or hasattr(data, "error")
    return "error" if is_error else "chunk"


class TextCompletionStreamFrame(
    RootModel[
        Annotated[
            Annotated[TextCompletionChunkFrame, Tag("chunk")]
            | Annotated[DoneFrame, Tag("done")]
            | Annotated[ChunkErrorFrame, Tag("error")],
            Discriminator(_frame_kind),
        ]
    ]
):
    """`data: <text_completion>` frames, then `data: [DONE]`; a failed answer ends with one
    `data: {"error": ...}` frame and no [DONE]."""
