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
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway.access import audit
from gateway.access.audit import audited_gateway_error
from gateway.access.principal import Principal
from gateway.api.inputs import client_address, dotted, gateway_of, principal, refused
from gateway.errors import (
    REDIS_DOWN,
    BadRequest,
    GatewayError,
    Loc,
    NotFound,
    PolicyBlocked,
    Unavailable,
    UpstreamFailed,
)
from gateway.settings import ModelConfig
from gateway.turn import ChatEvent, End, ErrorEvent, Turn
from gateway.turn import collect as collect_turn
from gateway.turn.events import Choice

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.compat")
T = TypeVar("T")

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
    if ev.code == "provider_error":  # the provider's SDK has retried: the client's need not
        return UpstreamFailed(ev.message, headers={"x-should-retry": "false"})
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
        yield broken()


def broken() -> ErrorEvent:
    """Called in an `except` around a turn's events (a bug of ours escaped them): logs it,
    and says what ends the stream (an encoder that catches it itself saves `guarded`'s
    layer on every token)."""
    log.exception("a stream failed after its turn ended")
    return BROKEN


@dataclass(slots=True)
class Answer:
    message_id: str
    model: str
    text: str
    end: End
    choices: dict[int, Choice] = field(default_factory=dict)  # choice 0's text is `text`


async def collect(events: AsyncIterator[ChatEvent]) -> Answer:
    """The whole turn, for a request that did not ask to stream; a failed turn raises."""
    turn = await collect_turn(events)
    error = turn.error or end_failure(turn.end)
    if error is not None:
        raise failure(error)
    return Answer(turn.start.message_id, turn.start.model, turn.text, turn.end, turn.choices)


# -- reading a body's nested objects: every refusal names its field ---------------------------


def unsupported(loc: Loc, message: str) -> BadRequest:
    """400 unsupported_parameter: a field the gateway cannot carry where it was asked."""
    return refused(loc, message, code="unsupported_parameter")


def only_keys(value: dict[str, Any], allowed: set[str], loc: Loc) -> None:
    """Any other key is refused, unless it is null (not set: what an SDK's model_dump()
    of an answer's block leaves in, `citations: null` and the like)."""
    for key, item in value.items():
        if key not in allowed and item is not None:
            raise unsupported((*loc, key), "not a field this gateway takes here")


def optional_str(value: dict[str, Any], key: str, loc: Loc) -> str | None:
    found = value.get(key)
    if found is not None and not isinstance(found, str):
        raise refused((*loc, key), "must be a string")
    return found


def required_str(value: dict[str, Any], key: str, loc: Loc) -> str:
    found = optional_str(value, key, loc)
    if found is None:
        raise refused((*loc, key), "is required")
    return found


_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def param_loc(param: str) -> Loc:
    """An adapter's name of a request field (`messages[3].content[0]`, `top_k`) as a Loc."""
    loc: list[str | int] = []
    for name, index in _STEP.findall(param):
        loc.append(name if name else int(index))
    return tuple(loc)


async def translated(step: Awaitable[T], rename: Callable[[str], Loc]) -> T:
    """Run a step of the turn; an error that names a normalized field (an adapter's
    refusal, a bound) names it as the client's API does."""
    try:
        return await step
    except GatewayError as exc:
        if exc.param and len(exc.param) == 1 and isinstance(exc.param[0], str):
            name = exc.param[0]
            loc = rename(name)
            if loc:
                exc.param = loc
                if exc.message.startswith(f"{name}: "):
                    exc.message = f"{dotted(loc)}: {exc.message[len(name) + 2 :]}"
        raise


def hex_id(message_id: str) -> str:
    """The stored message's id as the suffix of chatcmpl-... / msg_... ids."""
    return message_id.replace("-", "")
