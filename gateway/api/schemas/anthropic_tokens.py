"""The Anthropic-compatible token count, as Anthropic's API shapes it, with the gateway's
mark on a count it estimated itself."""

from __future__ import annotations

from pydantic import Field

from gateway.api.schemas.common import Schema, empty


class MessageTokensCount(Schema):
    input_tokens: int = Field(description="the tokens of the request's input")
    estimated: bool = Field(
        False,
        exclude_if=empty,
        description="present (true) when the gateway estimated the count: the model's "
        "provider has no counting endpoint",
    )
