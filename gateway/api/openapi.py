"""The OpenAPI 3.1 document served at /openapi.json: built from the app's route table, the
routes' pydantic Body models, and the hand-written response and SSE event schemas below.

Every route the app registers appears in the document. A route with no entry in
OPERATIONS still appears, marked `x-undocumented` (tests/test_openapi.py fails on it), so a
new route needs one `OPERATIONS[("GET", "/path")] = Operation(...)` line-group here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.routing import BaseRoute, Mount, Route

from gateway import __version__
from gateway.access.api_keys import KeySpec
from gateway.access.usage import DIMENSIONS as USAGE_DIMENSIONS
from gateway.api import (
    admin,
    conversation_service,
    models,
    provider_keys,
    repository_style,
    streams,
)
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import openai as openai_compat
from gateway.policy import PolicySpec
from gateway.settings import ModelConfig

REF = "#/components/schemas/"
Auth = Literal["none", "bearer", "stream", "compat"]
ErrorShape = Literal["Error", "OpenAIError", "AnthropicError"]
JSON = "application/json"
SSE = "text/event-stream"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


# -- what an entry says about one operation ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    tag: str
    responses: dict[int, dict[str, Any]]  # success status -> response object
    errors: tuple[int, ...] = ()  # error statuses, answered in `error_shape`
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    body_name: str | None = None  # its component name; default the class name
    body_from_path: tuple[str, ...] = ()  # body fields the route fills in from the path
    auth: Auth = "bearer"
    error_shape: ErrorShape = "Error"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the operation object


def json_response(description: str, schema: dict[str, Any] | str) -> dict[str, Any]:
    schema = ref(schema) if isinstance(schema, str) else schema
    return {"description": description, "content": {JSON: {"schema": schema}}}


def sse_response(description: str, schema: str = "ChatStreamEvent") -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
            "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
        },
        "content": {
            SSE: {
                "schema": ref(schema),
                "x-sse": "each frame of the stream is one of the schema's alternatives; "
                "`data` is one line of JSON; `: ping` comment lines keep the connection open",
            }
        },
    }


def text_response(description: str, media: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


# -- parameters used by many routes ---------------------------------------------------------------

ORG_ID = Param("org_id", {"type": "string", "minLength": 1}, "the caller's org", required=True)
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50})
OFFSET = Param("offset", {"type": "integer", "minimum": 0, "default": 0})
TAKE = Param("take", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50})
SKIP = Param("skip", {"type": "integer", "minimum": 0, "default": 0})
CONVERSATION_ID = Param("conversation_id", {"type": "string", "minLength": 1}, required=True)
DATE = {"type": "string", "description": "ISO 8601 date or date-time (no zone: UTC)"}
RESUME_TOKEN = Param(
    "resume_token",
    {"type": "string"},
    "instead of a bearer token (a browser's EventSource cannot send headers): the "
    "`resume_token` of the stream's `start` event; valid for that one message, 15 minutes",
)
LAST_EVENT_ID = Param(
    "Last-Event-ID",
    {"type": "string", "pattern": "^.+:[0-9]+$"},
    "`<message_id>:<seq>` of the last content event seen: the replay continues after it "
    "(EventSource sends it on its own when it reconnects)",
    where="header",
)
LAST_EVENT_ID_QUERY = Param(
    "last_event_id",
    {"type": "string", "pattern": "^.+:[0-9]+$"},
    "the same as the Last-Event-ID header, for clients that cannot set headers",
)
CONVERSATION_HEADER = Param(
    "X-Conversation-Id",
    {"type": "string", "maxLength": 200},
    "append the exchange to this stored conversation",
    where="header",
)
PATH_PARAMS = {
    "conversation_id": "the conversation's id",
    "message_id": "the assistant message's id (the `message_id` of the `start` event)",
    "repo_id": "the repository's id: 1-200 letters, digits, `.` `_` `:` `-`",
    "model_id": "a served model's id (admin routes: 1-200 letters, digits, `.` `_` `:` `-`)",
    "provider": "`openai` or `anthropic`",
    "key_id": "an API key's id (12 hex digits: the part after `cgw_` of the key)",
    "policy_id": "a policy id: 1-200 letters, digits, `.` `_` `:` `-`",
    "file": "a file of the package's static folder",
}

# statuses of the contract's error shape; the codes are the common ones, not all
ERROR_STATUSES: dict[int, tuple[str, str]] = {
    400: ("Bad request", "invalid_json, validation_error, policy_blocked, prompt_too_long, ..."),
    401: (
        "Missing, invalid or expired bearer token",
        "unauthorized, token_expired, invalid_resume_token",
    ),
    403: (
        "Not allowed: another org's org_id, a role without the right",
        "forbidden, forbidden_role",
    ),
    404: (
        "Not found, or not visible to the caller",
        "conversation_not_found, session_not_found, model_not_found, stream_not_found, ...",
    ),
    405: ("Method not allowed", "method_not_allowed"),
    409: ("Conflict", "conflict, not_running, conversation_busy, ..."),
    413: ("Request body too large", "payload_too_large"),
    429: ("Rate limited; retry after `Retry-After` seconds", "rate_limited"),
    500: ("Internal error", "internal_error"),
    502: ("The provider failed before the answer began", "provider_error"),
    503: ("A dependency (Redis) does not answer", "unavailable, redis_unavailable"),
}
PROMPT_ERRORS = (400, 401, 403, 404, 409, 413, 429, 500, 502, 503)
READ_ERRORS = (400, 401, 403, 404, 500)
COMPAT_ERRORS = (400, 401, 403, 404, 413, 429, 500, 502)


# -- hand-written schemas -------------------------------------------------------------------------


def obj(required: Iterable[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
DECIMAL = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"}
BOOL = {"type": "boolean"}
NSTR = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time"}
NTIME = {"type": ["string", "null"], "format": "date-time"}
FINISH_REASONS = ["stop", "length", "policy_blocked", "error", "cancelled"]

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        **obj(
            ["success", "code", "message"],
            success={"const": False},
            code={**STR, "description": "machine-readable code"},
            message={**STR, "description": "human-readable text"},
        ),
        "description": "The contract's error body, for every error of the gateway's own API.",
    },
    "OpenAIError": obj(
        ["error"],
        error=obj(["message", "type", "code"], message=STR, type=STR, param=NSTR, code=NSTR),
    ),
    "AnthropicError": obj(
        ["type", "error"],
        type={"const": "error"},
        error=obj(["type", "message"], type=STR, message=STR),
    ),
    "Health": obj(["status"], status=STR),
    # -- Conversation Service ------------------------------------------------------------------
    "Conversation": obj(
        ["id", "title", "is_archived", "created_at", "updated_at"],
        id=STR,
        title=STR,
        is_archived=BOOL,
        created_at=TIME,
        updated_at=TIME,
        org_id=STR,
        workspace_id=NSTR,
        repo_id=NSTR,
        created_by=STR,
        tokens_in=INT,
        tokens_out=INT,
        cost={**NUM, "description": "USD: each answer priced when it was recorded"},
    ),
    "ChatSession": obj(
        ["id", "conversation_id", "model_id", "status", "created_at", "updated_at"],
        id=STR,
        conversation_id=STR,
        model_id=STR,
        status=STR,
        created_at=TIME,
        updated_at=TIME,
    ),
    "Message": obj(
        ["id", "conversation_id", "role", "content", "status", "created_at"],
        id=STR,
        conversation_id=STR,
        chat_session_id=NSTR,
        role={"enum": ["user", "assistant"]},
        content=STR,
        status={**STR, "description": "complete | error | cancelled | blocked"},
        model_id=NSTR,
        input_tokens=INT,
        output_tokens=INT,
        finish_reason=NSTR,
        usage_estimated=BOOL,
        cost={**NUM, "description": "USD, at the prices in force when it was recorded"},
        created_at=TIME,
        policy={"type": "array", "items": ref("PolicyEvent")},
        error={"type": "object", "additionalProperties": STR},
    ),
    "ConversationList": obj(
        ["conversations", "total"],
        conversations={"type": "array", "items": ref("Conversation")},
        total=INT,
    ),
    "ConversationWithSessions": {
        "allOf": [
            ref("Conversation"),
            obj(["sessions"], sessions={"type": "array", "items": ref("ChatSession")}),
        ]
    },
    "MessagePage": obj(
        ["messages", "total", "limit", "offset"],
        messages={"type": "array", "items": ref("Message")},
        total=INT,
        limit=INT,
        offset=INT,
    ),
    "StopAccepted": obj(
        ["success", "message_id", "stopping"],
        success={"const": True},
        message_id=STR,
        stopping={"const": True},
    ),
    "PolicyEvent": {
        **obj(
            ["id", "action"],
            id={**STR, "description": "the policy's id"},
            action={"enum": ["log", "alert", "block", "redact"]},
            stage={"enum": ["pre", "during", "post"]},
        ),
        "description": "a policy that fired on this message, once per policy",
    },
    # -- the stream ------------------------------------------------------------------------------
    "StreamStart": obj(
        ["message_id", "conversation_id", "chat_session_id", "model"],
        message_id=STR,
        conversation_id=NSTR,
        chat_session_id=NSTR,
        model=STR,
        user_message_id=NSTR,
        resume_token={
            **STR,
            "description": "lets GET .../stream attach without a bearer token "
            "(`?resume_token=`), for this message only",
        },
    ),
    "StreamContent": obj(["delta"], delta={**STR, "description": "the next piece of the answer"}),
    "StreamError": obj(
        ["code", "message"],
        code={**STR, "description": "policy_blocked | provider_error | producer_lost | ..."},
        message=STR,
    ),
    "StreamEnd": obj(
        ["message_id", "finish_reason", "usage"],
        message_id=STR,
        finish_reason={"enum": FINISH_REASONS},
        usage=obj(
            ["input_tokens", "output_tokens"],
            input_tokens=INT,
            output_tokens=INT,
            estimated={**BOOL, "description": "counted by the gateway: the provider never said"},
        ),
        conversation_usage=obj(
            ["tokens_in", "tokens_out"],
            tokens_in=INT,
            tokens_out=INT,
            cost={**NUM, "description": "the conversation's cost so far, USD"},
        ),
        policy={"type": "array", "items": ref("PolicyEvent")},
    ),
    "StartFrame": obj(["event", "data"], event={"const": "start"}, data=ref("StreamStart")),
    "ContentFrame": obj(
        ["event", "id", "data"],
        event={"const": "content"},
        id={**STR, "pattern": "^.+:[0-9]+$", "description": "`<message_id>:<seq>`, seq from 1"},
        data=ref("StreamContent"),
    ),
    "ErrorFrame": obj(["event", "data"], event={"const": "error"}, data=ref("StreamError")),
    "EndFrame": obj(["event", "data"], event={"const": "end"}, data=ref("StreamEnd")),
    "ChatStreamEvent": {
        "description": "One frame of a chat stream (`event:`, `id:`, `data:` lines). Every "
        "stream is exactly: one start, zero or more content, at most one error, one end.",
        "oneOf": [ref("StartFrame"), ref("ContentFrame"), ref("ErrorFrame"), ref("EndFrame")],
        "discriminator": {
            "propertyName": "event",
            "mapping": {
                "start": REF + "StartFrame",
                "content": REF + "ContentFrame",
                "error": REF + "ErrorFrame",
                "end": REF + "EndFrame",
            },
        },
    },
    # -- repository style --------------------------------------------------------------------------
    "RepoConversation": obj(
        [
            "id",
            "orgId",
            "createdBy",
            "createdAt",
            "lastUpdatedAt",
            "tokensIn",
            "tokensOut",
            "creator",
        ],
        id=STR,
        orgId=STR,
        createdBy=STR,
        createdAt=TIME,
        lastUpdatedAt=TIME,
        workspaceId=NSTR,
        repoId=NSTR,
        tokensIn={**STR, "pattern": "^[0-9]+$"},
        tokensOut={**STR, "pattern": "^[0-9]+$"},
        cost={**DECIMAL, "description": "USD, an exact decimal string like the token counts"},
        creator=obj(["id"], id=STR, name=NSTR, lastName=NSTR, email=NSTR),
    ),
    "RepoConversationList": obj(
        ["success", "conversations", "total"],
        success={"const": True},
        conversations={"type": "array", "items": ref("RepoConversation")},
        total=INT,
    ),
    "RepoConversationCreated": obj(
        ["success", "conversationId"], success={"const": True}, conversationId=STR
    ),
    "RepoConversationDeleted": obj(
        ["success", "conversationId", "deletedAt"],
        success={"const": True},
        conversationId=STR,
        deletedAt=TIME,
    ),
    "RepoMessage": obj(
        ["id", "conversationId", "role", "content", "createdAt"],
        id=STR,
        conversationId=STR,
        role={"enum": ["user", "assistant"]},
        content=STR,
        createdAt=TIME,
        tokensIn=INT,
        tokensOut=INT,
        cost=DECIMAL,
        model=NSTR,
        status=STR,
        finishReason=NSTR,
    ),
    "RepoMessagePage": obj(
        ["success", "messages", "total", "take", "skip"],
        success={"const": True},
        messages={"type": "array", "items": ref("RepoMessage")},
        total=INT,
        take=INT,
        skip=INT,
    ),
    "PromptAnswer": obj(
        [
            "success",
            "conversationId",
            "messageId",
            "response",
            "model",
            "tokensIn",
            "tokensOut",
            "finishReason",
        ],
        success={"const": True},
        message=STR,
        conversationId=STR,
        messageId=STR,
        response=STR,
        model=STR,
        tokensIn=INT,
        tokensOut=INT,
        cost={**DECIMAL, "description": "this answer's cost, USD"},
        finishReason={"enum": FINISH_REASONS},
        usageEstimated=BOOL,
        policy={"type": "array", "items": ref("PolicyEvent")},
    ),
    # -- admin --------------------------------------------------------------------------------
    "Repository": obj(
        ["id", "org_id", "source"],
        id=STR,
        org_id=STR,
        workspace_id=NSTR,
        model=NSTR,
        source={"enum": ["api", "config"]},
        has_own_api_key=BOOL,
        created_at=NTIME,
        updated_at=NTIME,
    ),
    "RepositoryList": obj(
        ["success", "repositories"],
        success={"const": True},
        repositories={"type": "array", "items": ref("Repository")},
    ),
    "RepositoryEnvelope": obj(
        ["success", "repository"], success={"const": True}, repository=ref("Repository")
    ),
    "RepositoryDeleted": obj(
        ["success", "repositoryId"], success={"const": True}, repositoryId=STR
    ),
    "AuditEvent": {
        **obj(
            ["id", "type", "at", "org_id"],
            id={**STR, "pattern": "^[0-9]+-[0-9]+$"},
            type=STR,
            at=TIME,
            org_id=STR,
            actor=STR,
            actor_role=STR,
        ),
        "additionalProperties": STR,
    },
    "PolicyList": obj(
        ["success", "policies", "total"],
        success={"const": True},
        policies={"type": "array", "items": ref("Policy")},
        total=INT,
    ),
    "PolicyEnvelope": obj(["success", "policy"], success={"const": True}, policy=ref("Policy")),
    "PolicyDeleted": obj(["success", "deleted"], success={"const": True}, deleted=STR),
    "PolicyViolation": {
        **obj(
            ["policy_id", "stage", "action"],
            policy_id=STR,
            policy_name=NSTR,
            stage={"enum": ["pre", "during", "post"]},
            action={"enum": ["log", "alert", "block", "redact"]},
            kind=STR,
            label=NSTR,
            excerpt={**NSTR, "description": "masked: never the raw secret or PII"},
            detail=NSTR,
            at={**INT, "description": "epoch milliseconds"},
            org_id=STR,
            workspace_id=NSTR,
            conversation_id=NSTR,
            user_id=NSTR,
            message_id=NSTR,
        ),
        "description": "what a policy saw, where and for whom (more context fields may follow)",
    },
    "ViolationPage": obj(
        ["success", "violations", "total"],
        success={"const": True},
        violations={"type": "array", "items": ref("PolicyViolation")},
        total=INT,
        counts={
            "type": "object",
            "additionalProperties": INT,
            "description": "violations per policy (org admins and the platform admin)",
        },
    ),
    "AuditEventPage": obj(
        ["success", "events", "next_before"],
        success={"const": True},
        events={"type": "array", "items": ref("AuditEvent")},
        next_before=NSTR,
    ),
    # -- provider connections, keys, usage -----------------------------------------------
    "ModelPrices": obj(
        ["input_per_mtok", "output_per_mtok", "source"],
        input_per_mtok={"type": ["number", "null"], "description": "USD per million tokens"},
        output_per_mtok={"type": ["number", "null"], "description": "USD per million tokens"},
        source={
            "enum": ["entry", "table", "none"],
            "description": "the entry's own, the shipped table's, or none (no cost recorded)",
        },
    ),
    "ModelHealth": obj(
        ["ok", "at"],
        ok=BOOL,
        at={**INT, "description": "epoch milliseconds"},
        latency_ms={**NUM, "description": "until the upstream accepted the request"},
        first_token_ms=NUM,
        error_kind={**STR, "description": "auth, rate_limit, timeout, connection, server, ..."},
        error_status=INT,
        error=STR,
    ),
    "ModelList": obj(
        ["success", "models", "total"],
        success={"const": True},
        models={"type": "array", "items": ref("ModelEntry")},
        total=INT,
    ),
    "ModelEnvelope": obj(["success", "model"], success={"const": True}, model=ref("ModelEntry")),
    "ModelDeleted": obj(["success", "modelId"], success={"const": True}, modelId=STR),
    "ModelTest": obj(
        ["success", "model", "result"],
        success={"const": True},
        model=STR,
        result=ref("ModelHealth"),
    ),
    "ProviderKey": {
        **obj(
            ["provider", "source"],
            provider={"enum": ["openai", "anthropic"]},
            source={"enum": ["api", "config"]},
            fingerprint={**STR, "description": "tells keys apart; never the key"},
            last4=STR,
            kek={**STR, "description": "the key-encryption key that wraps it"},
            created_at=TIME,
        ),
        "description": "What may be shown of a repository's provider key: never the key.",
    },
    "ProviderKeyList": obj(
        ["success", "repositoryId", "provider_keys"],
        success={"const": True},
        repositoryId=STR,
        provider_keys={"type": "array", "items": ref("ProviderKey")},
    ),
    "ProviderKeyEnvelope": obj(
        ["success", "repositoryId", "provider_key"],
        success={"const": True},
        repositoryId=STR,
        provider_key=ref("ProviderKey"),
    ),
    "ProviderKeyDeleted": obj(
        ["success", "repositoryId", "provider"],
        success={"const": True},
        repositoryId=STR,
        provider=STR,
    ),
    "ApiKey": obj(
        ["id", "org_id", "user", "role", "prefix", "created_at"],
        id=STR,
        org_id=STR,
        user=STR,
        role={"enum": ["org_admin", "workspace_admin", "user"]},
        workspaces={"type": "array", "items": STR},
        name=NSTR,
        last_name=NSTR,
        email=NSTR,
        models={"type": ["array", "null"], "items": STR},
        budgets={"type": "object", "additionalProperties": INT},
        prefix={**STR, "description": "how the key begins: cgw_<id>_"},
        created_at=TIME,
        expires_at=NTIME,
        created_by=NSTR,
    ),
    "ApiKeyCreated": {
        "allOf": [
            ref("ApiKey"),
            obj(
                ["success", "key"],
                success={"const": True},
                key={
                    **STR,
                    "description": "the key itself: shown this once, only its hash is kept",
                },
            ),
        ]
    },
    "ApiKeyList": obj(
        ["success", "api_keys", "total"],
        success={"const": True},
        api_keys={"type": "array", "items": ref("ApiKey")},
        total=INT,
    ),
    "ApiKeyEnvelope": obj(["success", "api_key"], success={"const": True}, api_key=ref("ApiKey")),
    "ApiKeyRevoked": obj(
        ["success", "id", "revoked"], success={"const": True}, id=STR, revoked={"const": True}
    ),
    "UsageSums": obj(
        ["input_tokens", "output_tokens", "cost", "cost_nusd", "requests"],
        input_tokens=INT,
        output_tokens=INT,
        cost={**NUM, "description": "USD"},
        cost_nusd={**INT, "description": "the same in nano-USD (1e-9): exact, for sums"},
        requests=INT,
    ),
    "UsageGroup": {
        "type": "object",
        "description": "the group's value of each group_by dimension",
        "additionalProperties": STR,
    },
    "UsagePoint": {
        "allOf": [
            ref("UsageSums"),
            obj(
                ["bucket", "group"],
                bucket={**TIME, "description": "the bucket's start, UTC"},
                group=ref("UsageGroup"),
            ),
        ]
    },
    "UsageGroupTotal": {"allOf": [ref("UsageSums"), obj(["group"], group=ref("UsageGroup"))]},
    "Usage": obj(
        ["success", "org_ids", "bucket", "group_by", "from", "to", "totals", "series", "groups"],
        success={"const": True},
        org_ids={"type": "array", "items": STR},
        bucket={"enum": ["hour", "day", "month"]},
        group_by={"type": "array", "items": {"enum": list(USAGE_DIMENSIONS)}},
        **{"from": {**TIME, "description": "the window summed (cut to what is retained)"}},
        to=TIME,
        totals=ref("UsageSums"),
        series={"type": "array", "items": ref("UsagePoint")},
        groups={
            "type": "array",
            "items": ref("UsageGroupTotal"),
            "description": "each group over the whole window, the costliest first",
        },
    ),
    # -- OpenAI-compatible -----------------------------------------------------------------------
    "OpenAIUsage": obj(
        ["prompt_tokens", "completion_tokens", "total_tokens"],
        prompt_tokens=INT,
        completion_tokens=INT,
        total_tokens=INT,
    ),
    "ChatCompletion": obj(
        ["id", "object", "created", "model", "choices", "usage"],
        id=STR,
        object={"const": "chat.completion"},
        created=INT,
        model=STR,
        choices={
            "type": "array",
            "items": obj(
                ["index", "message", "finish_reason"],
                index=INT,
                finish_reason=NSTR,
                message=obj(["role", "content"], role={"const": "assistant"}, content=NSTR),
            ),
        },
        usage=ref("OpenAIUsage"),
    ),
    "ChatCompletionChunk": obj(
        ["id", "object", "created", "model", "choices"],
        id=STR,
        object={"const": "chat.completion.chunk"},
        created=INT,
        model=STR,
        choices={
            "type": "array",
            "items": obj(
                ["index", "delta"],
                index=INT,
                finish_reason=NSTR,
                delta=obj([], role=STR, content=NSTR),
            ),
        },
        usage={"anyOf": [ref("OpenAIUsage"), {"type": "null"}]},
    ),
    "ChatCompletionStreamFrame": {
        "description": "`data: <chunk>` frames, then `data: [DONE]`; a failed answer ends with "
        'one `data: {"error": ...}` frame and no [DONE].',
        "oneOf": [
            obj(["data"], data=ref("ChatCompletionChunk")),
            obj(["data"], data={"const": "[DONE]"}),
            obj(["data"], data=ref("OpenAIError")),
        ],
    },
    "OpenAIModel": obj(
        ["id", "object", "created", "owned_by"],
        id=STR,
        object={"const": "model"},
        created=INT,
        owned_by=STR,
    ),
    "OpenAIModelList": obj(
        ["object", "data"],
        object={"const": "list"},
        data={"type": "array", "items": ref("OpenAIModel")},
    ),
    # -- Anthropic-compatible --------------------------------------------------------------------
    "AnthropicUsage": obj(["input_tokens", "output_tokens"], input_tokens=INT, output_tokens=INT),
    "AnthropicMessage": obj(
        ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        id=STR,
        type={"const": "message"},
        role={"const": "assistant"},
        model=STR,
        content={"type": "array", "items": obj(["type", "text"], type={"const": "text"}, text=STR)},
        stop_reason=NSTR,
        stop_sequence=NSTR,
        usage=ref("AnthropicUsage"),
    ),
    "AnthropicStreamFrame": {
        "description": "message_start, content_block_start, ping, content_block_delta..., "
        "content_block_stop, message_delta, message_stop; or `error`.",
        "oneOf": [
            obj(
                ["event", "data"],
                event={
                    "enum": [
                        "message_start",
                        "content_block_start",
                        "ping",
                        "content_block_delta",
                        "content_block_stop",
                        "message_delta",
                        "message_stop",
                    ]
                },
                data=obj(["type"], type=STR),
            ),
            obj(["event", "data"], event={"const": "error"}, data=ref("AnthropicError")),
        ],
    },
    "AnthropicModel": obj(
        ["type", "id", "display_name", "created_at"],
        type={"const": "model"},
        id=STR,
        display_name=STR,
        created_at=TIME,
    ),
    "AnthropicModelList": obj(
        ["data", "has_more", "first_id", "last_id"],
        data={"type": "array", "items": ref("AnthropicModel")},
        has_more=BOOL,
        first_id=NSTR,
        last_id=NSTR,
    ),
}


# -- the registry: one entry per (method, path) ---------------------------------------------------

OPERATIONS: dict[tuple[str, str], Operation] = {}
CS = "Conversation Service"
RS = "Repository style"
PAGES = "Pages"


def operation(method: str, path: str, op: Operation) -> None:
    OPERATIONS[(method.upper(), path)] = op


operation(
    "GET",
    "/healthz",
    Operation(
        "Liveness: 200 while the process runs",
        "Health",
        auth="none",
        responses={200: json_response("alive", "Health")},
    ),
)
operation(
    "GET",
    "/readyz",
    Operation(
        "Readiness: 200 only when Redis answers",
        "Health",
        auth="none",
        responses={200: json_response("ready", "Health")},
        errors=(503,),
    ),
)
operation(
    "GET",
    "/metrics",
    Operation(
        "Prometheus metrics (the platform admin's token)",
        "Health",
        responses={200: text_response("Prometheus text format", "text/plain")},
        errors=(401, 403),
    ),
)

# Conversation Service (seed 003)
operation(
    "POST",
    "/api/conversation/create",
    Operation(
        "Create a conversation",
        CS,
        params=(ORG_ID,),
        body=conversation_service.CreateConversation,
        body_name="CreateConversation",
        responses={201: json_response("the new conversation", "Conversation")},
        errors=(400, 401, 403, 413, 500),
    ),
)
operation(
    "POST",
    "/api/conversation/create_session",
    Operation(
        "Open a chat session on a model",
        CS,
        params=(ORG_ID,),
        body=conversation_service.CreateSession,
        body_name="CreateSession",
        responses={201: json_response("the new session", "ChatSession")},
        errors=(400, 401, 403, 404, 413, 500),
    ),
)
operation(
    "POST",
    "/api/conversation/stream_chat",
    Operation(
        "Send a message; the answer streams back as server-sent events",
        CS,
        params=(ORG_ID,),
        body=conversation_service.StreamChat,
        body_name="StreamChat",
        responses={200: sse_response("start, content..., error?, end")},
        errors=PROMPT_ERRORS,
        description="A pre-policy block answers 400 `policy_blocked` before any stream starts. "
        "`on_disconnect: continue` keeps generating when the client goes away; "
        "GET /api/conversation/stream attaches again.",
    ),
)
operation(
    "GET",
    "/api/conversation/list",
    Operation(
        "The conversations the caller may see, newest first",
        CS,
        params=(ORG_ID, LIMIT, OFFSET),
        responses={200: json_response("a page of conversations", "ConversationList")},
        errors=(400, 401, 403, 500),
    ),
)
operation(
    "GET",
    "/api/conversation/get_with_sessions",
    Operation(
        "A conversation with its chat sessions",
        CS,
        params=(ORG_ID, CONVERSATION_ID),
        responses={200: json_response("the conversation", "ConversationWithSessions")},
        errors=READ_ERRORS,
    ),
)
operation(
    "GET",
    "/api/conversation/messages",
    Operation(
        "A conversation's messages, oldest first",
        CS,
        params=(
            ORG_ID,
            CONVERSATION_ID,
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20}),
            OFFSET,
        ),
        responses={200: json_response("a page of messages", "MessagePage")},
        errors=READ_ERRORS,
    ),
)
operation(
    "GET",
    "/api/conversation/stream",
    Operation(
        "Attach to a running or finished stream (resume)",
        CS,
        auth="stream",
        params=(
            Param("org_id", {"type": "string"}, "the caller's org (with a bearer token)"),
            Param("message_id", {"type": "string", "minLength": 1}, required=True),
            RESUME_TOKEN,
            LAST_EVENT_ID,
            LAST_EVENT_ID_QUERY,
        ),
        responses={200: sse_response("start, the content events after Last-Event-ID, error?, end")},
        errors=READ_ERRORS,
        description="Replays the stream from its resume log (kept an hour after the end), then "
        "follows it live. Works with a bearer token, or with `resume_token` for a "
        "browser's native EventSource, whose automatic reconnect sends Last-Event-ID.",
    ),
)
operation(
    "POST",
    "/api/conversation/stop",
    Operation(
        "Stop an answer being generated",
        CS,
        params=(ORG_ID,),
        body=streams.StopBody,
        body_name="StopStream",
        responses={
            202: json_response(
                "stopping: the stream ends with finish_reason cancelled", "StopAccepted"
            )
        },
        errors=(400, 401, 403, 404, 409, 413, 500),
    ),
)

# Repository style (seeds 000, 001, 002, 004)
ORG_QUERY = Param("org_id", {"type": "string"}, "the org (required for the platform admin)")
operation(
    "POST",
    "/conversation",
    Operation(
        "Create a conversation for a repository",
        RS,
        body=repository_style.CreateConversation,
        body_name="CreateRepoConversation",
        responses={200: json_response("created", "RepoConversationCreated")},
        errors=(400, 401, 403, 404, 413, 500),
    ),
)
operation(
    "GET",
    "/conversation",
    Operation(
        "List conversations, newest first",
        RS,
        params=(
            ORG_QUERY,
            TAKE,
            SKIP,
            Param("from", DATE),
            Param("to", DATE),
            Param("userId", STR),
            Param("workspaceId", STR),
            Param("repoId", STR),
        ),
        responses={200: json_response("a page of conversations", "RepoConversationList")},
        errors=(400, 401, 403, 500),
    ),
)
operation(
    "POST",
    "/conversation/{conversation_id}/prompt",
    Operation(
        "Prompt a conversation: a JSON answer, or SSE with `Accept: text/event-stream` or "
        '`"stream": true`',
        RS,
        body=repository_style.SendPrompt,
        body_name="SendPrompt",
        responses={
            200: {
                "description": "the whole answer (JSON), or the stream (SSE)",
                "content": {
                    JSON: {"schema": ref("PromptAnswer")},
                    SSE: sse_response("")["content"][SSE],
                },
            }
        },
        errors=PROMPT_ERRORS,
    ),
)
operation(
    "GET",
    "/conversation/{conversation_id}/messages",
    Operation(
        "A conversation's messages, oldest first",
        RS,
        params=(TAKE, SKIP),
        responses={200: json_response("a page of messages", "RepoMessagePage")},
        errors=READ_ERRORS,
    ),
)
operation(
    "DELETE",
    "/conversation/{conversation_id}",
    Operation(
        "Delete a conversation (soft delete)",
        RS,
        responses={200: json_response("deleted", "RepoConversationDeleted")},
        errors=READ_ERRORS,
    ),
)
operation(
    "GET",
    "/conversation/{conversation_id}/messages/{message_id}/stream",
    Operation(
        "Attach to a running or finished stream (resume)",
        RS,
        auth="stream",
        params=(RESUME_TOKEN, LAST_EVENT_ID, LAST_EVENT_ID_QUERY),
        responses={200: sse_response("start, the content events after Last-Event-ID, error?, end")},
        errors=READ_ERRORS,
    ),
)
operation(
    "POST",
    "/conversation/{conversation_id}/stop",
    Operation(
        "Stop the answer the conversation is generating",
        RS,
        responses={202: json_response("stopping", "StopAccepted")},
        errors=(401, 403, 404, 409, 500),
    ),
)

# Admin
ADMIN = "Admin"
ADMIN_ERRORS = (400, 401, 403, 404, 500)
operation(
    "GET",
    "/admin/repositories",
    Operation(
        "List repositories (org admins: their org)",
        ADMIN,
        params=(ORG_QUERY,),
        responses={200: json_response("the repositories", "RepositoryList")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "GET",
    "/admin/repositories/{repo_id}",
    Operation(
        "A repository",
        ADMIN,
        responses={200: json_response("the repository", "RepositoryEnvelope")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "PUT",
    "/admin/repositories/{repo_id}",
    Operation(
        "Create or update a repository",
        ADMIN,
        body=admin.PutRepository,
        body_name="PutRepository",
        responses={
            200: json_response("updated", "RepositoryEnvelope"),
            201: json_response("created", "RepositoryEnvelope"),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
    ),
)
operation(
    "DELETE",
    "/admin/repositories/{repo_id}",
    Operation(
        "Delete a repository",
        ADMIN,
        responses={200: json_response("deleted", "RepositoryDeleted")},
        errors=(*ADMIN_ERRORS, 409),
    ),
)
operation(
    "GET",
    "/admin/events",
    Operation(
        "The org's audit trail, newest first",
        ADMIN,
        params=(
            ORG_QUERY,
            Param("take", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}),
            Param("from", DATE),
            Param("to", DATE),
            Param(
                "before",
                {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                "an event id: the next (older) page",
            ),
        ),
        responses={200: json_response("a page of events", "AuditEventPage")},
        errors=ADMIN_ERRORS,
    ),
)

# Provider connections (/admin/models)
MODEL_SCOPE = Param(
    "org_id",
    {"type": "string"},
    "the platform admin: the org whose own entries to include (none: every org's entries)",
)
operation(
    "GET",
    "/admin/models",
    Operation(
        "List the models: the config file's, every org's, and the org's own",
        ADMIN,
        params=(MODEL_SCOPE,),
        responses={200: json_response("the entries, with their last connection test", "ModelList")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "GET",
    "/admin/models/{model_id}",
    Operation(
        "A model entry",
        ADMIN,
        params=(MODEL_SCOPE,),
        responses={200: json_response("the entry", "ModelEnvelope")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "PUT",
    "/admin/models/{model_id}",
    Operation(
        "Create or replace a model entry (org admins: their org's own)",
        ADMIN,
        body=models.PutModel,
        body_name="PutModel",
        body_from_path=("id",),
        responses={
            200: json_response("replaced", "ModelEnvelope"),
            201: json_response("created", "ModelEnvelope"),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
        description="The config file's `[[models]]` fields plus `price_input_per_mtok` and "
        "`price_output_per_mtok` (USD per million tokens). The whole entry is replaced. "
        "Without `org_id` (platform admin only) every org may use it. An org's own entry "
        "answers with its repositories' provider keys, never the platform's credentials; an "
        "org admin sets no `base_url`. A config file's id: 409 `model_in_config`; over the "
        "bound (1000 shared, 100 per org): 409 `too_many_models`. Every worker serves the "
        "change within a second; a running stream finishes on the entry it started with.",
    ),
)
operation(
    "DELETE",
    "/admin/models/{model_id}",
    Operation(
        "Delete a model entry: new sessions on it get 404, running streams finish",
        ADMIN,
        params=(MODEL_SCOPE,),
        responses={200: json_response("deleted", "ModelDeleted")},
        errors=(*ADMIN_ERRORS, 409),
    ),
)
operation(
    "POST",
    "/admin/models/{model_id}/test",
    Operation(
        "Connection test: one tiny upstream call, timed, or the provider's error",
        ADMIN,
        params=(
            MODEL_SCOPE,
            Param(
                "repository_id",
                {"type": "string", "maxLength": 200},
                "test with this repository's own provider key",
            ),
        ),
        responses={200: json_response("the result (also kept as the entry's health)", "ModelTest")},
        errors=(*ADMIN_ERRORS, 409),
        description="One prompt of one word, one output token at most, within 15 s. One test "
        "of a model at a time across workers (else 409 `test_running` with Retry-After). "
        "Org admins test their org's own entries only.",
    ),
)

# Repository AI keys
operation(
    "GET",
    "/admin/repositories/{repo_id}/provider-keys",
    Operation(
        "A repository's own provider keys (never the keys: fingerprint and last 4)",
        ADMIN,
        responses={200: json_response("the keys", "ProviderKeyList")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "PUT",
    "/admin/repositories/{repo_id}/provider-keys/{provider}",
    Operation(
        "Set or replace a repository's key for one provider",
        ADMIN,
        body=provider_keys.PutProviderKey,
        body_name="PutProviderKey",
        responses={
            200: json_response("replaced (rotated)", "ProviderKeyEnvelope"),
            201: json_response("set", "ProviderKeyEnvelope"),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
        description="Sealed with AES-GCM under the gateway's key-encryption key "
        "(GATEWAY_ENCRYPTION_KEY); without one: 409 `encryption_key_missing`. Used for every "
        "prompt of the repository's conversations on a model of that provider, in both API "
        "styles. A config file's repository: 409 `repository_in_config`.",
    ),
)
operation(
    "DELETE",
    "/admin/repositories/{repo_id}/provider-keys/{provider}",
    Operation(
        "Delete a repository's key for one provider",
        ADMIN,
        responses={200: json_response("deleted", "ProviderKeyDeleted")},
        errors=(*ADMIN_ERRORS, 409),
    ),
)

# Gateway API keys
operation(
    "POST",
    "/admin/api-keys",
    Operation(
        "Mint an API key (shown this once)",
        ADMIN,
        body=KeySpec,
        body_name="CreateApiKey",
        responses={201: json_response("the key, and what it is", "ApiKeyCreated")},
        errors=(*ADMIN_ERRORS, 409, 413),
        description="Nobody mints a key above their own role; org admins mint in their org. "
        "`models` limits the models it may use, `expires_at` ends it, `budgets` give it "
        "request and token limits of its own. At most 1000 keys per org (409 `too_many_keys`).",
    ),
)
operation(
    "GET",
    "/admin/api-keys",
    Operation(
        "List an org's API keys (never the keys)",
        ADMIN,
        params=(ORG_QUERY,),
        responses={200: json_response("the keys", "ApiKeyList")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "GET",
    "/admin/api-keys/{key_id}",
    Operation(
        "An API key",
        ADMIN,
        responses={200: json_response("the key", "ApiKeyEnvelope")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "DELETE",
    "/admin/api-keys/{key_id}",
    Operation(
        "Revoke an API key: it stops at once on every worker",
        ADMIN,
        responses={200: json_response("revoked", "ApiKeyRevoked")},
        errors=ADMIN_ERRORS,
    ),
)

# Usage and cost
operation(
    "GET",
    "/usage",
    Operation(
        "Tokens, requests and cost: totals, a time series and groups",
        "Usage",
        params=(
            Param("org_id", {"type": "string"}, "the org (the platform admin: none for all)"),
            Param("from", DATE),
            Param("to", DATE),
            Param("bucket", {"enum": ["hour", "day", "month"], "default": "day"}, "UTC buckets"),
            Param(
                "group_by",
                {"type": "string", "maxLength": 100},
                "comma-separated: " + ", ".join(USAGE_DIMENSIONS),
            ),
        ),
        responses={200: json_response("the usage", "Usage")},
        errors=(400, 401, 403, 500),
        description="Under the conversations' role rules: an org admin sees the org's, a "
        "workspace admin the workspaces they manage and their own, a user their own. The "
        "window is cut to what the buckets keep (hours 8 days, days 400, months 25); a "
        "request that would sum more than 200,000 rows is refused with 400.",
    ),
)

# Policies and their violations
operation(
    "GET",
    "/admin/policies",
    Operation(
        "List policies (org admins: the global ones and their org's)",
        ADMIN,
        responses={200: json_response("the policies in force", "PolicyList")},
        errors=(401, 403, 500),
    ),
)
operation(
    "GET",
    "/admin/policies/{policy_id}",
    Operation(
        "A policy",
        ADMIN,
        responses={200: json_response("the policy", "PolicyEnvelope")},
        errors=ADMIN_ERRORS,
    ),
)
operation(
    "PUT",
    "/admin/policies/{policy_id}",
    Operation(
        "Create or replace a policy (org admins: scoped to their org)",
        ADMIN,
        body=PolicySpec,
        body_name="PutPolicy",
        body_from_path=("id",),
        responses={
            200: json_response("replaced", "PolicyEnvelope"),
            201: json_response("created", "PolicyEnvelope"),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
    ),
)
operation(
    "DELETE",
    "/admin/policies/{policy_id}",
    Operation(
        "Delete a policy made through the API",
        ADMIN,
        responses={200: json_response("deleted", "PolicyDeleted")},
        errors=(*ADMIN_ERRORS, 409),
    ),
)
operation(
    "GET",
    "/policy/violations",
    Operation(
        "Policy violations the caller may see (the conversations' role rules), newest first",
        "Policies",
        params=(
            ORG_QUERY,
            TAKE,
            SKIP,
            Param("from", DATE),
            Param("to", DATE),
            Param("policyId", STR),
            Param("userId", STR),
            Param("conversationId", STR),
        ),
        responses={200: json_response("a page of violations", "ViolationPage")},
        errors=(400, 401, 403, 500),
    ),
)

# OpenAI- and Anthropic-compatible (their own error shapes, so the official SDKs work)
OPENAI = "OpenAI-compatible"
ANTHROPIC = "Anthropic-compatible"
ANTHROPIC_VERSION = Param(
    "anthropic-version", STR, "present: answer in Anthropic's format", where="header"
)
operation(
    "POST",
    "/v1/chat/completions",
    Operation(
        "Chat Completions (OpenAI's format)",
        OPENAI,
        auth="compat",
        error_shape="OpenAIError",
        params=(CONVERSATION_HEADER,),
        body=openai_compat.CompletionRequest,
        body_name="ChatCompletionRequest",
        responses={
            200: {
                "description": "the completion (JSON), or chunks (SSE) with `stream: true`",
                "content": {
                    JSON: {"schema": ref("ChatCompletion")},
                    SSE: {"schema": ref("ChatCompletionStreamFrame")},
                },
            }
        },
        errors=COMPAT_ERRORS,
    ),
)
operation(
    "GET",
    "/v1/models",
    Operation(
        "The served models (OpenAI's list, or Anthropic's with `anthropic-version`)",
        OPENAI,
        auth="compat",
        error_shape="OpenAIError",
        params=(ANTHROPIC_VERSION,),
        responses={
            200: json_response(
                "the models", {"oneOf": [ref("OpenAIModelList"), ref("AnthropicModelList")]}
            )
        },
        errors=(401, 500),
    ),
)
operation(
    "GET",
    "/v1/models/{model_id}",
    Operation(
        "One served model (OpenAI's format, or Anthropic's with `anthropic-version`)",
        OPENAI,
        auth="compat",
        error_shape="OpenAIError",
        params=(ANTHROPIC_VERSION,),
        responses={
            200: json_response("the model", {"oneOf": [ref("OpenAIModel"), ref("AnthropicModel")]})
        },
        errors=(401, 404, 500),
    ),
)
operation(
    "POST",
    "/v1/messages",
    Operation(
        "Messages (Anthropic's format)",
        ANTHROPIC,
        auth="compat",
        error_shape="AnthropicError",
        params=(CONVERSATION_HEADER, ANTHROPIC_VERSION),
        body=anthropic_compat.MessagesRequest,
        body_name="AnthropicMessagesRequest",
        responses={
            200: {
                "description": "the message (JSON), or its events (SSE) with `stream: true`",
                "content": {
                    JSON: {"schema": ref("AnthropicMessage")},
                    SSE: {"schema": ref("AnthropicStreamFrame")},
                },
            }
        },
        errors=COMPAT_ERRORS,
    ),
)

# Pages a browser opens without a token
operation(
    "GET",
    "/",
    Operation(
        "The playground", PAGES, auth="none", responses={200: text_response("HTML", "text/html")}
    ),
)
operation(
    "GET",
    "/admin",
    Operation(
        "The admin page: usage and cost per day, models and their health, API keys, "
        "violations, audit events (its data come from the API, with the token entered in it)",
        PAGES,
        auth="none",
        responses={200: text_response("HTML", "text/html")},
    ),
)
operation(
    "GET",
    "/docs",
    Operation(
        "This document, rendered",
        PAGES,
        auth="none",
        responses={200: text_response("HTML", "text/html")},
    ),
)
operation(
    "GET",
    "/openapi.json",
    Operation(
        "This document",
        PAGES,
        auth="none",
        responses={200: json_response("OpenAPI 3.1", {"type": "object"})},
    ),
)
operation(
    "GET",
    "/static/{file}",
    Operation(
        "The pages' scripts and styles",
        PAGES,
        auth="none",
        responses={200: {"description": "the file", "content": {"*/*": {}}}},
        errors=(404,),
    ),
)


# -- building the document ----------------------------------------------------------------------

_CONVERTER = re.compile(r"\{(\w+)(?::\w+)?\}")


def route_operations(routes: Iterable[BaseRoute]) -> list[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route, in the app's order; HEAD is implied by GET."""
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Route):
            path = _CONVERTER.sub(r"{\1}", route.path)
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, path))
        elif isinstance(route, Mount):
            found.append(("GET", route.path.rstrip("/") + "/{file}"))
    return found


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    schemes: dict[str, list[dict[str, list[str]]]] = {
        "none": [],
        "bearer": [{"bearer": []}],
        "stream": [{"bearer": []}, {"resumeToken": []}],
        "compat": [{"bearer": []}, {"apiKey": []}],
    }
    return schemes[auth]


def _param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "schema": p.schema}
    if p.required:
        out["required"] = True
    if p.description:
        out["description"] = p.description
    return out


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            **({"description": PATH_PARAMS[name]} if name in PATH_PARAMS else {}),
        }
        for name in re.findall(r"\{(\w+)\}", path)
    ]


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v, renames) for k, v in node.items()}
        target = out.get("$ref")
        if isinstance(target, str) and target.startswith(REF):
            out["$ref"] = REF + renames.get(target[len(REF) :], target[len(REF) :])
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def add_model(
    schemas: dict[str, Any],
    name: str,
    model: type[BaseModel],
    *,
    mode: Literal["validation", "serialization"] = "validation",
    extra: dict[str, Any] | None = None,
    optional: Iterable[str] = (),
) -> None:
    """The model's JSON schema as component `name`; nested models become components named
    `name` + their class name (two APIs' `InMessage` classes must not collide). `extra`
    adds properties; `optional` drops names from `required`."""
    schema = model.model_json_schema(ref_template=REF + "{model}", mode=mode)
    nested = schema.pop("$defs", {})
    renames = {k: f"{name}{k}" for k in nested}
    for key, sub in nested.items():
        schemas[renames[key]] = _rewrite_refs(sub, renames)
    schema = {**_rewrite_refs(schema, renames), "title": name}
    if extra:
        schema["properties"] = {**schema.get("properties", {}), **extra}
    required = [r for r in schema.get("required", []) if r not in set(optional)]
    schema.pop("required", None)
    if required:
        schema["required"] = required
    schemas[name] = schema


# response components made from pydantic models: name -> (model, added properties)
MODEL_SCHEMAS: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
    "Policy": (
        PolicySpec,
        {"source": {"enum": ["file", "api"], "description": "the config file, or the admin API"}},
    ),
    "ModelEntry": (
        ModelConfig,
        {
            "source": {"enum": ["config", "api"]},
            "org_id": {
                "type": ["string", "null"],
                "description": "the org whose own entry it is; null: every org's",
            },
            "prices": ref("ModelPrices"),
            "created_at": NTIME,
            "updated_at": NTIME,
            "created_by": NSTR,
            "health": {
                "anyOf": [ref("ModelHealth"), {"type": "null"}],
                "description": "the last connection test",
            },
        },
    ),
}


def _error_responses(op: Operation) -> dict[str, Any]:
    out = {}
    for status in op.errors:
        title, codes = ERROR_STATUSES[status]
        response: dict[str, Any] = {
            "description": f"{title}" + (f" (codes: {codes})" if op.error_shape == "Error" else ""),
            "content": {JSON: {"schema": ref(op.error_shape)}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
        out[str(status)] = response
    if op.auth != "none" and "401" not in out:
        out["401"] = {
            "description": ERROR_STATUSES[401][0],
            "content": {JSON: {"schema": ref(op.error_shape)}},
        }
    return out


def _operation_object(
    method: str, path: str, op: Operation, schemas: dict[str, Any]
) -> dict[str, Any]:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    out: dict[str, Any] = {
        "operationId": f"{method.lower()}_{slug}",
        "summary": op.summary,
        "tags": [op.tag],
        "security": _security(op.auth),
    }
    if op.description:
        out["description"] = op.description
    params = [*_path_params(path), *(_param(p) for p in op.params)]
    if params:
        out["parameters"] = params
    if op.body is not None:
        name = op.body_name or op.body.__name__
        add_model(schemas, name, op.body, optional=op.body_from_path)
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(name)}}}
    responses = {str(status): response for status, response in sorted(op.responses.items())}
    responses.update(_error_responses(op))
    out["responses"] = dict(sorted(responses.items()))
    out.update(op.extra)
    return out


def undocumented_stub(method: str, path: str) -> dict[str, Any]:
    return {
        "summary": f"{method} {path} (not documented yet)",
        "x-undocumented": True,
        **({"parameters": params} if (params := _path_params(path)) else {}),
        "responses": {
            "default": {
                "description": "not documented yet: add an entry to "
                "OPERATIONS in gateway/api/openapi.py"
            }
        },
    }


def build_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    schemas = copy.deepcopy(SCHEMAS)
    for name, (model, extra) in MODEL_SCHEMAS.items():
        add_model(schemas, name, model, mode="serialization", extra=extra)
    paths: dict[str, dict[str, Any]] = {}
    for method, path in route_operations(routes):
        op = OPERATIONS.get((method, path))
        item = paths.setdefault(path, {})
        item[method.lower()] = (
            _operation_object(method, path, op, schemas) if op else undocumented_stub(method, path)
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chat-gateway",
            "version": __version__,
            "description": "An LLM chat gateway: conversations in Redis, answers streamed as "
            'server-sent events. Errors: `{"success": false, "code", "message"}` '
            "(the OpenAI- and Anthropic-compatible routes use those APIs' shapes).",
        },
        "tags": [
            {"name": t}
            for t in dict.fromkeys(
                OPERATIONS[k].tag for k in route_operations(routes) if k in OPERATIONS
            )
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the admin token, an API key (cgw_...) or a JWT",
                },
                "resumeToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "resume_token",
                    "description": "the `resume_token` of a stream's start event",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "the same tokens, as Anthropic's clients send them",
                },
            },
        },
    }


def undocumented(document: dict[str, Any]) -> list[str]:
    """`METHOD path` of every route the document has no entry for."""
    return [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if op.get("x-undocumented")
    ]
