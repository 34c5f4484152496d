"""The repository-style API's answers (seeds 000, 001, 002, 004): camelCase, a `success`
flag, token totals of a conversation as strings (they grow large)."""

from __future__ import annotations

from typing import Any, Literal, cast

from pydantic import Field

from gateway.api.schemas.common import (
    MESSAGE_PARTS,
    FinishReason,
    PolicyEvent,
    Schema,
    StoredToolCall,
    Timestamp,
    empty,
)
from gateway.storage import records

COST = r"^[0-9]+(\.[0-9]+)?$"  # an exact decimal of USD


class RepoCreator(Schema):
    id: str
    name: str | None
    lastName: str | None
    email: str | None


class RepoConversation(Schema):
    id: str
    orgId: str
    createdBy: str
    createdAt: Timestamp
    lastUpdatedAt: Timestamp
    workspaceId: str | None
    repoId: str | None
    tokensIn: str = Field(pattern="^[0-9]+$", examples=["1200"])
    tokensOut: str = Field(pattern="^[0-9]+$", examples=["5400"])
    cost: str = Field(
        pattern=COST, examples=["0.0042"], description="USD so far, exact (a string, as tokens)"
    )
    creator: RepoCreator

    @classmethod
    def of(cls, c: records.Conversation) -> RepoConversation:
        return cls(
            id=c.id,
            orgId=c.org_id,
            createdBy=c.created_by,
            createdAt=c.created_at,
            lastUpdatedAt=c.updated_at,
            workspaceId=c.workspace_id,
            repoId=c.repo_id,
            tokensIn=str(c.tokens_in),
            tokensOut=str(c.tokens_out),
            cost=records.decimal_usd(c.cost_nusd),
            creator=RepoCreator(
                id=c.creator.id or c.created_by,
                name=c.creator.name,
                lastName=c.creator.last_name,
                email=c.creator.email,
            ),
        )


class RepoConversationList(Schema):
    success: Literal[True] = True
    conversations: list[RepoConversation]
    total: int


class RepoConversationCreated(Schema):
    success: Literal[True] = True
    conversationId: str


class RepoConversationDeleted(Schema):
    success: Literal[True] = True
    conversationId: str
    deletedAt: Timestamp


Role = Literal["user", "assistant"]


class RepoMessage(Schema):
    id: str
    conversationId: str
    role: Role
    content: str
    createdAt: Timestamp
    tokensIn: int
    tokensOut: int
    cost: str = Field(pattern=COST, description="USD, priced when it was recorded")
    model: str | None
    status: str = Field(description="complete | error | cancelled | blocked")
    finishReason: str | None
    parts: list[dict[str, Any]] = Field(
        default_factory=list, exclude_if=empty, description=MESSAGE_PARTS
    )
    toolCalls: list[StoredToolCall] = Field(
        default_factory=list, exclude_if=empty, description="the tools an answer called"
    )
    refusal: str | None = Field(None, exclude_if=empty, description="the model declined")

    @classmethod
    def of(cls, m: records.Message) -> RepoMessage:
        return cls(
            id=m.id,
            conversationId=m.conversation_id,
            role=cast(Role, m.role),  # and validated as one
            content=m.content,
            createdAt=m.created_at,
            tokensIn=m.input_tokens,
            tokensOut=m.output_tokens,
            cost=records.decimal_usd(m.cost_nusd),
            model=m.model_id,
            status=m.status,
            finishReason=m.finish_reason,
            parts=m.parts,
            toolCalls=[StoredToolCall(**c) for c in m.tool_calls],
            refusal=m.refusal,
        )


class RepoMessagePage(Schema):
    success: Literal[True] = True
    messages: list[RepoMessage]
    total: int
    take: int
    skip: int


class PromptAnswer(Schema):
    """The whole answer to a prompt sent without asking for a stream."""

    success: Literal[True] = True
    message: str = "Prompt sent successfully"
    conversationId: str
    messageId: str
    response: str = Field(description="the answer's text")
    model: str
    tokensIn: int
    tokensOut: int
    cost: str = Field(pattern=COST, description="this answer's cost, USD, exact")
    finishReason: FinishReason
    usageEstimated: bool = Field(
        False, exclude_if=empty, description="counted by the gateway: the provider never said"
    )
    policy: list[PolicyEvent] = Field(default_factory=list, exclude_if=empty)
