"""The OpenAI-compatible embeddings answer, as OpenAI's API shapes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.api.schemas.common import Schema


class Embedding(Schema):
    object: Literal["embedding"] = "embedding"
    index: int = Field(description="the input's position")
    embedding: list[float] | str = Field(
        description="the vector; with encoding_format base64, base64 of little-endian float32"
    )


class EmbeddingUsage(Schema):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Schema):
    object: Literal["list"] = "list"
    data: list[Embedding] = Field(description="one per input, in the inputs' order")
    model: str
    usage: EmbeddingUsage
