"""Stop and resume a stream, in both API styles: `POST /api/conversation/stop`,
`GET /api/conversation/stream`, `POST /conversation/{id}/stop`,
`GET /conversation/{id}/messages/{messageId}/stream`."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access.resume_tokens import check_resume_token, resume_token
from gateway.api import sse
from gateway.api.inputs import Body, gateway_of, ok, principal, read_body
from gateway.api.queries import AttachQuery, ResumeQuery, org_param, read_query
from gateway.api.schemas.stream import StopAccepted
from gateway.errors import Conflict, Forbidden, NotFound, Unauthorized
from gateway.storage.records import Conversation
from gateway.turn.resume_log import is_ended, last_seq


class StopBody(Body):
    message_id: str = Field(min_length=1, max_length=200)


async def _conversation_of(
    request: Request,
    message_id: str,
    *,
    conversation_id: str | None = None,
    token: str | None = None,
    stop: bool = False,
) -> tuple[str, Conversation, str]:
    """The message's conversation id, the conversation, and whose follower the caller is
    ("<org>/<user>"), checked against the caller, or against a resume_token for this
    message that stands in for a bearer token (valid only while the conversation is not
    deleted; its holder counts as the conversation's creator)."""
    gw = gateway_of(request)
    if token and not stop and "authorization" not in request.headers:
        if not check_resume_token(gw.resume_secret, token, message_id):
            raise Unauthorized("invalid or expired resume_token", code="invalid_resume_token")
        cid = await gw.store.turns.message_conversation_id(message_id)
        if cid is None or (conversation_id and cid != conversation_id):
            raise NotFound("no stream for this message", code="stream_not_found")
        found = await gw.store.conversations.get(cid)
        if found is None or found.deleted_at is not None:
            raise NotFound("no stream for this message", code="stream_not_found")
        return cid, found, f"{found.org_id}/{found.created_by}"
    caller = await principal(request)
    if "org_id" in request.query_params or conversation_id is None:
        org_id = org_param(request, caller)
    else:
        org_id = None
    cid = await gw.store.turns.message_conversation_id(message_id)
    if cid is None or (conversation_id and cid != conversation_id):
        raise NotFound("no stream for this message", code="stream_not_found")
    conv = await gw.chat.visible_conversation(caller, cid)
    if org_id is not None and conv.org_id != org_id:
        raise NotFound("no stream for this message", code="stream_not_found")
    if stop and not caller.can_prompt(conv):
        raise Forbidden("only the conversation's creator may stop its answers")
    return cid, conv, f"{caller.org_id or ''}/{caller.user_id}"


async def _attach(
    request: Request, q: ResumeQuery, message_id: str, conversation_id: str | None = None
) -> Response:
    """A follower of the message: its place (429 beyond the caps), the log's reader of this
    worker (404 for no log), then the replay from Last-Event-ID on."""
    gw = gateway_of(request)
    cid, _, who = await _conversation_of(
        request, message_id, conversation_id=conversation_id, token=q.resume_token
    )
    after = last_seq(request.headers.get("last-event-id") or q.last_event_id, message_id)
    ticket = gw.chat.followers.admit(cid, message_id, who)
    try:
        if not await ticket.open():
            raise NotFound("the stream has expired or never existed", code="stream_not_found")
        body = sse.encode(
            ticket.events(after),
            start_seq=after,
            start_extra=lambda ev: {"resume_token": resume_token(gw.resume_secret, ev.message_id)},
        )
        return sse.sse_response(body, settings=gw.settings, on_close=ticket.release)
    except BaseException:
        ticket.release()
        raise


async def _stop(request: Request, message_id: str, conversation_id: str | None = None) -> Response:
    gw = gateway_of(request)
    cid, _, _ = await _conversation_of(
        request, message_id, conversation_id=conversation_id, stop=True
    )
    if is_ended(await gw.store.resume_logs.last(cid, message_id)):
        raise Conflict("this message is not being generated", code="not_running")
    await gw.live.request_stop(message_id)
    return ok(StopAccepted(message_id=message_id), 202)


async def service_stream(request: Request) -> Response:
    q = read_query(request, AttachQuery)
    return await _attach(request, q, q.message_id)


async def service_stop(request: Request) -> Response:
    caller = await principal(request)
    org_param(request, caller)
    body = await read_body(request, StopBody)
    return await _stop(request, body.message_id)


async def repository_stream(request: Request) -> Response:
    return await _attach(
        request,
        read_query(request, ResumeQuery),
        str(request.path_params["message_id"]),
        str(request.path_params["conversation_id"]),
    )


async def repository_stop(request: Request) -> Response:
    """Stops whatever answer the conversation is generating now (its one-turn lock says which)."""
    gw = gateway_of(request)
    cid = str(request.path_params["conversation_id"])
    caller = await principal(request)
    conv = await gw.chat.visible_conversation(caller, cid)
    holder = await gw.store.turns.lock_holder(conv.id)
    if holder is None:
        raise Conflict("this conversation is not generating an answer", code="not_running")
    return await _stop(request, holder.split(":", 1)[1], conv.id)


routes = [
    Route("/api/conversation/stream", service_stream, methods=["GET"]),
    Route("/api/conversation/stop", service_stop, methods=["POST"]),
    Route(
        "/conversation/{conversation_id}/messages/{message_id}/stream",
        repository_stream,
        methods=["GET"],
    ),
    Route("/conversation/{conversation_id}/stop", repository_stop, methods=["POST"]),
]
