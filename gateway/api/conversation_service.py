"""The Conversation Service API (seed 003), under /api/conversation, every route with ?org_id=."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.access.principal import Principal
from gateway.access.resume_tokens import resume_token
from gateway.api import sse
from gateway.api.inputs import (
    Body,
    gateway_of,
    int_param,
    ok,
    org_param,
    principal,
    read_body,
    request_timing,
    required_param,
)
from gateway.errors import Forbidden, NotFound
from gateway.storage.records import (
    ChatSession,
    Conversation,
    Creator,
    Message,
    iso,
    new_id,
    usd,
)
from gateway.turn import Turn
from gateway.turn.live import detach
from gateway.turn.prepare import Prompt

if TYPE_CHECKING:
    from gateway.app import Gateway


class CreateConversation(Body):
    title: str = Field(min_length=1, max_length=500)
    is_archived: bool = False
    workspace_id: str | None = Field(default=None, min_length=1, max_length=200)


class CreateSession(Body):
    conversation_id: str = Field(min_length=1, max_length=200)
    model_id: str = Field(min_length=1, max_length=200)


class StreamChat(Body):
    chat_session_id: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1)
    on_disconnect: Literal["cancel", "continue"] = "cancel"


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "is_archived": c.is_archived,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
        "org_id": c.org_id,
        "workspace_id": c.workspace_id,
        "repo_id": c.repo_id,
        "created_by": c.created_by,
        "tokens_in": c.tokens_in,
        "tokens_out": c.tokens_out,
        "cost": usd(c.cost_nusd),  # USD, each answer priced when it was recorded
    }


def session_json(s: ChatSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "conversation_id": s.conversation_id,
        "model_id": s.model_id,
        "status": s.status,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
    }


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "conversation_id": m.conversation_id,
        "chat_session_id": m.chat_session_id,
        "role": m.role,
        "content": m.content,
        "status": m.status,
        "model_id": m.model_id,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "finish_reason": m.finish_reason,
        "usage_estimated": m.usage_estimated,
        "cost": usd(m.cost_nusd),
        "created_at": iso(m.created_at),
        **({"policy": m.policy} if m.policy else {}),
        **({"error": m.error} if m.error else {}),
    }


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
    return ok(conversation_json(conv), 201)


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
    return ok(session_json(session), 201)


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
    org_id = org_param(request, caller)
    limit = int_param(request, "limit", 50, lo=1, hi=100)
    offset = int_param(request, "offset", 0, lo=0, hi=10_000_000)
    gw = gateway_of(request)
    convs, total = await gw.visibility.page(caller, org_id, offset=offset, limit=limit)
    return ok({"conversations": [conversation_json(c) for c in convs], "total": total})


async def get_with_sessions(request: Request) -> Response:
    caller = await principal(request)
    org_id = org_param(request, caller)
    cid = required_param(request, "conversation_id")
    conv = await _conversation_in_org(request, caller, org_id, cid)
    sessions = await gateway_of(request).store.conversations.sessions(conv.id)
    return ok({**conversation_json(conv), "sessions": [session_json(s) for s in sessions]})


async def messages(request: Request) -> Response:
    caller = await principal(request)
    org_id = org_param(request, caller)
    cid = required_param(request, "conversation_id")
    limit = int_param(request, "limit", 20, lo=1, hi=1000)
    offset = int_param(request, "offset", 0, lo=0, hi=10_000_000)
    conv = await _conversation_in_org(request, caller, org_id, cid)
    msgs, total = await gateway_of(request).store.conversations.messages(
        conv.id, offset=offset, limit=limit
    )
    return ok(
        {
            "messages": [message_json(m) for m in msgs],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


routes = [
    Route("/api/conversation/create", create, methods=["POST"]),
    Route("/api/conversation/create_session", create_session, methods=["POST"]),
    Route("/api/conversation/stream_chat", stream_chat, methods=["POST"]),
    Route("/api/conversation/list", list_conversations, methods=["GET"]),
    Route("/api/conversation/get_with_sessions", get_with_sessions, methods=["GET"]),
    Route("/api/conversation/messages", messages, methods=["GET"]),
]
