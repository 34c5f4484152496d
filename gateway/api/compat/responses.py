"""The OpenAI-compatible Responses API: POST /v1/responses (JSON, or its event stream with
`stream: true`) and GET /v1/responses/{response_id}, on any served model: the request is
translated to the normalized one (gateway/api/compat/responses_input.py) and runs as a turn
like any other (rate limits, the three policy stages, usage), framed back as response
events (gateway/api/compat/responses_stream.py).

The API's server-side state lives in our Redis (gateway/turn/stored_responses.py): with
`store` (the default) a response opens a conversation, its id is the answer's, and
`previous_response_id` continues that conversation with its stored history. `store: false`
leaves only the usage behind, and such a response cannot be continued or retrieved."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.api import sse
from gateway.api.compat import common as compat
from gateway.api.compat import openai as openai_compat
from gateway.api.compat.responses_input import ResponsesRequest, translate
from gateway.api.compat.responses_stream import Output
from gateway.api.inputs import gateway_of, ok, read_body, request_timing
from gateway.api.schemas import openai_responses as answers
from gateway.errors import GatewayError, NotFound, PolicyBlocked
from gateway.storage.records import Conversation, Message
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start
from gateway.turn.events import ReasoningDelta, ReasoningEnd, RefusalDelta, ToolCallDelta
from gateway.turn.prepare import NO_ORG, Prompt
from gateway.turn.stored_responses import Stored, StoredResponses, join

_RESPONSE_ID = re.compile(r"resp_([0-9a-f]{32})")
STATUS = {"length": "incomplete", "content_filter": "incomplete"}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(message_id: str) -> str:
    return "resp_" + compat.hex_id(message_id)


def message_id_of(rid: str) -> str | None:
    """The answer's message id in a response id, or None for an id no answer of ours has."""
    match = _RESPONSE_ID.fullmatch(rid)
    if match is None:
        return None
    h = match[1]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Echo:
    """What a response object repeats of the request that made it."""

    model: str
    instructions: str | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: answers.Reasoning | None = None
    store: bool = True
    temperature: float | None = None
    text: answers.TextConfig | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: tuple[dict[str, Any], ...] = ()
    top_p: float | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None

    @classmethod
    def of(cls, body: ResponsesRequest) -> Echo:
        reasoning = body.reasoning
        return cls(
            model=body.model,
            instructions=body.instructions,
            max_output_tokens=body.max_output_tokens,
            parallel_tool_calls=body.parallel_tool_calls is not False,
            previous_response_id=body.previous_response_id,
            reasoning=answers.Reasoning(
                effort=reasoning.effort if reasoning else None,
                summary=(reasoning.summary or reasoning.generate_summary) if reasoning else None,
            ),
            store=body.store,
            temperature=body.temperature,
            text=answers.TextConfig(
                format=(body.text.format if body.text else None) or {"type": "text"},
                verbosity=body.text.verbosity if body.text else None,
            ),
            tool_choice=body.tool_choice or "auto",
            tools=tuple(body.tools or ()),
            top_p=body.top_p,
            user=body.user,
            metadata=body.metadata,
        )

    def response(
        self,
        rid: str,
        created_at: int,
        status: str,
        output: list[Any],
        *,
        usage: answers.ResponseUsage | None = None,
        error: answers.ResponseError | None = None,
        incomplete: str | None = None,
    ) -> answers.Response:
        return answers.Response(
            id=rid,
            created_at=created_at,
            status=status,  # type: ignore[arg-type]
            error=error,
            incomplete_details=answers.IncompleteDetails(reason=incomplete)  # type: ignore[arg-type]
            if incomplete
            else None,
            instructions=self.instructions,
            max_output_tokens=self.max_output_tokens,
            model=self.model,
            output=output,
            parallel_tool_calls=self.parallel_tool_calls,
            previous_response_id=self.previous_response_id,
            reasoning=self.reasoning or answers.Reasoning(),
            store=self.store,
            temperature=self.temperature,
            text=self.text or answers.TextConfig(format={"type": "text"}, verbosity=None),
            tool_choice=self.tool_choice,
            tools=list(self.tools),
            top_p=self.top_p,
            usage=usage,
            user=self.user,
            metadata=self.metadata or {},
        )


def usage_of(end: End | Message) -> answers.ResponseUsage:
    cached = end.cached_input_tokens
    written = end.cache_write_input_tokens
    return answers.ResponseUsage(
        input_tokens=end.input_tokens,
        input_tokens_details=answers.InputTokensDetails(
            cached_tokens=cached, cache_write_tokens=written
        ),
        output_tokens=end.output_tokens,
        output_tokens_details=answers.OutputTokensDetails(reasoning_tokens=end.reasoning_tokens),
        total_tokens=end.input_tokens + end.output_tokens,
    )


def failure_of(end: End, error: ErrorEvent | None) -> ErrorEvent | None:
    """The error a failed answer ends with (None: it answered)."""
    return error or compat.end_failure(end)


def final(echo: Echo, rid: str, created: int, output: Output, end: End) -> answers.Response:
    status = STATUS.get(end.finish_reason, "completed")
    return echo.response(
        rid,
        created,
        status,
        list(output.items),
        usage=usage_of(end),
        incomplete=INCOMPLETE.get(end.finish_reason),
    )


# -- the stream ------------------------------------------------------------------------------


async def encode(
    events: AsyncIterator[ChatEvent], echo: Echo, *, encrypted_reasoning: bool
) -> AsyncIterator[bytes]:
    """response.created and response.in_progress, the items' events, then
    response.completed (or .incomplete); a failed answer: `error`, then response.failed."""
    output: Output | None = None
    rid, created = "", int(time.time())
    error: ErrorEvent | None = None
    async for ev in compat.guarded(events):
        if type(ev) is Delta and output is not None:  # the hot path: text
            chunk = output.feed(ev)
            if chunk:
                yield chunk
        elif type(ev) is Start:
            rid = response_id(ev.message_id)
            output = Output(compat.hex_id(ev.message_id), encrypted_reasoning=encrypted_reasoning)
            start = echo.response(rid, created, "in_progress", [])
            yield output.frame(answers.ResponseCreated, response=start)
            yield output.frame(answers.ResponseInProgress, response=start)
        elif type(ev) is ErrorEvent:
            error = error or ev
        elif type(ev) is End:
            assert output is not None
            failed = failure_of(ev, error)
            if failed is None and ev.finish_reason == "cancelled":
                # stopped or shut down: an error too, or the SDK takes the cut text for an answer
                failed = compat.CANCELLED
            closing = output.close()
            if closing:
                yield closing
            if failed is not None:
                yield _failed(output, echo, rid, created, failed, ev)
                continue
            done = final(echo, rid, created, output, ev)
            kind = (
                answers.ResponseIncomplete
                if done.status == "incomplete"
                else answers.ResponseCompleted
            )
            yield output.frame(kind, response=done)
        elif output is not None:
            chunk = output.feed(ev)
            if chunk:
                yield chunk


def _failed(
    output: Output, echo: Echo, rid: str, created: int, error: ErrorEvent, end: End
) -> bytes:
    status = compat.failure(error).status
    code = error.code if status < 500 else "server_error"
    response = echo.response(
        rid,
        created,
        "failed",
        list(output.items),
        usage=usage_of(end),
        error=answers.ResponseError(code=code, message=error.message),
    )
    told = output.frame(answers.ResponseErrorEvent, code=code, message=error.message)
    return told + output.frame(answers.ResponseFailed, response=response)


async def whole(
    events: AsyncIterator[ChatEvent], echo: Echo, *, encrypted_reasoning: bool
) -> answers.Response:
    """The response of a request that did not stream; a failed answer raises."""
    output: Output | None = None
    rid, created = "", int(time.time())
    error: ErrorEvent | None = None
    end: End | None = None
    async for ev in events:
        if type(ev) is Start:
            rid = response_id(ev.message_id)
            output = Output(compat.hex_id(ev.message_id), encrypted_reasoning=encrypted_reasoning)
        elif type(ev) is ErrorEvent:
            error = ev
        elif type(ev) is End:
            end = ev
        elif output is not None:
            output.feed(ev)
    assert output is not None and end is not None  # a turn always yields both
    failed = failure_of(end, error)
    if failed is not None:
        raise compat.failure(failed)
    output.close()
    return final(echo, rid, created, output, end)


# -- a stored response, as GET shows it ------------------------------------------------------


def stored_json(stored: Stored) -> answers.Response:
    """A stored answer as its response: output, status and usage (the request's options are
    not kept, so they read as their defaults)."""
    m = stored.answer
    output = Output(compat.hex_id(m.id), encrypted_reasoning=True)
    for block in m.reasoning:
        for ev in _reasoning_events(block):
            output.feed(ev)
    if m.content:
        output.feed(Delta(m.content))
    if m.refusal:
        output.feed(RefusalDelta(m.refusal))
    for i, call in enumerate(m.tool_calls):
        output.feed(_call(i, call))
    output.close()
    earlier = [h for h in stored.history[:-1] if h.role == "assistant"]
    echo = Echo(
        model=m.model_id or "",
        previous_response_id=response_id(earlier[-1].id) if earlier else None,
        store=True,
    )
    reason = m.finish_reason or "stop"
    if m.status in ("error", "blocked"):
        error = m.error or {"code": "policy_blocked", "message": "the answer was blocked"}
        return echo.response(
            response_id(m.id),
            m.created_at // 1000,
            "failed",
            list(output.items),
            usage=usage_of(m),
            error=answers.ResponseError(code=error["code"], message=error["message"]),
        )
    return echo.response(
        response_id(m.id),
        m.created_at // 1000,
        STATUS.get(reason, "completed"),
        list(output.items),
        usage=usage_of(m),
        incomplete=INCOMPLETE.get(reason),
    )


def _reasoning_events(block: dict[str, str]) -> list[ChatEvent]:
    if "redacted" in block:
        return [ReasoningEnd(redacted=block["redacted"])]
    text = block.get("text", "")
    return [
        *([ReasoningDelta(text)] if text else []),
        ReasoningEnd(signature=block.get("signature")),
    ]


def _call(index: int, call: dict[str, str]) -> ChatEvent:
    return ToolCallDelta(index, call.get("id"), call.get("name"), call.get("arguments", ""))


# -- handlers --------------------------------------------------------------------------------


def _title(body: ResponsesRequest) -> str:
    """The new conversation's title: the input's first user text."""
    if isinstance(body.input, str):
        return body.input
    for item in body.input:
        if item.get("role") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return str(part["text"])
    return "response"


@compat.provider_errors(openai_compat.error_response)
async def create(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, ResponsesRequest)
    gw = gateway_of(request)
    # the model as the turn will find it (404, or 403 for an API key's), before anything
    # is stored for it
    await gw.chat.preparation.model(caller, body.model, caller.org_id or NO_ORG)
    responses = StoredResponses(gw.store)
    conv: Conversation | None = None
    prior = []
    if body.previous_response_id is not None:
        mid = message_id_of(body.previous_response_id)
        if mid is None:
            raise NotFound("previous_response_id: no such response", code="response_not_found")
        stored = await responses.continued(caller, mid)
        prior = stored.turns()
        conv = stored.conversation if body.store else None
    translated = translate(body, prior, join)
    opened: Conversation | None = None
    if body.store and conv is None:
        conv = opened = await responses.open(caller, _title(body))
    try:
        turn = await gw.chat.prepare(
            Prompt(
                caller,
                model_id=body.model,
                request=translated.request,
                conversation_id=conv.id if conv else None,
                max_output_tokens=body.max_output_tokens,
                **request_timing(request),
            )
        )
    except PolicyBlocked:
        raise  # the conversation keeps the blocked prompt, as every conversation does
    except GatewayError:
        if opened is not None:
            await responses.abandon(caller, opened)
        raise
    if opened is not None:
        gw.audit.record(
            opened.org_id, audit.CONVERSATION_CREATED, caller, conversation_id=opened.id
        )
    compat.audit_prompt(gw, caller, turn, stream=body.stream)
    await gw.chat.open(turn)  # an upstream refusal before any byte is still an HTTP error
    events = gw.chat.run(turn)
    echo = Echo.of(body)
    encrypted = translated.encrypted_reasoning
    if body.stream:
        return sse.sse_response(
            encode(events, echo, encrypted_reasoning=encrypted),
            settings=gw.settings,
            headers=turn.rate_headers,
        )
    answer = await whole(events, echo, encrypted_reasoning=encrypted)
    return ok(answer, headers=turn.rate_headers)


@compat.provider_errors(openai_compat.error_response)
async def retrieve(request: Request) -> Response:
    caller = await compat.caller(request)
    rid = str(request.path_params["response_id"])
    mid = message_id_of(rid)
    if mid is None:
        raise NotFound(f"response {rid[:100]!r} not found", code="response_not_found")
    stored = await StoredResponses(gateway_of(request).store).find(caller, mid)
    return ok(stored_json(stored))


routes = [
    Route("/v1/responses", create, methods=["POST"]),
    Route("/v1/responses/{response_id}", retrieve, methods=["GET"]),
]
