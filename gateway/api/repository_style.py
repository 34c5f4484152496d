"""The repository-style conversation API (seeds 000, 001, 002, 004): /conversation.

The same conversations as the Conversation Service API (/api/conversation), over the same
store: a conversation created here is a conversation with a `repo_id` and a default chat
session on the repository's model, so both API styles show and prompt it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal, cast

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.access.principal import Principal
from gateway.access.visibility import ConversationFilter
from gateway.api import queries
from gateway.api.admin import repository_of
from gateway.api.conversation_service import creator_of, turn_stream
from gateway.api.inputs import (
    Body,
    RepositoryId,
    gateway_of,
    ok,
    principal,
    read_body,
    request_timing,
)
from gateway.api.queries import read_query
from gateway.api.schemas import repository as answers
from gateway.api.schemas.common import FinishReason, PolicyEvent
from gateway.errors import BadRequest, Forbidden, GatewayError, NotFound, ValidationFailed
from gateway.storage.records import ChatSession, Conversation, decimal_usd, new_id
from gateway.turn import ChatEvent, collect
from gateway.turn.prepare import Prompt

if TYPE_CHECKING:
    from gateway.app import Gateway

# a JSON answer's status when the stream behind it ended with an error event
_ERROR_STATUS = {"provider_error": 502, "policy_blocked": 400}


class CreateConversation(Body):
    repoId: RepositoryId = Field(min_length=1, max_length=200)


class SendPrompt(Body):
    prompt: str = Field(min_length=1)
    stream: bool = False
    on_disconnect: Literal["cancel", "continue"] = "cancel"  # a streamed answer, as stream_chat


def conversation_id(request: Request) -> str:
    cid = str(request.path_params["conversation_id"])
    if len(cid) > 200:
        raise NotFound("conversation not found", code="conversation_not_found")
    return cid


def org_of_request(q: queries.RepoConversationsQuery, caller: Principal) -> str:
    """The caller's org; the platform admin names one with ?org_id=."""
    org = q.org_id or q.orgId
    if org:
        caller.check_org(org)
        return org
    if caller.org_id is None:
        raise ValidationFailed("org_id: query parameter is required for the platform admin")
    return caller.org_id


async def create(request: Request) -> Response:
    caller = await principal(request)
    body = await read_body(request, CreateConversation)
    gw = gateway_of(request)
    # the platform admin, naming no org, gets the one repository of that id (ids are per
    # org; ?org_id= picks one where several orgs have it)
    org = caller.org_id or read_query(request, queries.AdminOrgQuery).org_id
    repo = await repository_of(request, caller, body.repoId, org)
    if repo is None or not caller.in_org(repo.org_id):
        raise NotFound(f"repository {body.repoId!r} not found", code="repository_not_found")
    if repo.workspace_id is None:
        raise BadRequest(
            f"repository {repo.id!r} belongs to no workspace; a conversation cannot be orphaned",
            code="repository_without_workspace",
        )
    if not caller.can_use_workspace(repo.workspace_id):
        raise Forbidden(f"no access to workspace {repo.workspace_id!r}")
    model = await gw.repositories.model_for(repo)
    if model is None:
        raise NotFound(f"model {repo.model!r} is not served", code="model_not_found")
    conv = Conversation(
        id=new_id(),
        org_id=repo.org_id,
        title="",
        created_by=caller.user_id,
        creator=creator_of(caller),
        workspace_id=repo.workspace_id,
        repo_id=repo.id,
    )
    session = ChatSession(id=new_id(), conversation_id=conv.id, model_id=model.id)
    event = gw.audit.event(
        conv.org_id,
        audit.CONVERSATION_CREATED,
        caller,
        conversation_id=conv.id,
        repo_id=repo.id,
        workspace_id=repo.workspace_id,
        model=model.id,
    )
    await gw.store.conversations.create_with_session(conv, session, event)
    return ok(answers.RepoConversationCreated(conversationId=conv.id))


async def _session_for(gw: Gateway, conv: Conversation, default_session_id: str | None) -> str:
    """The session a repository-style prompt goes to: the conversation's default one; for a
    conversation made through /api/conversation, its newest session, else a new one on the
    first served model."""
    if default_session_id:
        return default_session_id
    sessions = await gw.store.conversations.sessions(conv.id)
    if sessions:
        return sessions[-1].id
    model = gw.settings.served_models[0]
    return await gw.store.conversations.ensure_default_session(
        ChatSession(id=new_id(), conversation_id=conv.id, model_id=model.id)
    )


async def prompt(request: Request) -> Response:
    caller = await principal(request)
    cid = conversation_id(request)
    body = await read_body(request, SendPrompt)
    gw = gateway_of(request)
    conv, default_session = await gw.store.conversations.get_with_default_session(cid)
    if conv is None or not caller.can_see(conv):
        raise NotFound("conversation not found", code="conversation_not_found")
    if not caller.can_prompt(conv):
        raise Forbidden("only the conversation's creator may prompt it")
    sid = await _session_for(gw, conv, default_session)
    turn = await gw.chat.prepare(
        Prompt(
            caller,
            text=body.prompt,
            session_id=sid,
            org_id=conv.org_id,
            on_disconnect=body.on_disconnect,
            **request_timing(request),
        )
    )
    streaming = body.stream or "text/event-stream" in request.headers.get("accept", "").lower()
    gw.audit.record(
        conv.org_id,
        audit.PROMPT_SENT,
        caller,
        conversation_id=conv.id,
        message_id=turn.message_id,
        model=turn.model.id,
        stream=int(streaming),
    )
    if streaming:  # the very stream /api/conversation/stream_chat answers with
        return await turn_stream(gw, turn)
    await gw.chat.open(turn)  # an upstream refusal before any text is still an HTTP error
    answer = await _json_answer(gw.chat.run(turn))
    answer.headers.update(turn.rate_headers)
    return answer


async def _json_answer(events: AsyncIterator[ChatEvent]) -> Response:
    """The whole answer at once; an error event becomes the contract's error response
    (the partial answer is stored either way)."""
    turn = await collect(events)
    start, end, error = turn.start, turn.end, turn.error
    if error is not None:
        raise GatewayError(
            error.message, code=error.code, status=_ERROR_STATUS.get(error.code, 500)
        )
    return ok(
        answers.PromptAnswer(
            conversationId=cast(str, start.conversation_id),  # a repository prompt has one
            messageId=end.message_id,
            response=turn.text,
            model=start.model,
            tokensIn=end.input_tokens,
            tokensOut=end.output_tokens,
            cost=decimal_usd(end.cost_nusd),
            finishReason=cast(FinishReason, end.finish_reason),  # and validated as one
            usageEstimated=end.usage_estimated,
            policy=[PolicyEvent(**p) for p in end.policy],
        )
    )


async def messages(request: Request) -> Response:
    caller = await principal(request)
    cid = conversation_id(request)
    q = read_query(request, queries.RepoMessagesQuery)
    gw = gateway_of(request)
    conv = await gw.chat.visible_conversation(caller, cid)
    msgs, total = await gw.store.conversations.messages(conv.id, offset=q.skip, limit=q.take)
    return ok(
        answers.RepoMessagePage(
            messages=[answers.RepoMessage.of(m) for m in msgs],
            total=total,
            take=q.take,
            skip=q.skip,
        )
    )


async def list_conversations(request: Request) -> Response:
    caller = await principal(request)
    q = read_query(request, queries.RepoConversationsQuery)
    org = org_of_request(q, caller)
    filters = ConversationFilter(
        user_id=q.userId,
        workspace_id=q.workspaceId,
        repo_id=q.repoId,
        since_ms=q.since,
        until_ms=q.until,
    )
    convs, total = await gateway_of(request).visibility.page(
        caller, org, offset=q.skip, limit=q.take, filters=filters
    )
    return ok(
        answers.RepoConversationList(
            # a deletion racing this read may still be indexed for a moment
            conversations=[answers.RepoConversation.of(c) for c in convs if c.deleted_at is None],
            total=total,
        )
    )


async def delete(request: Request) -> Response:
    caller = await principal(request)
    cid = conversation_id(request)
    gw = gateway_of(request)
    conv = await gw.chat.visible_conversation(caller, cid)
    if not caller.can_delete(conv):
        raise Forbidden("only the creator, their workspace admin or an org admin may delete it")
    event = gw.audit.event(
        conv.org_id,
        audit.CONVERSATION_DELETED,
        caller,
        conversation_id=conv.id,
        repo_id=conv.repo_id,
        workspace_id=conv.workspace_id,
        created_by=conv.created_by,
    )
    at = await gw.store.conversations.soft_delete(conv, deleted_by=caller.user_id, event=event)
    if at is None:  # someone else deleted it a moment ago
        raise NotFound("conversation not found", code="conversation_not_found")
    return ok(answers.RepoConversationDeleted(conversationId=conv.id, deletedAt=at))


routes = [
    Route("/conversation", create, methods=["POST"]),
    Route("/conversation", list_conversations, methods=["GET"]),
    Route("/conversation/{conversation_id}/prompt", prompt, methods=["POST"]),
    Route("/conversation/{conversation_id}/messages", messages, methods=["GET"]),
    Route("/conversation/{conversation_id}", delete, methods=["DELETE"]),
]
