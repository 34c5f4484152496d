"""The OpenAPI 3.1 document served at /openapi.json, built from the app's route table and the
models the handlers themselves use: request bodies (each route's Body model), query
parameters (gateway/api/queries.py), answers and stream frames (gateway/api/schemas/).

Every route the app registers appears in the document. A route with no entry in OPERATIONS
still appears, marked `x-undocumented` (tests/api/test_openapi.py fails on it), so a new
route needs one `("GET", "/path"): Operation(...)` entry here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import CoreSchema
from starlette.routing import BaseRoute, Mount, Route

from gateway import __version__
from gateway.access.api_keys import KeySpec
from gateway.api import (
    admin,
    conversation_service,
    models,
    policies,
    provider_keys,
    queries,
    repository_style,
    streams,
)
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import (
    anthropic_request,
    completions,
    count_tokens,
    embeddings,
    openai_request,
    responses_input,
)
from gateway.api.compat import common as compat
from gateway.api.schemas import admin as admin_answers
from gateway.api.schemas import anthropic as anthropic_answers
from gateway.api.schemas import anthropic_tokens as token_answers
from gateway.api.schemas import api_keys as key_answers
from gateway.api.schemas import conversation_service as service_answers
from gateway.api.schemas import models as model_answers
from gateway.api.schemas import openai as openai_answers
from gateway.api.schemas import openai_completions as completion_answers
from gateway.api.schemas import openai_embeddings as embedding_answers
from gateway.api.schemas import openai_responses as response_answers
from gateway.api.schemas import provider_keys as provider_key_answers
from gateway.api.schemas import repository as repository_answers
from gateway.api.schemas import usage as usage_answers
from gateway.api.schemas.common import Error, Health
from gateway.api.schemas.stream import ChatStreamEvent, StopAccepted
from gateway.policy import PolicySpec

REF = "#/components/schemas/"
JSON = "application/json"
SSE = "text/event-stream"
Model = type[BaseModel]
Auth = Literal["none", "bearer", "stream", "compat"]


def ref(model: Model | str) -> dict[str, str]:
    return {"$ref": REF + (model if isinstance(model, str) else model.__name__)}


# -- what an entry says about one operation ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A success answer: the JSON of a model (of one of several), the SSE frames of a model,
    and/or a body of another media type."""

    description: str
    json: Model | tuple[Model, ...] | None = None
    sse: Model | None = None
    media: str | None = None
    schema: dict[str, Any] | None = None  # of the `media` body; default a string


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    tag: str
    replies: dict[int, Reply]  # success status -> answer
    errors: tuple[int, ...] = ()  # error statuses, answered in `error_shape`
    query: type[queries.Query] | None = None
    headers: tuple[Header, ...] = ()
    body: Model | None = None
    body_name: str | None = None  # its component name; default the class name
    body_from_path: tuple[str, ...] = ()  # body fields the route fills in from the path
    auth: Auth = "bearer"
    error_shape: Model = Error
    description: str = ""


# -- what many operations share ----------------------------------------------------------------

LAST_EVENT_ID = Header(
    "Last-Event-ID",
    {"type": "string", "pattern": queries.LAST_EVENT_ID},
    "`<message_id>:<seq>` of the last content event seen: the replay continues after it "
    "(EventSource sends it on its own when it reconnects)",
)
CONVERSATION_HEADER = Header(
    "X-Conversation-Id",
    {"type": "string", "minLength": 1, "maxLength": compat.MAX_CONVERSATION_ID},
    "append the exchange to this stored conversation",
)
ANTHROPIC_VERSION = Header(
    anthropic_compat.VERSION_HEADER,
    {"type": "string"},
    "present: answer in Anthropic's format",
)
PATH_PARAMS: dict[str, dict[str, str]] = {
    "conversation_id": {"description": "the conversation's id"},
    "message_id": {
        "description": "the assistant message's id (the `message_id` of the `start` event)"
    },
    "repo_id": {
        "description": "the repository's id: 1-200 letters, digits, `.` `_` `:` `-`",
        "pattern": admin.REPO_ID.pattern,
    },
    "model_id": {"description": "a served model's id"},
    "response_id": {"description": "a stored response's id (resp_...)"},
    "provider": {"description": "`openai` or `anthropic`"},
    "key_id": {"description": "an API key's id: the 12 hex digits after `cgw_` in the key"},
    "policy_id": {
        "description": "a policy id: 1-200 letters, digits, `.` `_` `:` `-`",
        "pattern": policies.POLICY_ID.pattern,
    },
    "file": {"description": "a file of the package's static folder"},
}
X_SSE = (
    "each frame of the stream is one of the schema's alternatives; `data` is one line of "
    "JSON; `: ping` comment lines keep the connection open"
)

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
ADMIN_ERRORS = (400, 401, 403, 404, 500)
COMPAT_ERRORS = (400, 401, 403, 404, 413, 429, 500, 502)
STREAM = "start, content..., error?, end"
RESUMED = "start, the content events after Last-Event-ID, error?, end"

CS = "Conversation Service"
RS = "Repository style"
ADMIN = "Admin"
OPENAI = "OpenAI-compatible"
ANTHROPIC = "Anthropic-compatible"
PAGES = "Pages"
HTML = Reply("HTML", media="text/html")

# -- the registry: one entry per (method, path) ---------------------------------------------------

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation(
        "Liveness: 200 while the process runs",
        "Health",
        {200: Reply("alive", Health)},
        auth="none",
    ),
    ("GET", "/readyz"): Operation(
        "Readiness: 200 only when Redis answers",
        "Health",
        {200: Reply("ready", Health)},
        errors=(503,),
        auth="none",
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics (the platform admin's token)",
        "Health",
        {200: Reply("Prometheus text format", media="text/plain")},
        errors=(401, 403),
    ),
    # Conversation Service (seed 003)
    ("POST", "/api/conversation/create"): Operation(
        "Create a conversation",
        CS,
        {201: Reply("the new conversation", service_answers.Conversation)},
        errors=(400, 401, 403, 413, 500),
        query=queries.OrgQuery,
        body=conversation_service.CreateConversation,
    ),
    ("POST", "/api/conversation/create_session"): Operation(
        "Open a chat session on a model",
        CS,
        {201: Reply("the new session", service_answers.ChatSession)},
        errors=(400, 401, 403, 404, 413, 500),
        query=queries.OrgQuery,
        body=conversation_service.CreateSession,
    ),
    ("POST", "/api/conversation/stream_chat"): Operation(
        "Send a message; the answer streams back as server-sent events",
        CS,
        {200: Reply(STREAM, sse=ChatStreamEvent)},
        errors=PROMPT_ERRORS,
        query=queries.OrgQuery,
        body=conversation_service.StreamChat,
        description="A pre-policy block answers 400 `policy_blocked` before any stream starts. "
        "`on_disconnect: continue` keeps generating when the client goes away; "
        "GET /api/conversation/stream attaches again.",
    ),
    ("GET", "/api/conversation/list"): Operation(
        "The conversations the caller may see, newest first",
        CS,
        {200: Reply("a page of conversations", service_answers.ConversationList)},
        errors=(400, 401, 403, 500),
        query=queries.ConversationListQuery,
    ),
    ("GET", "/api/conversation/get_with_sessions"): Operation(
        "A conversation with its chat sessions",
        CS,
        {200: Reply("the conversation", service_answers.ConversationWithSessions)},
        errors=READ_ERRORS,
        query=queries.ConversationQuery,
    ),
    ("GET", "/api/conversation/messages"): Operation(
        "A conversation's messages, oldest first",
        CS,
        {200: Reply("a page of messages", service_answers.MessagePage)},
        errors=READ_ERRORS,
        query=queries.MessagesQuery,
    ),
    ("GET", "/api/conversation/stream"): Operation(
        "Attach to a running or finished stream (resume)",
        CS,
        {200: Reply(RESUMED, sse=ChatStreamEvent)},
        errors=READ_ERRORS,
        query=queries.AttachQuery,
        headers=(LAST_EVENT_ID,),
        auth="stream",
        description="Replays the stream from its resume log (kept an hour after the end), then "
        "follows it live. Works with a bearer token, or with `resume_token` for a "
        "browser's native EventSource, whose automatic reconnect sends Last-Event-ID.",
    ),
    ("POST", "/api/conversation/stop"): Operation(
        "Stop an answer being generated",
        CS,
        {202: Reply("stopping: the stream ends with finish_reason cancelled", StopAccepted)},
        errors=(400, 401, 403, 404, 409, 413, 500),
        query=queries.OrgQuery,
        body=streams.StopBody,
        body_name="StopStream",
    ),
    # Repository style (seeds 000, 001, 002, 004)
    ("POST", "/conversation"): Operation(
        "Create a conversation for a repository",
        RS,
        {200: Reply("created", repository_answers.RepoConversationCreated)},
        errors=(400, 401, 403, 404, 413, 500),
        body=repository_style.CreateConversation,
        body_name="CreateRepoConversation",
    ),
    ("GET", "/conversation"): Operation(
        "List conversations, newest first",
        RS,
        {200: Reply("a page of conversations", repository_answers.RepoConversationList)},
        errors=(400, 401, 403, 500),
        query=queries.RepoConversationsQuery,
    ),
    ("POST", "/conversation/{conversation_id}/prompt"): Operation(
        "Prompt a conversation: a JSON answer, or SSE with `Accept: text/event-stream` or "
        '`"stream": true`',
        RS,
        {
            200: Reply(
                "the whole answer (JSON), or the stream (SSE)",
                repository_answers.PromptAnswer,
                sse=ChatStreamEvent,
            )
        },
        errors=PROMPT_ERRORS,
        body=repository_style.SendPrompt,
    ),
    ("GET", "/conversation/{conversation_id}/messages"): Operation(
        "A conversation's messages, oldest first",
        RS,
        {200: Reply("a page of messages", repository_answers.RepoMessagePage)},
        errors=READ_ERRORS,
        query=queries.RepoMessagesQuery,
    ),
    ("DELETE", "/conversation/{conversation_id}"): Operation(
        "Delete a conversation (soft delete)",
        RS,
        {200: Reply("deleted", repository_answers.RepoConversationDeleted)},
        errors=READ_ERRORS,
    ),
    ("GET", "/conversation/{conversation_id}/messages/{message_id}/stream"): Operation(
        "Attach to a running or finished stream (resume)",
        RS,
        {200: Reply(RESUMED, sse=ChatStreamEvent)},
        errors=READ_ERRORS,
        query=queries.ResumeQuery,
        headers=(LAST_EVENT_ID,),
        auth="stream",
    ),
    ("POST", "/conversation/{conversation_id}/stop"): Operation(
        "Stop the answer the conversation is generating",
        RS,
        {202: Reply("stopping", StopAccepted)},
        errors=(401, 403, 404, 409, 500),
    ),
    # Admin: repositories and the audit trail
    ("GET", "/admin/repositories"): Operation(
        "List repositories (org admins: their org)",
        ADMIN,
        {200: Reply("the repositories", admin_answers.RepositoryList)},
        errors=ADMIN_ERRORS,
        query=queries.AdminOrgQuery,
    ),
    ("GET", "/admin/repositories/{repo_id}"): Operation(
        "A repository",
        ADMIN,
        {200: Reply("the repository", admin_answers.RepositoryEnvelope)},
        errors=ADMIN_ERRORS,
        query=queries.AdminOrgQuery,
    ),
    ("PUT", "/admin/repositories/{repo_id}"): Operation(
        "Create or update a repository",
        ADMIN,
        {
            200: Reply("updated", admin_answers.RepositoryEnvelope),
            201: Reply("created", admin_answers.RepositoryEnvelope),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
        body=admin.PutRepository,
        query=queries.AdminOrgQuery,
    ),
    ("DELETE", "/admin/repositories/{repo_id}"): Operation(
        "Delete a repository",
        ADMIN,
        {200: Reply("deleted", admin_answers.RepositoryDeleted)},
        errors=(*ADMIN_ERRORS, 409),
        query=queries.AdminOrgQuery,
    ),
    ("GET", "/admin/events"): Operation(
        "The org's audit trail, newest first",
        ADMIN,
        {200: Reply("a page of events", admin_answers.AuditEventPage)},
        errors=ADMIN_ERRORS,
        query=queries.EventsQuery,
    ),
    # Provider connections
    ("GET", "/admin/models"): Operation(
        "List the models: the config file's, every org's, and the org's own",
        ADMIN,
        {200: Reply("the entries, with their last connection test", model_answers.ModelList)},
        errors=ADMIN_ERRORS,
        query=queries.AdminOrgQuery,
    ),
    ("GET", "/admin/models/{model_id}"): Operation(
        "A model entry",
        ADMIN,
        {200: Reply("the entry", model_answers.ModelEnvelope)},
        errors=ADMIN_ERRORS,
        query=queries.AdminOrgQuery,
    ),
    ("PUT", "/admin/models/{model_id}"): Operation(
        "Create or replace a model entry (org admins: their org's own)",
        ADMIN,
        {
            200: Reply("replaced", model_answers.ModelEnvelope),
            201: Reply("created", model_answers.ModelEnvelope),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
        body=models.PutModel,
        body_from_path=("id",),
        description="The config file's `[[models]]` fields plus `price_input_per_mtok` and "
        "`price_output_per_mtok` (USD per million tokens). The whole entry is replaced. "
        "Without `org_id` (platform admin only) every org may use it. An org's own entry "
        "answers with its repositories' provider keys, never the platform's credentials; an "
        "org admin sets no `base_url`. A config file's id: 409 `model_in_config`; over the "
        "bound (1000 shared, 100 per org): 409 `too_many_models`. Every worker serves the "
        "change within a second; a running stream finishes on the entry it started with.",
    ),
    ("DELETE", "/admin/models/{model_id}"): Operation(
        "Delete a model entry: new sessions on it get 404, running streams finish",
        ADMIN,
        {200: Reply("deleted", model_answers.ModelDeleted)},
        errors=(*ADMIN_ERRORS, 409),
        query=queries.AdminOrgQuery,
    ),
    ("POST", "/admin/models/{model_id}/test"): Operation(
        "Connection test: one tiny upstream call, timed, or the provider's error",
        ADMIN,
        {200: Reply("the result (also kept as the entry's health)", model_answers.ModelTest)},
        errors=(*ADMIN_ERRORS, 409),
        query=queries.ModelTestQuery,
        description="One prompt of one word, one output token at most, within 15 s and the "
        "entry's own timeouts. One test of a model at a time across workers (else 409 "
        "`test_running` with Retry-After). Org admins test their org's own entries only.",
    ),
    # Repository AI keys
    ("GET", "/admin/repositories/{repo_id}/provider-keys"): Operation(
        "A repository's own provider keys (never the keys: a fingerprint and the last 4)",
        ADMIN,
        {200: Reply("the keys", provider_key_answers.ProviderKeyList)},
        errors=ADMIN_ERRORS,
        query=queries.AdminOrgQuery,
    ),
    ("PUT", "/admin/repositories/{repo_id}/provider-keys/{provider}"): Operation(
        "Set or replace a repository's key for one provider",
        ADMIN,
        {
            200: Reply("replaced (rotated)", provider_key_answers.ProviderKeyEnvelope),
            201: Reply("set", provider_key_answers.ProviderKeyEnvelope),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
        body=provider_keys.PutProviderKey,
        query=queries.AdminOrgQuery,
        description="Sealed with AES-GCM under the gateway's key-encryption key "
        "(GATEWAY_ENCRYPTION_KEY); without one: 409 `encryption_key_missing`. Used for every "
        "prompt of the repository's conversations on a model of that provider, in every API "
        "style. A config file's repository: 409 `repository_in_config`.",
    ),
    ("DELETE", "/admin/repositories/{repo_id}/provider-keys/{provider}"): Operation(
        "Delete a repository's key for one provider",
        ADMIN,
        {200: Reply("deleted", provider_key_answers.ProviderKeyDeleted)},
        errors=(*ADMIN_ERRORS, 409),
        query=queries.AdminOrgQuery,
    ),
    # Gateway API keys
    ("POST", "/admin/api-keys"): Operation(
        "Mint an API key (shown this once)",
        ADMIN,
        {201: Reply("the key, and what it is", key_answers.ApiKeyCreated)},
        errors=(*ADMIN_ERRORS, 409, 413),
        body=KeySpec,
        body_name="CreateApiKey",
        description="Nobody mints a key above their own role; org admins mint in their org. "
        "`models` limits the models it may use, `expires_at` ends it, `budgets` give it "
        "request and token limits of its own. At most 1000 keys per org (409 "
        "`too_many_keys`).",
    ),
    ("GET", "/admin/api-keys"): Operation(
        "List an org's API keys (never the keys)",
        ADMIN,
        {200: Reply("the keys", key_answers.ApiKeyList)},
        errors=ADMIN_ERRORS,
        query=queries.AdminOrgQuery,
    ),
    ("GET", "/admin/api-keys/{key_id}"): Operation(
        "An API key",
        ADMIN,
        {200: Reply("the key", key_answers.ApiKeyEnvelope)},
        errors=ADMIN_ERRORS,
    ),
    ("DELETE", "/admin/api-keys/{key_id}"): Operation(
        "Revoke an API key: it stops at once on every worker",
        ADMIN,
        {200: Reply("revoked", key_answers.ApiKeyRevoked)},
        errors=ADMIN_ERRORS,
    ),
    # Usage and cost
    ("GET", "/usage"): Operation(
        "Tokens, requests and cost: totals, a time series and groups",
        "Usage",
        {200: Reply("the usage", usage_answers.Usage)},
        errors=(400, 401, 403, 500),
        query=queries.UsageQuery,
        description="Under the conversations' role rules: an org admin sees the org's, a "
        "workspace admin the workspaces they manage and their own, a user their own. The "
        "window is cut to what the buckets keep (hours 8 days, days 400, months 25); a "
        "request that would sum more than 200,000 rows, or answer more than 20,000 points, "
        "is refused with 400.",
    ),
    # Policies and their violations
    ("GET", "/admin/policies"): Operation(
        "List policies (org admins: the global ones and their org's)",
        ADMIN,
        {200: Reply("the policies in force", admin_answers.PolicyList)},
        errors=(401, 403, 500),
    ),
    ("GET", "/admin/policies/{policy_id}"): Operation(
        "A policy",
        ADMIN,
        {200: Reply("the policy", admin_answers.PolicyEnvelope)},
        errors=ADMIN_ERRORS,
    ),
    ("PUT", "/admin/policies/{policy_id}"): Operation(
        "Create or replace a policy (org admins: scoped to their org)",
        ADMIN,
        {
            200: Reply("replaced", admin_answers.PolicyEnvelope),
            201: Reply("created", admin_answers.PolicyEnvelope),
        },
        errors=(*ADMIN_ERRORS, 409, 413),
        body=PolicySpec,
        body_name="PutPolicy",
        body_from_path=("id",),
    ),
    ("DELETE", "/admin/policies/{policy_id}"): Operation(
        "Delete a policy made through the API",
        ADMIN,
        {200: Reply("deleted", admin_answers.PolicyDeleted)},
        errors=(*ADMIN_ERRORS, 409),
    ),
    ("GET", "/policy/violations"): Operation(
        "Policy violations the caller may see (the conversations' role rules), newest first",
        "Policies",
        {200: Reply("a page of violations", admin_answers.ViolationPage)},
        errors=(400, 401, 403, 500),
        query=queries.ViolationsQuery,
    ),
    # OpenAI- and Anthropic-compatible (their own error shapes, so the official SDKs work)
    ("POST", "/v1/chat/completions"): Operation(
        "Chat Completions (OpenAI's format)",
        OPENAI,
        {
            200: Reply(
                "the completion (JSON), or chunks (SSE) with `stream: true`",
                openai_answers.ChatCompletion,
                sse=openai_answers.ChatCompletionStreamFrame,
            )
        },
        errors=COMPAT_ERRORS,
        headers=(CONVERSATION_HEADER,),
        body=openai_request.CompletionRequest,
        body_name="ChatCompletionRequest",
        auth="compat",
        error_shape=openai_answers.OpenAIError,
    ),
    ("GET", "/v1/models"): Operation(
        "The served models (OpenAI's list, or Anthropic's with `anthropic-version`)",
        OPENAI,
        {
            200: Reply(
                "the models",
                (openai_answers.OpenAIModelList, anthropic_answers.AnthropicModelList),
            )
        },
        errors=(401, 500),
        headers=(ANTHROPIC_VERSION,),
        auth="compat",
        error_shape=openai_answers.OpenAIError,
    ),
    ("GET", "/v1/models/{model_id}"): Operation(
        "One served model (OpenAI's format, or Anthropic's with `anthropic-version`)",
        OPENAI,
        {200: Reply("the model", (openai_answers.OpenAIModel, anthropic_answers.AnthropicModel))},
        errors=(401, 404, 500),
        headers=(ANTHROPIC_VERSION,),
        auth="compat",
        error_shape=openai_answers.OpenAIError,
    ),
    ("POST", "/v1/messages"): Operation(
        "Messages (Anthropic's format)",
        ANTHROPIC,
        {
            200: Reply(
                "the message (JSON), or its events (SSE) with `stream: true`",
                anthropic_answers.AnthropicMessage,
                sse=anthropic_answers.AnthropicStreamFrame,
            )
        },
        errors=COMPAT_ERRORS,
        headers=(CONVERSATION_HEADER, ANTHROPIC_VERSION),
        body=anthropic_request.MessagesRequest,
        body_name="AnthropicMessagesRequest",
        auth="compat",
        error_shape=anthropic_answers.AnthropicError,
    ),
    ("POST", "/v1/responses"): Operation(
        "Responses (OpenAI's format) on any served model",
        OPENAI,
        {
            200: Reply(
                "the response (JSON), or its events (SSE) with `stream: true`",
                response_answers.Response,
                sse=response_answers.ResponseStreamFrame,
            )
        },
        errors=(*COMPAT_ERRORS, 409),
        body=responses_input.ResponsesRequest,
        auth="compat",
        error_shape=openai_answers.OpenAIError,
        description="Input as a text or items (messages, function_call, function_call_output, "
        "reasoning); function tools, `instructions`, `text.format`, `reasoning`. With `store` "
        "(the default) the response is kept as a conversation: `previous_response_id` "
        "continues it (404 for one the caller may not see). Hosted tools answer 400.",
    ),
    ("GET", "/v1/responses/{response_id}"): Operation(
        "A stored response (OpenAI's format)",
        OPENAI,
        {200: Reply("the response: output, status and usage", response_answers.Response)},
        errors=(401, 404, 409, 500),
        auth="compat",
        error_shape=openai_answers.OpenAIError,
    ),
    ("POST", "/v1/embeddings"): Operation(
        "Embeddings (OpenAI's format): floats, or base64 of little-endian float32",
        OPENAI,
        {200: Reply("one vector per input, in order", embedding_answers.EmbeddingList)},
        errors=COMPAT_ERRORS,
        body=embeddings.EmbeddingsRequest,
        auth="compat",
        error_shape=openai_answers.OpenAIError,
        description="The pre-stage policies check every input (a block: 400 `policy_blocked`, "
        "the provider never called); the input tokens count in the usage. Models without "
        "embeddings (Anthropic, demo) answer 400.",
    ),
    ("POST", "/v1/completions"): Operation(
        "Legacy completions (OpenAI's format), on OpenAI-compatible models",
        OPENAI,
        {
            200: Reply(
                "the completion (JSON), or chunks (SSE) with `stream: true`",
                completion_answers.TextCompletion,
                sse=completion_answers.TextCompletionStreamFrame,
            )
        },
        errors=COMPAT_ERRORS,
        headers=(CONVERSATION_HEADER,),
        body=completions.CompletionsRequest,
        body_name="TextCompletionRequest",
        auth="compat",
        error_shape=openai_answers.OpenAIError,
        description="One prompt, one choice: `n` or `best_of` above 1, `echo` and `logprobs` "
        "answer 400. Anthropic and demo models answer 400.",
    ),
    ("POST", "/v1/messages/count_tokens"): Operation(
        "Count a Messages request's input tokens (Anthropic's format)",
        ANTHROPIC,
        {200: Reply("the count", token_answers.MessageTokensCount)},
        errors=(400, 401, 403, 404, 413, 429, 500, 502),
        headers=(ANTHROPIC_VERSION,),
        body=count_tokens.CountTokensRequest,
        body_name="AnthropicCountTokensRequest",
        auth="compat",
        error_shape=anthropic_answers.AnthropicError,
        description="Anthropic models: the upstream's count. Other models: the gateway's "
        'estimate, marked `"estimated": true`.',
    ),
    # Pages a browser opens without a token
    ("GET", "/"): Operation("The playground", PAGES, {200: HTML}, auth="none"),
    ("GET", "/admin"): Operation(
        "The admin page: usage and cost per day, models and their health, API keys, "
        "violations, audit events (its data come from the API, with the token entered in it)",
        PAGES,
        {200: HTML},
        auth="none",
    ),
    ("GET", "/docs"): Operation("This document, rendered", PAGES, {200: HTML}, auth="none"),
    ("GET", "/openapi.json"): Operation(
        "This document",
        PAGES,
        {200: Reply("OpenAPI 3.1", media=JSON, schema={"type": "object"})},
        auth="none",
    ),
    ("GET", "/static/{file}"): Operation(
        "The pages' scripts and styles",
        PAGES,
        {200: Reply("the file", media="*/*", schema={"type": "string", "format": "binary"})},
        errors=(404,),
        auth="none",
    ),
}


# -- building the document ----------------------------------------------------------------------


class DocumentSchema(GenerateJsonSchema):
    """Pydantic's JSON schema without a title on every property (the name says it)."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


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


def _path_params(path: str) -> list[dict[str, Any]]:
    out = []
    for name in re.findall(r"\{(\w+)\}", path):
        about = dict(PATH_PARAMS.get(name, {}))
        param = {"name": name, "in": "path", "required": True}
        if "description" in about:
            param["description"] = about.pop("description")
        out.append({**param, "schema": {"type": "string", **about}})
    return out


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string, never null: `X | None` reads as X."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        schema = {k: v for k, v in schema.items() if k != "anyOf"}
        schema.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    if "default" in schema and schema["default"] is None:
        schema = {k: v for k, v in schema.items() if k != "default"}
    return schema


def query_params(model: type[queries.Query]) -> list[dict[str, Any]]:
    """The query model's fields as OpenAPI parameters: names, bounds, defaults, descriptions."""
    schema = model.model_json_schema(schema_generator=DocumentSchema)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = _not_null(prop)
        param: dict[str, Any] = {"name": name, "in": "query"}
        if name in required:
            param["required"] = True
        if "description" in prop:
            param["description"] = prop.pop("description")
        out.append({**param, "schema": prop})
    return out


def _header(h: Header) -> dict[str, Any]:
    return {"name": h.name, "in": "header", "schema": h.schema, "description": h.description}


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


def add_body(
    schemas: dict[str, Any], name: str, model: Model, *, optional: Iterable[str] = ()
) -> None:
    """A request body's JSON schema as component `name`; nested models become components
    named `name` + their class name (two APIs' `InMessage` classes must not collide);
    `optional` drops names from `required` (fields the route fills in from the path)."""
    schema = model.model_json_schema(ref_template=REF + "{model}", schema_generator=DocumentSchema)
    nested = schema.pop("$defs", {})
    renames = {k: f"{name}{k}" for k in nested}
    for key, sub in nested.items():
        _add(schemas, renames[key], _rewrite_refs(sub, renames))
    schema = {**_rewrite_refs(schema, renames), "title": name}
    required = [r for r in schema.pop("required", []) if r not in set(optional)]
    if required:
        schema["required"] = required
    _add(schemas, name, schema)


def _add(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if schemas.get(name, schema) != schema:
        raise ValueError(f"two different schemas want the component name {name!r}")
    schemas[name] = schema


def answer_components(models: Iterable[Model]) -> dict[str, Any]:
    """The answers' JSON schemas as they are serialized, with every nested model a component
    of its class name."""
    wanted = list(dict.fromkeys(models))
    _, top = models_json_schema(
        [(m, "serialization") for m in wanted],
        ref_template=REF + "{model}",
        schema_generator=DocumentSchema,
    )
    components: dict[str, Any] = top.get("$defs", {})
    clashes = [name for name in components if not name.isidentifier() or "__" in name]
    if clashes:  # pydantic qualifies a class name that two models share
        raise ValueError(f"answer models need distinct class names: {clashes}")
    return components


def _answer_models(op: Operation) -> list[Model]:
    found: list[Model] = [op.error_shape]
    for reply in op.replies.values():
        if isinstance(reply.json, tuple):
            found += reply.json
        elif reply.json is not None:
            found.append(reply.json)
        if reply.sse is not None:
            found.append(reply.sse)
    return found


def _content(reply: Reply) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if isinstance(reply.json, tuple):
        content[JSON] = {"schema": {"oneOf": [ref(m) for m in reply.json]}}
    elif reply.json is not None:
        content[JSON] = {"schema": ref(reply.json)}
    if reply.sse is not None:
        content[SSE] = {"schema": ref(reply.sse), "x-sse": X_SSE}
    if reply.media is not None:
        content[reply.media] = {"schema": reply.schema or {"type": "string"}}
    return content


def _response(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description, "content": _content(reply)}
    if reply.sse is not None:
        out["headers"] = {
            "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
            "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
        }
    return out


def _error_responses(op: Operation) -> dict[str, Any]:
    shape = {JSON: {"schema": ref(op.error_shape)}}
    out: dict[str, Any] = {}
    for status in (*op.errors, *(() if op.auth == "none" else (401,))):
        title, codes = ERROR_STATUSES[status]
        own = op.error_shape is Error  # the codes are the contract's
        response: dict[str, Any] = {
            "description": title + (f" (codes: {codes})" if own and status in op.errors else ""),
            "content": shape,
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
        out.setdefault(str(status), response)
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
    params = [
        *_path_params(path),
        *(query_params(op.query) if op.query else ()),
        *(_header(h) for h in op.headers),
    ]
    if params:
        out["parameters"] = params
    if op.body is not None:
        name = op.body_name or op.body.__name__
        add_body(schemas, name, op.body, optional=op.body_from_path)
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(name)}}}
    responses = {str(status): _response(reply) for status, reply in op.replies.items()}
    responses.update(_error_responses(op))
    out["responses"] = dict(sorted(responses.items()))
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
    served = route_operations(routes)
    documented = [(key, OPERATIONS[key]) for key in served if key in OPERATIONS]
    schemas = answer_components(m for _, op in documented for m in _answer_models(op))
    paths: dict[str, dict[str, Any]] = {}
    for method, path in served:
        op = OPERATIONS.get((method, path))
        paths.setdefault(path, {})[method.lower()] = (
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
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for _, op in documented)],
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
