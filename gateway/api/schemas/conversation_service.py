"""The Conversation Service API's answers (seed 003): snake_case, timestamps in ISO 8601."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from gateway.api.schemas.common import (
    MESSAGE_PARTS,
    PolicyEvent,
    Schema,
    StoredToolCall,
    Timestamp,
    empty,
)
from gateway.storage import records


class Conversation(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    is_archived: bool
    created_at: Timestamp
    updated_at: Timestamp
    org_id: str
    workspace_id: str | None
    repo_id: str | None = Field(description="set when made through the repository-style API")
    created_by: str = Field(description="the creator's user id")
    tokens_in: int = Field(description="input tokens of every answer so far")
    tokens_out: int = Field(description="output tokens of every answer so far")
    cost: float = Field(description="USD of every answer so far, each priced when recorded")

    @classmethod
    def of(cls, c: records.Conversation) -> Conversation:
        return cls.model_validate(c)


class ChatSession(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str
    model_id: str
    status: str = Field(examples=["active"])
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, s: records.ChatSession) -> ChatSession:
        return cls.model_validate(s)


class Message(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str
    chat_session_id: str | None
    role: Literal["user", "assistant"]
    content: str
    status: str = Field(description="complete | error | cancelled | blocked")
    model_id: str | None
    input_tokens: int
    output_tokens: int
    finish_reason: str | None
    usage_estimated: bool = Field(description="counted by the gateway: the provider never said")
    cost: float = Field(description="USD, at the prices in force when it was recorded")
    created_at: Timestamp
    policy: list[PolicyEvent] = Field(default_factory=list, exclude_if=empty)
    error: dict[str, str] | None = Field(
        None, exclude_if=empty, description="the error that ended the answer: code, message"
    )
    parts: list[dict[str, Any]] = Field(
        default_factory=list, exclude_if=empty, description=MESSAGE_PARTS
    )
    tool_calls: list[StoredToolCall] = Field(
        default_factory=list, exclude_if=empty, description="the tools an answer called"
    )
    refusal: str | None = Field(None, exclude_if=empty, description="the model declined")

    @classmethod
    def of(cls, m: records.Message) -> Message:
        return cls.model_validate(m)


class ConversationList(Schema):
    conversations: list[Conversation]
    total: int = Field(description="how many the caller may see in all")


class ConversationWithSessions(Conversation):
    sessions: list[ChatSession]

    @classmethod
    def with_sessions(
        cls, c: records.Conversation, sessions: list[records.ChatSession]
    ) -> ConversationWithSessions:
        return cls(**dict(Conversation.of(c)), sessions=[ChatSession.of(s) for s in sessions])


class MessagePage(Schema):
    messages: list[Message]
    total: int
    limit: int
    offset: int
