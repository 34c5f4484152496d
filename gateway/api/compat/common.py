"""What the OpenAI- and Anthropic-compatible routes share: the caller, errors in the
provider's own JSON shape, and a whole answer for requests that do not stream.

These two APIs are the one place where the contract's error shape
({"success": false, "code", "message"}) is deliberately replaced by the provider's: the
official SDKs pick their exception classes (AuthenticationError, NotFoundError, ...) from
the status and read their message from that shape.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from gateway.access import audit
from gateway.access.audit import audited_gateway_error
from gateway.access.principal import Principal
from gateway.api.inputs import client_address, gateway_of, principal, refused
from gateway.errors import (
    REDIS_DOWN,
    GatewayError,
    NotFound,
    PolicyBlocked,
    Unavailable,
    UpstreamFailed,
)
from gateway.settings import ModelConfig
from gateway.turn import ChatEvent, End, ErrorEvent, Turn
from gateway.turn import collect as collect_turn

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.compat")

Handler = Callable[[Request], Awaitable[Response]]
ErrorShape = Callable[[Request, GatewayError], Response]

CONVERSATION_HEADER = "x-conversation-id"
MAX_OUTPUT_TOKENS = 1_000_000  # larger requests are refused here, not by the upstream as a 502
MAX_CONVERSATION_ID = 200
REDIS_AWAY = Unavailable(
    "the gateway cannot reach its store; retry shortly",
    code="redis_unavailable",
    headers={"Retry-After": "1"},
)


def provider_errors(shape: ErrorShape) -> Callable[[Handler], Handler]:
    """Answer every failure of the handler in the provider's error shape."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except GatewayError as exc:
                if exc.status == 403:  # the audit trail of denials; its contract body is dropped
                    await audited_gateway_error(request, exc)
                return shape(request, exc)
            except REDIS_DOWN as exc:  # checked before the upstream is called (turn/prepare.py)
                log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
                return shape(request, REDIS_AWAY)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return shape(request, GatewayError("internal server error"))

        return handle

    return wrap


async def caller(request: Request) -> Principal:
    """`Authorization: Bearer <key>` (both SDKs send it), else `x-api-key: <key>` (what
    Anthropic's API and older Anthropic clients use)."""
    key = request.headers.get("x-api-key")
    if key and "authorization" not in request.headers:
        found = await gateway_of(request).auth.principal_for(
            key.strip(), client=client_address(request)
        )
        request.state.principal = found  # for the access log line
        return found
    return await principal(request)


async def served_models(request: Request, who: Principal) -> list[ModelConfig]:
    """The models the caller may use: the config file's, those every org may use, their
    org's own; an API key limited to some models lists only those."""
    entries = await gateway_of(request).connections.registry.visible(who.org_id)
    return [e.config for e in entries if who.may_use_model(e.id)]


async def served_model(request: Request, who: Principal, model_id: str) -> ModelConfig:
    entry = await gateway_of(request).connections.model(model_id, who.org_id)
    if entry is None or not who.may_use_model(entry.id):
        raise NotFound(f"model {model_id!r} is not served", code="model_not_found")
    return entry.config


def conversation_id(request: Request) -> str | None:
    """X-Conversation-Id: append the exchange to that stored conversation."""
    value = request.headers.get(CONVERSATION_HEADER)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_CONVERSATION_ID:
        raise refused(("X-Conversation-Id",), "must be a conversation id")
    return value


def audit_prompt(gw: Gateway, caller: Principal, turn: Turn, *, stream: bool) -> None:
    """The `prompt_sent` audit event every prompting route leaves."""
    gw.audit.record(
        turn.org_id,
        audit.PROMPT_SENT,
        caller,
        conversation_id=turn.conversation.id if turn.conversation else None,
        message_id=turn.message_id,
        model=turn.model.id,
        stream=int(stream),
    )


def failure(ev: ErrorEvent) -> GatewayError:
    """A turn's error event as the error a non-streamed answer raises."""
    if ev.code == "policy_blocked":
        return PolicyBlocked(ev.message)
    if ev.code == "provider_error":
        return UpstreamFailed(ev.message)
    return GatewayError(ev.message, code=ev.code)


def end_failure(end: End) -> ErrorEvent | None:
    """An End that says the answer failed although no error event came before it."""
    if end.finish_reason == "policy_blocked":
        return ErrorEvent("policy_blocked", "the answer was blocked by a policy")
    if end.finish_reason == "error":
        return ErrorEvent("internal_error", "the answer failed")
    return None


CANCELLED = ErrorEvent("cancelled", "the answer was stopped before it finished")
BROKEN = ErrorEvent("internal_error", "the gateway failed while streaming")


def stream_failure(end: End) -> ErrorEvent:
    """What a stream that ended without finishing says last: a stopped or shut-down answer
    is an error too, or the SDKs take the cut text for a complete answer."""
    return end_failure(end) or CANCELLED


async def guarded(events: AsyncIterator[ChatEvent]) -> AsyncIterator[ChatEvent]:
    """The turn's events; a bug of ours that escapes it (the turn's own end is past) still
    ends the stream with an error, which each format frames as its terminal one."""
    try:
        async for ev in events:
            yield ev
    except Exception:
        log.exception("a stream failed after its turn ended")
        yield BROKEN


@dataclass(slots=True)
class Answer:
    message_id: str
    model: str
    text: str
    end: End


async def collect(events: AsyncIterator[ChatEvent]) -> Answer:
    """The whole turn, for a request that did not ask to stream; a failed turn raises."""
    turn = await collect_turn(events)
    error = turn.error or end_failure(turn.end)
    if error is not None:
        raise failure(error)
    return Answer(turn.start.message_id, turn.start.model, turn.text, turn.end)


def hex_id(message_id: str) -> str:
    """The stored message's id as the suffix of chatcmpl-... / msg_... ids."""
    return message_id.replace("-", "")
