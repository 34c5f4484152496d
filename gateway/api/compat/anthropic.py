"""The Anthropic-compatible API: POST /v1/messages (JSON or SSE), and GET /v1/models when
the request carries `anthropic-version` (openai_compat owns the path and defers here).

A request becomes a direct turn (ChatService.prepare_direct: policies, limits and usage
accounting as everywhere else); the turn's events become Messages API stream events, byte
for byte as Anthropic sends them. Errors use Anthropic's shape
{"type": "error", "error": {"type", "message"}} instead of the contract's, so the official
SDK raises its own classes (see gateway/api/compat/common.py). The input token count is known only
when the answer ends: message_start carries the gateway's estimate and message_delta the
provider's count, which the SDK's accumulated message takes. Tools, images and documents
are refused with 400; top_p, top_k, stop_sequences, metadata and thinking are accepted and
not forwarded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import sse
from gateway.api.compat import common as compat
from gateway.api.inputs import Body, gateway_of, ok, read_body, refused, request_timing
from gateway.api.schemas import anthropic as answers
from gateway.errors import GatewayError, Loc
from gateway.settings import ModelConfig
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start
from gateway.turn.context import estimated_input_tokens
from gateway.turn.prepare import Prompt
from providers.base import ChatMessage

VERSION_HEADER = "anthropic-version"
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
MODELS_CREATED_AT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # when serving began


# -- the request ---------------------------------------------------------------------------


class ContentBlock(Body):
    type: str
    text: str | None = None


class InMessage(Body):
    role: str
    content: str | list[ContentBlock]


class MessagesRequest(Body):
    model: str = Field(min_length=1, max_length=200)
    max_tokens: int = Field(ge=1, le=compat.MAX_OUTPUT_TOKENS)
    messages: list[InMessage] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    stream: bool = False
    tools: list[Any] | None = None


def to_messages(body: MessagesRequest) -> list[ChatMessage]:
    if body.tools:
        raise refused(("tools",), "tool use is not supported by this gateway", code="bad_request")
    messages = []
    if body.system:
        messages.append(ChatMessage("system", text_of(body.system, ("system",))))
    for i, m in enumerate(body.messages):
        if m.role not in ("user", "assistant"):
            raise refused(
                ("messages", i, "role"),
                "must be 'user' or 'assistant'"
                " (a system prompt goes in the top-level system parameter)",
                code="bad_request",
            )
        text = text_of(m.content, ("messages", i, "content"))
        messages.append(ChatMessage(m.role, text))  # type: ignore[arg-type]
    return messages


def text_of(content: str | list[ContentBlock], loc: Loc) -> str:
    if isinstance(content, str):
        return content
    for j, block in enumerate(content):
        if block.type != "text" or block.text is None:
            raise refused(
                (*loc, j), f"only text blocks are supported, not {block.type!r}", code="bad_request"
            )
    return "\n".join(b.text for b in content if b.text is not None)


# -- the answer ----------------------------------------------------------------------------


def message_id(turn_message_id: str) -> str:
    return "msg_" + compat.hex_id(turn_message_id)


def _event(data: answers.AnthropicEventData) -> bytes:
    """`event: <data.type>` and the data as one line of JSON (the line breaks escaped)."""
    body = sse.escape_line_break_bytes(data.__pydantic_serializer__.to_json(data))
    return b"event: %s\ndata: %s\n\n" % (data.type.encode(), body)


BLOCK_START = _event(answers.ContentBlockStart(content_block=answers.AnthropicTextBlock(text="")))
PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # sic: Anthropic's ping has the space
BLOCK_STOP = _event(answers.ContentBlockStop())
MESSAGE_STOP = _event(answers.MessageStop())
DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
DELTA_TAIL = b"}}\n\n"


def text_frame(text: str) -> bytes:
    return DELTA_HEAD + sse.json_string(text) + DELTA_TAIL


def message_start(ev: Start, input_tokens: int) -> bytes:
    message = answers.AnthropicMessage(
        id=message_id(ev.message_id),
        model=ev.model,
        content=[],
        stop_reason=None,
        usage=answers.AnthropicUsage(input_tokens=input_tokens, output_tokens=0),
    )
    return _event(answers.MessageStart(message=message))


def message_delta(stop_reason: str, end: End) -> bytes:
    return _event(
        answers.MessageDelta(
            delta=answers.StopReason(stop_reason=stop_reason),
            usage=answers.AnthropicUsage(
                input_tokens=end.input_tokens, output_tokens=end.output_tokens
            ),
        )
    )


def error_json(status: int, message: str) -> answers.AnthropicError:
    kind = ERROR_TYPES.get(status, "api_error")
    return answers.AnthropicError(error=answers.AnthropicErrorDetail(type=kind, message=message))


def error_frame(ev: ErrorEvent) -> bytes:
    return _event(error_json(compat.failure(ev).status, ev.message))


async def encode(events: AsyncIterator[ChatEvent], *, input_tokens: int) -> AsyncIterator[bytes]:
    """message_start, one text block (start, ping, deltas, stop), message_delta with the
    stop reason and the usage, message_stop. A turn that did not finish (failed, blocked,
    stopped, shut down, or a bug of ours) ends with `event: error`, which the SDK raises."""
    failed = False
    async for ev in compat.guarded(events):
        if type(ev) is Delta:
            yield text_frame(ev.text)
        elif type(ev) is Start:
            yield message_start(ev, input_tokens) + BLOCK_START + PING
        elif type(ev) is ErrorEvent and not failed:
            failed = True
            yield error_frame(ev)
        elif type(ev) is End and not failed:
            reason = STOP_REASONS.get(ev.finish_reason)
            if reason is None:
                yield error_frame(compat.stream_failure(ev))
                continue
            yield BLOCK_STOP + message_delta(reason, ev) + MESSAGE_STOP


def message_json(answer: compat.Answer) -> answers.AnthropicMessage:
    end = answer.end
    return answers.AnthropicMessage(
        id=message_id(answer.message_id),
        model=answer.model,
        content=[answers.AnthropicTextBlock(text=answer.text)],
        stop_reason=STOP_REASONS.get(end.finish_reason, end.finish_reason),
        usage=answers.AnthropicUsage(
            input_tokens=end.input_tokens, output_tokens=end.output_tokens
        ),
    )


def request_id_header(request: Request) -> dict[str, str]:
    """Anthropic's SDK exposes `request-id` as `_request_id`: the gateway's X-Request-Id."""
    rid = request.scope.get("state", {}).get("request_id")
    return {"request-id": rid} if rid else {}


def error_response(request: Request, exc: GatewayError) -> Response:
    headers = {**exc.headers, **request_id_header(request)}
    return ok(error_json(exc.status, exc.message), exc.status, headers)


# -- handlers ------------------------------------------------------------------------------


@compat.provider_errors(error_response)
async def messages(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, MessagesRequest)
    chat_messages = to_messages(body)
    gw = gateway_of(request)
    turn = await gw.chat.prepare(
        Prompt(
            caller,
            model_id=body.model,
            messages=chat_messages,
            conversation_id=compat.conversation_id(request),
            max_output_tokens=body.max_tokens,
            temperature=body.temperature,
            **request_timing(request),
        )
    )
    compat.audit_prompt(gw, caller, turn, stream=body.stream)
    await gw.chat.open(turn)  # an upstream refusal before any byte is still an HTTP error
    events = gw.chat.run(turn)
    headers = {**request_id_header(request), **turn.rate_headers}
    if body.stream:
        frames = encode(events, input_tokens=estimated_input_tokens(turn.request.messages))
        return sse.sse_response(frames, settings=gw.settings, headers=headers)
    return ok(message_json(await compat.collect(events)), headers=headers)


def model_json(m: ModelConfig) -> answers.AnthropicModel:
    return answers.AnthropicModel(
        id=m.id,
        display_name=m.id,
        created_at=MODELS_CREATED_AT,
        max_input_tokens=m.context_window,
        max_tokens=m.max_output_tokens,
    )


@compat.provider_errors(error_response)
async def list_models(request: Request) -> Response:
    who = await compat.caller(request)
    data = [model_json(m) for m in await compat.served_models(request, who)]
    page = answers.AnthropicModelList(
        data=data,
        has_more=False,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
    return ok(page, headers=request_id_header(request))


@compat.provider_errors(error_response)
async def retrieve_model(request: Request) -> Response:
    who = await compat.caller(request)
    model = await compat.served_model(request, who, str(request.path_params["model_id"]))
    return ok(model_json(model), headers=request_id_header(request))


routes = [
    Route("/v1/messages", messages, methods=["POST"]),
]
