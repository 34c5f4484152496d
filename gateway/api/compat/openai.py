"""The OpenAI-compatible API: POST /v1/chat/completions (JSON or SSE) and GET /v1/models.

A request (gateway/api/compat/openai_request.py) becomes a direct turn: policies, limits
and usage accounting as everywhere else; the turn's events become Chat Completions chunks,
byte for byte as OpenAI streams them: text, tool-call deltas (the first piece of a call
with its id, type and name, then its argument fragments), refusals, log probabilities,
reasoning as `reasoning_content` (as compatible servers stream it), each choice's finish
and the usage chunk with its cached and reasoning tokens. Errors use OpenAI's shape
{"error": {"message", "type", "param", "code"}} instead of the contract's, so the official
SDK raises its own classes (see gateway/api/compat/common.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import sse
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import common as compat
from gateway.api.compat.openai_request import CompletionRequest, param_loc, to_request
from gateway.api.inputs import dotted, gateway_of, ok, read_body, request_timing
from gateway.api.schemas import openai as answers
from gateway.errors import GatewayError, Loc
from gateway.settings import ModelConfig
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start, TextRun
from gateway.turn.events import (
    Choice,
    Logprobs,
    ReasoningDelta,
    RefusalDelta,
    ToolCallDelta,
)
from gateway.turn.prepare import Prompt
from providers.base import TokenLogprob

FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "pause": "stop",  # an Anthropic server tool's pause: Chat Completions has no word for it
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "requests",
}
MODELS_CREATED = int(time.time())  # models have no date of their own: when serving began


def completion_id(message_id: str) -> str:
    return "chatcmpl-" + compat.hex_id(message_id)


def _json(value: Any) -> bytes:
    """A rarer frame's JSON: ASCII only, so no line separator reaches an SSE line splitter."""
    return json.dumps(value, separators=(",", ":")).encode()


class ChunkFrames:
    """`data: <chat.completion.chunk>` frames of one completion. Everything but the delta
    is rendered once per stream; a content frame of choice 0 only JSON-escapes its text."""

    __slots__ = ("content_head", "content_tail", "head", "tail")

    def __init__(self, cid: str, created: int, model: str, include_usage: bool) -> None:
        self.head = (
            b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"system_fingerprint":null,"choices":' % (cid.encode(), created, _str(model))
        )
        # with include_usage every chunk carries the key; only the last one a value
        self.tail = (b',"usage":null' if include_usage else b"") + b"}\n\n"
        self.content_head = self.head + b'[{"index":0,"delta":{"content":'
        self.content_tail = b'},"logprobs":null,"finish_reason":null}]' + self.tail

    def content(self, text: str) -> bytes:
        return self.content_head + sse.json_string(text) + self.content_tail

    def run(self, texts: list[str]) -> bytes:
        """The content frames of a TextRun's texts, as one chunk."""
        head, tail = self.content_head, self.content_tail
        return b"".join([head + s + tail for s in sse.json_strings(texts)])

    def role(self, choice: int = 0) -> bytes:
        return self.choice(b'{"role":"assistant","content":"","refusal":null}', b"null", choice)

    def finish(self, reason: str, choice: int = 0) -> bytes:
        return self.choice(b"{}", b'"%s"' % reason.encode(), choice)

    def choice(
        self, delta: bytes, finish: bytes, index: int = 0, logprobs: bytes = b"null"
    ) -> bytes:
        return b'%s[{"index":%d,"delta":%s,"logprobs":%s,"finish_reason":%s}]%s' % (
            self.head,
            index,
            delta,
            logprobs,
            finish,
            self.tail,
        )

    def event(self, ev: ChatEvent) -> bytes:
        """The chunk of any event but choice 0's text and the stream's own frames."""
        kind = type(ev)
        if kind is Delta:
            return self.choice(b'{"content":%s}' % _str(ev.text), b"null", ev.choice)  # type: ignore[union-attr]
        if kind is ToolCallDelta:
            return self.choice(_json({"tool_calls": [tool_call(ev)]}), b"null", ev.choice)  # type: ignore[arg-type, union-attr]
        if kind is RefusalDelta:
            return self.choice(_json({"refusal": ev.text}), b"null", ev.choice)  # type: ignore[union-attr]
        if kind is ReasoningDelta:  # as vLLM, DeepSeek and other compatible servers stream it
            return self.choice(_json({"reasoning_content": ev.text}), b"null", ev.choice)  # type: ignore[union-attr]
        if kind is Logprobs:
            lp: Logprobs = ev  # type: ignore[assignment]
            tokens = [logprob_json(t) for t in lp.tokens]
            body = (
                {"content": None, "refusal": tokens}
                if lp.refusal
                else {"content": tokens, "refusal": None}
            )
            return self.choice(b"{}", b"null", lp.choice, _json(body))
        return b""  # a signature or redacted reasoning: nothing Chat Completions can carry

    def usage(self, end: End) -> bytes:
        return b'%s[],"usage":%s}\n\n' % (self.head, _json(usage_json(end).model_dump()))


def tool_call(ev: ToolCallDelta) -> dict[str, Any]:
    """A tool-call delta as OpenAI streams it: the first piece with id, type and name."""
    if ev.id is None:
        return {"index": ev.index, "function": {"arguments": ev.arguments}}
    function = {"name": ev.name or "", "arguments": ev.arguments}
    return {"index": ev.index, "id": ev.id, "type": "function", "function": function}


def logprob_json(token: TokenLogprob, top: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": token.token,
        "logprob": token.logprob,
        "bytes": list(token.bytes) if token.bytes is not None else None,
    }
    if top:
        out["top_logprobs"] = [logprob_json(t, top=False) for t in token.top]
    return out


def usage_json(end: End) -> answers.OpenAIUsage:
    return answers.OpenAIUsage(
        prompt_tokens=end.input_tokens,
        completion_tokens=end.output_tokens,
        total_tokens=end.input_tokens + end.output_tokens,
        prompt_tokens_details=answers.PromptTokensDetails(cached_tokens=end.cached_input_tokens),
        completion_tokens_details=answers.CompletionTokensDetails(
            reasoning_tokens=end.reasoning_tokens
        ),
    )


DONE = b"data: [DONE]\n\n"


def _str(value: str) -> bytes:
    return sse.json_string(value)


def error_json(
    status: int, code: str, message: str, param: Loc | None = None
) -> answers.OpenAIError:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    detail = answers.OpenAIErrorDetail(
        message=message, type=kind, param=dotted(param) if param else None, code=code
    )
    return answers.OpenAIError(error=detail)


def error_frame(ev: ErrorEvent) -> bytes:
    body = error_json(compat.failure(ev).status, ev.code, ev.message)
    return b"data: %s\n\n" % sse.escape_line_break_bytes(body.__pydantic_serializer__.to_json(body))


async def encode(  # noqa: C901 - the hot loop: one branch per event kind, inline
    events: AsyncIterator[ChatEvent], *, include_usage: bool, choices: int = 1
) -> AsyncIterator[bytes]:
    """Role chunk(s), the answer's chunks, each choice's finish chunk, the usage chunk (when
    asked), [DONE]. A turn that did not finish (failed, blocked, stopped, shut down, or a bug
    of ours) ends with one `{"error": {...}}` chunk instead and no [DONE], as OpenAI's own
    streams do: the SDK raises it, where a stream that just stopped would look complete."""
    frames: ChunkFrames | None = None
    failed = False
    try:  # compat.guarded, inline: one generator less per token
        async for ev in events:
            kind = type(ev)
            if kind is Delta and not ev.choice:  # type: ignore[union-attr]
                yield frames.content(ev.text)  # type: ignore[union-attr]
            elif kind is TextRun:
                yield frames.run(ev.texts)  # type: ignore[union-attr]
            elif kind is Start:
                cid = completion_id(ev.message_id)  # type: ignore[union-attr]
                frames = ChunkFrames(cid, int(time.time()), ev.model, include_usage)  # type: ignore[union-attr]
                yield b"".join(frames.role(c) for c in range(choices))
            elif kind is ErrorEvent:
                if not failed:
                    failed = True
                    yield error_frame(ev)  # type: ignore[arg-type]
            elif kind is End:
                if not failed:
                    yield sse.Final(b"".join(_ending(frames, ev, include_usage, choices)))  # type: ignore[arg-type]
            elif not failed:
                frame = frames.event(ev)  # type: ignore[union-attr]
                if frame:
                    yield frame
    except Exception:
        broke = compat.broken()
        if not failed:
            yield error_frame(broke)


def _ending(frames: ChunkFrames, end: End, include_usage: bool, choices: int) -> list[bytes]:
    reason = FINISH.get(end.finish_reason)
    if reason is None:  # failed, blocked, stopped or shut down: never a complete-looking stream
        return [error_frame(compat.stream_failure(end))]
    reasons = {c.choice: FINISH.get(c.finish_reason, "stop") for c in end.choices}
    out = [frames.finish(reasons.get(c, reason), c) for c in range(choices)]
    if include_usage:
        out.append(frames.usage(end))
    out.append(DONE)
    return out


def completion_json(answer: compat.Answer, choices: int, logprobs: bool) -> answers.ChatCompletion:
    end = answer.end
    reasons = {c.choice: FINISH.get(c.finish_reason, "stop") for c in end.choices}
    first = FINISH.get(end.finish_reason, end.finish_reason)
    return answers.ChatCompletion(
        id=completion_id(answer.message_id),
        created=int(time.time()),
        model=answer.model,
        choices=[
            _choice_json(
                n,
                answer.choices.get(n) or Choice(),
                answer.text if n == 0 else None,
                reasons.get(n, first),
                logprobs,
            )
            for n in range(choices)
        ],
        usage=usage_json(end),
    )


def _choice_json(
    n: int, choice: Choice, text: str | None, reason: str, logprobs: bool
) -> answers.ChatCompletionChoice:
    text = choice.text if text is None else text
    calls = [
        answers.ToolCallOut(
            id=c.id, function=answers.FunctionCallOut(name=c.name, arguments=c.arguments)
        )
        for c in choice.tool_calls
    ]
    reasoning = "".join(b.get("text", "") for b in choice.reasoning) or None
    message = answers.ChatCompletionMessage(
        content=text if text or not (calls or choice.refusal) else None,
        refusal=choice.refusal or None,
        tool_calls=calls or None,
        reasoning_content=reasoning,
    )
    probs = None
    if logprobs:
        probs = answers.ChoiceLogprobs.model_validate(
            {
                "content": [logprob_json(t) for t in choice.logprobs],
                "refusal": [logprob_json(t) for t in choice.refusal_logprobs] or None,
            }
        )
    return answers.ChatCompletionChoice(
        index=n,
        message=message,
        logprobs=probs,
        finish_reason=cast(answers.FinishReason, reason),  # and validated as one
    )


def error_response(request: Request, exc: GatewayError) -> Response:
    return ok(error_json(exc.status, exc.code, exc.message, exc.param), exc.status, exc.headers)


# -- handlers ------------------------------------------------------------------------------


@compat.provider_errors(error_response)
async def chat_completions(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, CompletionRequest)
    normalized = to_request(body)
    gw = gateway_of(request)
    turn = await compat.translated(
        gw.chat.prepare(
            Prompt(
                caller,
                model_id=body.model,
                request=normalized,
                conversation_id=compat.conversation_id(request),
                max_output_tokens=normalized.max_output_tokens,
                temperature=body.temperature,
                **request_timing(request),
            )
        ),
        param_loc,
    )
    compat.audit_prompt(gw, caller, turn, stream=body.stream)
    # an upstream refusal before any byte is still an HTTP error
    await compat.translated(gw.chat.open(turn), param_loc)
    events = gw.chat.run(turn)
    choices = body.n or 1
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return sse.sse_response(
            encode(events, include_usage=include_usage, choices=choices),
            settings=gw.settings,
            headers=turn.rate_headers,
        )
    answer = await compat.collect(events)
    return ok(
        completion_json(answer, choices, bool(body.logprobs)),
        headers=turn.rate_headers,
        exclude_none=False,
    )


def model_json(m: ModelConfig) -> answers.OpenAIModel:
    return answers.OpenAIModel(id=m.id, created=MODELS_CREATED, owned_by=m.provider)


@compat.provider_errors(error_response)
async def _list_models(request: Request) -> Response:
    models = await compat.served_models(request, await compat.caller(request))
    return ok(answers.OpenAIModelList(data=[model_json(m) for m in models]))


@compat.provider_errors(error_response)
async def _retrieve_model(request: Request) -> Response:
    who = await compat.caller(request)
    model = await compat.served_model(request, who, str(request.path_params["model_id"]))
    return ok(model_json(model))


# Both SDKs list models at GET /v1/models; Anthropic's always sends anthropic-version.
async def list_models(request: Request) -> Response:
    if anthropic_compat.VERSION_HEADER in request.headers:
        return await anthropic_compat.list_models(request)
    return await _list_models(request)


async def retrieve_model(request: Request) -> Response:
    if anthropic_compat.VERSION_HEADER in request.headers:
        return await anthropic_compat.retrieve_model(request)
    return await _retrieve_model(request)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
]
