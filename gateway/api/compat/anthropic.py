"""The Anthropic-compatible API: POST /v1/messages (JSON or SSE), and GET /v1/models when
the request carries `anthropic-version` (openai_compat owns the path and defers here).

A request (gateway/api/compat/anthropic_request.py) becomes a direct turn: policies, limits
and usage accounting as everywhere else; the turn's events become Messages API stream
events, byte for byte as Anthropic sends them: content blocks numbered in order (thinking
with its signature_delta, redacted_thinking, text, tool_use with input_json_delta pieces),
message_delta with the stop reason (an Anthropic upstream's own word, `stop_sequence` with
the sequence) and the usage with its cache counts, message_stop. Errors use Anthropic's
shape {"type": "error", "error": {"type", "message"}} instead of the contract's, so the
official SDK raises its own classes (see gateway/api/compat/common.py). The input token
count is known only when the answer ends: message_start carries the gateway's estimate and
message_delta the provider's count, which the SDK's accumulated message takes.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import sse
from gateway.api.compat import common as compat
from gateway.api.compat.anthropic_request import MessagesRequest, to_request
from gateway.api.inputs import gateway_of, ok, read_body, request_timing
from gateway.api.schemas import anthropic as answers
from gateway.errors import GatewayError
from gateway.settings import ModelConfig
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start, TextRun
from gateway.turn.events import (
    Choice,
    ReasoningDelta,
    ReasoningEnd,
    RefusalDelta,
    ToolCallDelta,
)
from gateway.turn.prepare import Prompt
from providers.base import estimate_request_tokens

VERSION_HEADER = "anthropic-version"
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "pause": "pause_turn",
}
# Anthropic's own words: an Anthropic upstream's is echoed as it said it
NATIVE_STOP_REASONS = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
MODELS_CREATED_AT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # when serving began


def message_id(turn_message_id: str) -> str:
    return "msg_" + compat.hex_id(turn_message_id)


def _event(data: answers.AnthropicEventData) -> bytes:
    """`event: <data.type>` and the data as one line of JSON (the line breaks escaped)."""
    body = sse.escape_line_break_bytes(data.__pydantic_serializer__.to_json(data))
    return b"event: %s\ndata: %s\n\n" % (data.type.encode(), body)


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    """A rarer event's frame: ASCII-only JSON, so no line separator reaches a line splitter."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), body)


PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # sic: Anthropic's ping has the space
MESSAGE_STOP = _event(answers.MessageStop())
DELTA_TAIL = b"}}\n\n"


def stop_reason(end: End) -> str:
    """Anthropic's word for how the answer ended: an Anthropic upstream's own, exactly."""
    if end.native in NATIVE_STOP_REASONS:
        return end.native
    if end.finish_reason == "stop" and end.stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(end.finish_reason, "end_turn")


def message_start(ev: Start, input_tokens: int) -> bytes:
    message = answers.AnthropicMessage(
        id=message_id(ev.message_id),
        model=ev.model,
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=answers.AnthropicUsage(input_tokens=input_tokens, output_tokens=0),
    )
    return _event(answers.MessageStart(message=message))


def usage_json(end: End) -> answers.AnthropicUsage:
    """Anthropic counts the cached input apart from input_tokens; the gateway's count holds
    all of it."""
    cached, written = end.cached_input_tokens, end.cache_write_input_tokens
    return answers.AnthropicUsage(
        input_tokens=max(end.input_tokens - cached - written, 0),
        output_tokens=end.output_tokens,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=cached,
    )


def message_delta(end: End) -> bytes:
    reason = stop_reason(end)
    return _event(
        answers.MessageDelta(
            delta=answers.StopReason(
                stop_reason=reason,
                stop_sequence=end.stop_sequence if reason == "stop_sequence" else None,
            ),
            usage=usage_json(end),
        )
    )


def error_json(status: int, message: str) -> answers.AnthropicError:
    kind = ERROR_TYPES.get(status, "api_error")
    return answers.AnthropicError(error=answers.AnthropicErrorDetail(type=kind, message=message))


def error_frame(ev: ErrorEvent) -> bytes:
    return _event(error_json(compat.failure(ev).status, ev.message))


class Blocks:
    """The content blocks of one streamed message, opened as their first piece arrives and
    numbered in order: thinking, redacted_thinking, text, tool_use, ... A text delta is a
    byte template for the open block."""

    __slots__ = ("index", "open", "delta_head")

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None  # the open block's type
        self.delta_head = b""

    def text(self, text: str) -> bytes:
        head = b"" if self.open == "text" else self._start({"type": "text", "text": ""})
        return head + self.delta_head + sse.json_string(text) + DELTA_TAIL

    def event(self, ev: ChatEvent) -> bytes:
        kind = type(ev)
        if kind is RefusalDelta:  # Anthropic's refusal is text, ended by stop_reason refusal
            return self.text(ev.text)  # type: ignore[union-attr]
        if kind is ReasoningDelta:
            head = b""
            if self.open != "thinking":
                head = self._start({"type": "thinking", "thinking": "", "signature": ""})
            delta = {"type": "thinking_delta", "thinking": ev.text}  # type: ignore[union-attr]
            return head + self._delta(delta)
        if kind is ReasoningEnd:
            return self._reasoning_end(ev)  # type: ignore[arg-type]
        if kind is ToolCallDelta:
            return self._tool_call(ev)  # type: ignore[arg-type]
        return b""  # log probabilities: Anthropic has none (refused up front)

    def end(self) -> bytes:
        """Close the open block; a message with no block at all has one empty text block."""
        if self.index < 0:
            return self._start({"type": "text", "text": ""}) + self._stop()
        return self._stop()

    def _tool_call(self, call: ToolCallDelta) -> bytes:
        head = b""
        if call.id is not None:  # the call's first piece opens its block
            block = {"type": "tool_use", "id": call.id, "name": call.name or "", "input": {}}
            head = self._start(block)
        if not call.arguments or self.open != "tool_use":
            return head
        return head + self._delta({"type": "input_json_delta", "partial_json": call.arguments})

    def _reasoning_end(self, ev: ReasoningEnd) -> bytes:
        if ev.redacted is not None:
            return self._start({"type": "redacted_thinking", "data": ev.redacted}) + self._stop()
        head = b""
        if self.open != "thinking":
            head = self._start({"type": "thinking", "thinking": "", "signature": ""})
        signature = self._delta({"type": "signature_delta", "signature": ev.signature or ""})
        return head + signature + self._stop()

    def _start(self, block: dict[str, Any]) -> bytes:
        head = self._stop()
        self.index += 1
        self.open = block["type"]
        self.delta_head = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
            b'"delta":{"type":"text_delta","text":' % self.index
        )
        data = {"type": "content_block_start", "index": self.index, "content_block": block}
        return head + _frame("content_block_start", data)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        data = {"type": "content_block_delta", "index": self.index, "delta": delta}
        return _frame("content_block_delta", data)

    def _stop(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _frame("content_block_stop", {"type": "content_block_stop", "index": self.index})


async def encode(events: AsyncIterator[ChatEvent], *, input_tokens: int) -> AsyncIterator[bytes]:
    """message_start, the content blocks in order (start, deltas, stop), message_delta with
    the stop reason and the usage, message_stop. A turn that did not finish (failed, blocked,
    stopped, shut down, or a bug of ours) ends with `event: error`, which the SDK raises."""
    failed = False
    blocks = Blocks()
    async for ev in compat.guarded(events):
        kind = type(ev)
        if kind is Delta:
            yield blocks.text(ev.text)  # type: ignore[union-attr]
        elif kind is TextRun:
            yield b"".join(map(blocks.text, ev.texts))  # type: ignore[union-attr]
        elif kind is Start:
            yield message_start(ev, input_tokens) + PING  # type: ignore[arg-type]
        elif kind is ErrorEvent:
            if not failed:
                failed = True
                yield error_frame(ev)  # type: ignore[arg-type]
        elif kind is End:
            if failed:
                continue
            end: End = ev  # type: ignore[assignment]
            if end.finish_reason not in STOP_REASONS:
                yield error_frame(compat.stream_failure(end))
                continue
            yield sse.Final(blocks.end() + message_delta(end) + MESSAGE_STOP)
        elif not failed:
            frame = blocks.event(ev)
            if frame:
                yield frame


def message_json(answer: compat.Answer) -> answers.AnthropicMessage:
    end = answer.end
    choice = answer.choices.get(0) or Choice()
    content: list[answers.AnthropicBlock] = []
    for block in choice.reasoning:
        if "redacted" in block:
            content.append(answers.RedactedThinkingBlock(data=block["redacted"]))
        else:
            content.append(
                answers.ThinkingBlock(
                    thinking=block.get("text", ""), signature=block.get("signature", "")
                )
            )
    text = choice.refusal + answer.text
    if text or not choice.tool_calls:
        content.append(answers.AnthropicTextBlock(text=text))
    content += [
        answers.ToolUseBlock(id=c.id, name=c.name, input=tool_input(c.arguments))
        for c in choice.tool_calls
    ]
    reason = stop_reason(end)
    return answers.AnthropicMessage(
        id=message_id(answer.message_id),
        model=answer.model,
        content=content,
        stop_reason=reason,
        stop_sequence=end.stop_sequence if reason == "stop_sequence" else None,
        usage=usage_json(end),
    )


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as tool_use input, which must be an object: other text (a
    model that wrote no valid JSON) is kept whole under `_raw`."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw": arguments}


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
    normalized, origins = to_request(body)
    gw = gateway_of(request)
    turn = await compat.translated(
        gw.chat.prepare(
            Prompt(
                caller,
                model_id=body.model,
                request=normalized,
                conversation_id=compat.conversation_id(request),
                max_output_tokens=body.max_tokens,
                temperature=body.temperature,
                **request_timing(request),
            )
        ),
        origins.param_loc,
    )
    compat.audit_prompt(gw, caller, turn, stream=body.stream)
    # an upstream refusal before any byte is still an HTTP error
    await compat.translated(gw.chat.open(turn), origins.param_loc)
    events = gw.chat.run(turn)
    headers = {**request_id_header(request), **turn.rate_headers}
    if body.stream:
        frames = encode(events, input_tokens=estimate_request_tokens(turn.request))
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
