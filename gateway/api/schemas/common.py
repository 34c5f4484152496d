"""What the answers of every API style share: the base model, timestamps, the contract's
error body, and the policy events a message or a stream's end reports."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from gateway.storage.records import iso


class Schema(BaseModel):
    """An answer's shape. A field with a default is still always sent (and so `required` in
    the document) unless it says `exclude_if`: then it is omitted while it has that value.
    A field the model does not know is an error, never dropped: the document says
    `additionalProperties: false` and means it."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True, extra="forbid")


def _iso(ms: int) -> str:
    return iso(ms) or ""  # never empty: iso() answers None only for None


# Epoch milliseconds in the model, ISO 8601 UTC with milliseconds in the JSON
Timestamp = Annotated[
    int,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# "tool_calls": the model waits for tool results; "content_filter": the provider withheld or
# cut the answer; "pause": an Anthropic server tool's long turn, to be continued
FinishReason = Literal[
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "pause",
    "policy_blocked",
    "error",
    "cancelled",
]


def empty(value: object) -> bool:
    """exclude_if: the field is omitted while it is empty, false or None."""
    return not value


def is_none(value: object) -> bool:
    return value is None


def is_true(value: object) -> bool:
    return value is True


class Error(Schema):
    """The contract's error body, for every error of the gateway's own API."""

    success: Literal[False] = False
    code: str = Field(description="machine-readable code", examples=["validation_error"])
    message: str = Field(description="human-readable text", examples=["limit: must be an integer"])


class Health(Schema):
    status: str = Field(examples=["ok"])


class PolicyEvent(Schema):
    """A policy that fired on this message, once per policy."""

    id: str = Field(description="the policy's id")
    action: Literal["log", "alert", "block", "redact"]
    stage: Literal["pre", "during", "post"] | None = Field(None, exclude_if=is_none)


class StoredToolCall(Schema):
    """A tool call an answer made: its arguments are the JSON text the model wrote."""

    id: str = Field(examples=["call_5b0f1c2a9e"])
    name: str = Field(examples=["get_weather"])
    arguments: str = Field(examples=['{"city": "Paris"}'])


MESSAGE_PARTS = (
    "a user message's parts beyond plain text, in order: text, image (url, or data with "
    "media_type), document, and tool_result (tool_call_id, content, is_error) parts; "
    "content is their text joined"
)
