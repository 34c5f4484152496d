"""The admin API's answers: repositories, the audit trail, policies and their violations.
Field names follow the config file (snake_case)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from gateway.access import audit, repositories
from gateway.api.schemas.common import Schema, Timestamp, is_none
from gateway.policy import PolicySpec


class Repository(Schema):
    id: str
    org_id: str
    workspace_id: str | None
    model: str | None = Field(description="the model its prompts go to; none: the default")
    source: Literal["api", "config"] = Field(description="the admin API, or the config file")
    has_own_api_key: bool = Field(description="its prompts use a provider key of their own")
    created_at: Timestamp | None
    updated_at: Timestamp | None

    @classmethod
    def of(cls, r: repositories.Repository, *, has_own_key: bool = False) -> Repository:
        """`has_own_key`: it has provider keys set through the admin API."""
        return cls(
            id=r.id,
            org_id=r.org_id,
            workspace_id=r.workspace_id,
            model=r.model,
            source=r.source,
            has_own_api_key=r.api_key_env is not None or has_own_key,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class RepositoryList(Schema):
    success: Literal[True] = True
    repositories: list[Repository]


class RepositoryEnvelope(Schema):
    success: Literal[True] = True
    repository: Repository


class RepositoryDeleted(Schema):
    success: Literal[True] = True
    repositoryId: str


class AuditEvent(Schema):
    """One event of the org's audit trail; the details of its type follow as more string
    fields (conversation_id, model, ...)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    id: str = Field(pattern="^[0-9]+-[0-9]+$", description="the stream id: its time, then a seq")
    type: str = Field(examples=["conversation_created"])
    at: Timestamp
    org_id: str
    actor: str | None = Field(None, exclude_if=is_none, description="the caller's user id")
    actor_role: str | None = Field(None, exclude_if=is_none)

    @classmethod
    def of(cls, e: audit.Event, org: str) -> AuditEvent:
        return cls.model_validate(
            {"id": e.id, "type": e.type, "at": e.at_ms, "org_id": org, **e.fields}
        )


class AuditEventPage(Schema):
    success: Literal[True] = True
    events: list[AuditEvent]
    next_before: str | None = Field(description="pass as ?before= for the next (older) page")


class Policy(PolicySpec):
    """A policy in force (fields the policy does not set are omitted)."""

    source: Literal["file", "api"] = Field(description="the config file, or the admin API")

    @classmethod
    def of(cls, spec: PolicySpec, source: Literal["file", "api"]) -> Policy:
        # a spec is valid already: no second validation (it would compile its patterns again)
        return cls.model_construct(spec.model_fields_set | {"source"}, **dict(spec), source=source)


class PolicyList(Schema):
    success: Literal[True] = True
    policies: list[Policy]
    total: int


class PolicyEnvelope(Schema):
    success: Literal[True] = True
    policy: Policy


class PolicyDeleted(Schema):
    success: Literal[True] = True
    deleted: str = Field(description="the policy's id")


class PolicyViolation(Schema):
    """What a policy saw, where and for whom; more context fields may follow."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Any] = Field(init=False)

    policy_id: str
    policy_name: str | None = None
    stage: Literal["pre", "during", "post"]
    action: Literal["log", "alert", "block", "redact"]
    kind: str | None = None
    label: str | None = None
    excerpt: str | None = Field(None, description="masked: never the raw secret or PII")
    detail: str | None = None
    at: int | None = Field(None, description="epoch milliseconds")
    org_id: str | None = None
    workspace_id: str | None = None
    repo_id: str | None = None
    conversation_id: str | None = None
    user_id: str | None = None
    message_id: str | None = None
    model_id: str | None = None
    # kept for the visibility rules, never shown
    conversation_creator: str | None = Field(None, exclude=True)


class ViolationPage(Schema):
    success: Literal[True] = True
    violations: list[PolicyViolation]
    total: int
    counts: dict[str, int] | None = Field(
        None,
        exclude_if=is_none,
        description="violations per policy (org admins and the platform admin)",
    )
