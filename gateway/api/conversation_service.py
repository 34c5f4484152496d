"""The Conversation Service API (seed 003), under /api/conversation, every route with ?org_id=."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.access.principal import Principal
from gateway.access.resume_tokens import resume_token
from gateway.api import queries, sse
from gateway.api.inputs import (
    Body,
    WorkspaceId,
    gateway_of,
    ok,
    principal,
    read_body,
    request_timing,
)
from gateway.api.queries import org_param, read_query
from gateway.api.schemas import conversation_service as answers
from gateway.errors import Forbidden, NotFound
from gateway.storage.records import ChatSession, Conversation, Creator, new_id
from gateway.turn import Turn
from gateway.turn.live import detach
from gateway.turn.prepare import Prompt

if TYPE_CHECKING:
    from gateway.app import Gateway


class CreateConversation(Body):
    title: str = Field(min_length=1, max_length=500)
    is_archived: bool = False
    workspace_id: WorkspaceId | None = Field(default=None, min_length=1, max_length=200)


class CreateSession(Body):
    conversation_id: str = Field(min_length=1, max_length=200)
    model_id: str = Field(min_length=1, max_length=200)


class StreamChat(Body):
    chat_session_id: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1)
    on_disconnect: Literal["cancel", "continue"] = "cancel"


def creator_of(p: Principal) -> Creator:
    return Creator(id=p.user_id, name=p.name, last_name=p.family_name, email=p.email)


async def _conversation_in_org(
    request: Request, caller: Principal, org_id: str, cid: str
) -> Conversation:
    conv = await gateway_of(request).chat.visible_conversation(caller, cid)
    if conv.org_id != org_id:
        raise NotFound("conversation not found", code="conversation_not_found")
    return conv


async def create(request: Request) -> Response:
    caller = await principal(request)
    org_id = org_param(request, caller)
    body = await read_body(request, CreateConversation)
    workspace = body.workspace_id
    if workspace is None and len(caller.workspaces) == 1:
        workspace = next(iter(caller.workspaces))
    if workspace is not None and not caller.can_use_workspace(workspace):
        raise Forbidden(f"no access to workspace {workspace!r}")
    conv = Conversation(
        id=new_id(),
        org_id=org_id,
        title=body.title,
        is_archived=body.is_archived,
        created_by=caller.user_id,
        creator=creator_of(caller),
        workspace_id=workspace,
    )
    gw = gateway_of(request)
    await gw.store.conversations.create(conv)
    gw.audit.record(
        org_id, audit.CONVERSATION_CREATED, caller, conversation_id=conv.id, workspace_id=workspace
    )
    return ok(answers.Conversation.of(conv), 201)


async def create_session(request: Request) -> Response:
    caller = await principal(request)
    org_id = org_param(request, caller)
    body = await read_body(request, CreateSession)
    gw = gateway_of(request)
    conv = await _conversation_in_org(request, caller, org_id, body.conversation_id)
    if not caller.can_prompt(conv):
        raise Forbidden("only the conversation's creator may open sessions in it")
    # 404 when the org has no such model, 403 when the caller's key may not use it
    await gw.chat.preparation.model(caller, body.model_id, conv.org_id)
    session = await gw.store.conversations.create_session(
        ChatSession(id=new_id(), conversation_id=conv.id, model_id=body.model_id)
    )
    gw.chat.preparation.remember(conv, session)  # its first turn: one round trip before the model
    return ok(answers.ChatSession.of(session), 201)


async def stream_chat(request: Request) -> Response:
    caller = await principal(request)
    org_id = org_param(request, caller)
    body = await read_body(request, StreamChat)
    gw = gateway_of(request)
    turn = await gw.chat.prepare(
        Prompt(
            caller,
            text=body.message,
            session_id=body.chat_session_id,
            org_id=org_id,
            on_disconnect=body.on_disconnect,
            **request_timing(request),
        )
    )
    gw.audit.record(
        org_id,
        audit.PROMPT_SENT,
        caller,
        chat_session_id=body.chat_session_id,
        conversation_id=turn.conversation.id if turn.conversation else None,
        message_id=turn.message_id,
        model=turn.model.id,
        stream=1,
    )
    return await turn_stream(gw, turn)


async def turn_stream(gw: Gateway, turn: Turn) -> Response:
    """The SSE answer to a prepared turn: the upstream is opened first, so its refusal is
    still an HTTP error; the start event carries a resume_token for EventSource clients."""
    await gw.chat.open(turn)
    events = gw.chat.run(turn)
    if turn.on_disconnect == "continue":
        events = detach(events)
    body = sse.encode(
        events,
        start_extra=lambda ev: {"resume_token": resume_token(gw.resume_secret, ev.message_id)},
    )
    return sse.sse_response(body, settings=gw.settings, headers=turn.rate_headers)


async def list_conversations(request: Request) -> Response:
    caller = await principal(request)
    q = read_query(request, queries.ConversationListQuery)
    caller.check_org(q.org_id)
    gw = gateway_of(request)
    convs, total = await gw.visibility.page(caller, q.org_id, offset=q.offset, limit=q.limit)
    return ok(
        answers.ConversationList(
            conversations=[answers.Conversation.of(c) for c in convs], total=total
        )
    )


async def get_with_sessions(request: Request) -> Response:
    caller = await principal(request)
    q = read_query(request, queries.ConversationQuery)
    caller.check_org(q.org_id)
    conv = await _conversation_in_org(request, caller, q.org_id, q.conversation_id)
    sessions = await gateway_of(request).store.conversations.sessions(conv.id)
    return ok(answers.ConversationWithSessions.with_sessions(conv, sessions))


async def messages(request: Request) -> Response:
    caller = await principal(request)
    q = read_query(request, queries.MessagesQuery)
    caller.check_org(q.org_id)
    conv = await _conversation_in_org(request, caller, q.org_id, q.conversation_id)
    msgs, total = await gateway_of(request).store.conversations.messages(
        conv.id, offset=q.offset, limit=q.limit
    )
    return ok(
        answers.MessagePage(
            messages=[answers.Message.of(m) for m in msgs],
            total=total,
            limit=q.limit,
            offset=q.offset,
        )
    )


routes = [
    Route("/api/conversation/create", create, methods=["POST"]),
    Route("/api/conversation/create_session", create_session, methods=["POST"]),
    Route("/api/conversation/stream_chat", stream_chat, methods=["POST"]),
    Route("/api/conversation/list", list_conversations, methods=["GET"]),
    Route("/api/conversation/get_with_sessions", get_with_sessions, methods=["GET"]),
    Route("/api/conversation/messages", messages, methods=["GET"]),
]
