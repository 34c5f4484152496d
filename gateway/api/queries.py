"""Query parameters, one model per route: the handler reads its query through the model and
the OpenAPI document lists the model's fields, so the bounds a client reads are the bounds
the gateway applies (tests/api/test_queries.py walks every route to hold them to it).

An empty value (`?limit=`) counts as absent. The first refusal answers 400, worded
`<name>: <problem>` with the parameter as the error's `param`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from starlette.requests import Request

from gateway.access.principal import Principal
from gateway.api.inputs import OrgId, PolicyId, RepositoryId, UserId, WorkspaceId, id_code, refused
from gateway.errors import BadRequest, ValidationFailed

MAX_OFFSET = 10_000_000  # a page further than this is a scan, not a read
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"-?[0-9]{1,18}")
EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")  # a Redis stream id
# `<message_id>:<seq>`: checked where the replay reads it (resume_log.last_seq), for the query
# parameter and the header alike, with its own code (tests/api/test_queries.py pins the two)
LAST_EVENT_ID = "^.+:[0-9]{1,18}$"


class Query(BaseModel):
    """A route's query: values arrive as strings and are converted by the field types below;
    a parameter the route does not know is ignored, as it always was."""

    model_config = ConfigDict(extra="ignore", frozen=True)


Q = TypeVar("Q", bound=Query)


def read_query(request: Request, model: type[Q]) -> Q:
    values = {k: v for k, v in request.query_params.items() if v != ""}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _refusal(model, exc.errors()[0]) from None


def _refusal(model: type[Query], err: ErrorDetails) -> BadRequest:
    name = str(err["loc"][0]) if err["loc"] else "query"
    if err["type"] == "missing":
        problem = "query parameter is required"
    elif err["type"] in ("greater_than_equal", "less_than_equal"):
        lo, hi = _bounds(model, name)
        problem = f"must be between {lo} and {hi}"
    else:  # the types below word their own refusals
        problem = err["msg"]
    return refused((name,), problem, code=id_code(err["type"]))


def _bounds(model: type[Query], name: str) -> tuple[Any, Any]:
    field = next(f for key, f in model.model_fields.items() if (f.alias or key) == name)
    found = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le") if hasattr(m, k)}
    return found.get("ge"), found.get("le")


def _problem(text: str) -> PydanticCustomError:
    return PydanticCustomError("query", "{problem}", {"problem": text})


def _integer(value: object) -> object:
    """ASCII digits only: int() would also take " 1_0" and "１２"."""
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise _problem("must be an integer")
    return value


def _epoch_ms(raw: str, *, end_of_day: bool) -> int:
    """An ISO 8601 date or date-time as epoch milliseconds (no zone: UTC). A bare date
    means its first millisecond, or with end_of_day its last, so that
    `from=2024-01-15&to=2024-01-15` covers the whole day."""
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise _problem(f"not an ISO 8601 date or date-time: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ms = (value - EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
    if end_of_day and "T" not in raw.upper() and " " not in raw.strip():
        ms += 86_400_000 - 1
    return ms


def _since(value: object) -> object:
    return _epoch_ms(value, end_of_day=False) if isinstance(value, str) else value


def _until(value: object) -> object:
    return _epoch_ms(value, end_of_day=True) if isinstance(value, str) else value


def _event_id(value: object) -> object:
    if isinstance(value, str) and not EVENT_ID.fullmatch(value):
        raise _problem("an event id, e.g. 1700000000000-0")
    return value


DATE = {"type": "string", "description": "ISO 8601 date or date-time (no zone: UTC)"}
Integer = Annotated[int, BeforeValidator(_integer)]
Since = Annotated[int | None, BeforeValidator(_since), WithJsonSchema(DATE)]
Until = Annotated[
    int | None,
    BeforeValidator(_until),
    WithJsonSchema({**DATE, "description": DATE["description"] + "; a date: its whole day"}),
]
EventId = Annotated[
    str | None,
    BeforeValidator(_event_id),
    WithJsonSchema({"type": "string", "pattern": EVENT_ID.pattern}),
]


def org_param(request: Request, caller: Principal) -> str:
    """?org_id=, required, and the caller's own (403 otherwise)."""
    org_id = read_query(request, OrgQuery).org_id
    caller.check_org(org_id)
    return org_id


# -- the Conversation Service (every route names the caller's org) ---------------------------


class OrgQuery(Query):
    org_id: OrgId = Field(min_length=1, description="the caller's org")


class ConversationListQuery(OrgQuery):
    limit: Integer = Field(50, ge=1, le=100)
    offset: Integer = Field(0, ge=0, le=MAX_OFFSET)


class ConversationQuery(OrgQuery):
    conversation_id: str = Field(min_length=1)


class MessagesQuery(ConversationQuery):
    limit: Integer = Field(20, ge=1, le=1000)
    offset: Integer = Field(0, ge=0, le=MAX_OFFSET)


class ResumeQuery(Query):
    resume_token: str | None = Field(
        None,
        description="instead of a bearer token (a browser's EventSource cannot send headers): "
        "the `resume_token` of the stream's `start` event; valid for that one message, "
        "15 minutes",
    )
    last_event_id: str | None = Field(
        None,
        json_schema_extra={"pattern": LAST_EVENT_ID},
        description="the same as the Last-Event-ID header, for clients that cannot set headers",
    )


class AttachQuery(ResumeQuery):
    org_id: OrgId | None = Field(None, description="the caller's org (with a bearer token)")
    message_id: str = Field(min_length=1)


# -- the repository style and the admin API (the org is the caller's unless named) ------------


class DateRange(Query):
    since: Since = Field(None, alias="from")
    until: Until = Field(None, alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValidationFailed("from: must not be after to", param=("from",))
        return self


ORG_ID = "the org (required for the platform admin)"


class RepoConversationsQuery(DateRange):
    org_id: OrgId | None = Field(None, description=ORG_ID)
    orgId: OrgId | None = Field(None, description="the same as org_id")
    take: Integer = Field(50, ge=1, le=100)
    skip: Integer = Field(0, ge=0, le=MAX_OFFSET)
    userId: UserId | None = None
    workspaceId: WorkspaceId | None = None
    repoId: RepositoryId | None = None


class RepoMessagesQuery(Query):
    take: Integer = Field(50, ge=1, le=100)
    skip: Integer = Field(0, ge=0, le=MAX_OFFSET)


class AdminOrgQuery(Query):
    org_id: OrgId | None = Field(None, description=ORG_ID)


class EventsQuery(DateRange):
    org_id: OrgId | None = Field(None, description=ORG_ID)
    take: Integer = Field(50, ge=1, le=1000)
    before: EventId = Field(None, description="an event id: the next (older) page")


class ViolationsQuery(DateRange):
    org_id: OrgId | None = Field(None, description=ORG_ID)
    take: Integer = Field(50, ge=1, le=100)
    skip: Integer = Field(0, ge=0, le=100_000)  # the page is filtered in memory
    policyId: PolicyId | None = None
    userId: UserId | None = None
    conversationId: str | None = None


# -- provider connections and usage --------------------------------------------------------


class ModelTestQuery(AdminOrgQuery):
    repository_id: str | None = Field(
        None, max_length=200, description="test with this repository's own provider key"
    )


class UsageQuery(DateRange):
    org_id: str | None = Field(
        None, description="the org (the platform admin: none for every org with usage)"
    )
    bucket: Literal["hour", "day", "month"] = Field("day", description="UTC hours, days, months")
    group_by: str | None = Field(
        None,
        max_length=100,
        description="comma-separated: org, workspace, repository, user, key, model",
    )
