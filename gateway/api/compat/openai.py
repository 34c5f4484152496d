"""The OpenAI-compatible API: POST /v1/chat/completions (JSON or SSE) and GET /v1/models.

A request becomes a direct turn (ChatService.prepare_direct: policies, limits and usage
accounting as everywhere else); the turn's events become Chat Completions chunks, byte for
byte as OpenAI streams them. Errors use OpenAI's shape
{"error": {"message", "type", "param", "code"}} instead of the contract's, so the official
SDK raises its own classes (see gateway/api/compat/common.py). Tool calls, images, `n` > 1 and
structured output are refused with 400; sampling knobs other than temperature and
max_tokens (top_p, stop, seed, penalties, ...) are accepted and not forwarded.
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
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import common as compat
from gateway.api.inputs import Body, dotted, gateway_of, ok, read_body, refused, request_timing
from gateway.api.schemas import openai as answers
from gateway.errors import BadRequest, GatewayError, Loc
from gateway.settings import ModelConfig
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start
from gateway.turn.prepare import Prompt
from providers.base import ChatMessage, Role

ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
FINISH = {"stop": "stop", "length": "length"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "requests",
}
MODELS_CREATED = int(time.time())  # models have no date of their own: when serving began


# -- the request ---------------------------------------------------------------------------


class ContentPart(Body):
    type: str
    text: str | None = None


class InMessage(Body):
    role: str
    content: str | list[ContentPart] | None = None
    tool_calls: list[Any] | None = None


class StreamOptions(Body):
    include_usage: bool = False


class CompletionRequest(Body):
    model: str = Field(min_length=1, max_length=200)
    messages: list[InMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None


def unsupported(loc: Loc, message: str) -> BadRequest:
    return refused(loc, message, code="unsupported_parameter")


def to_messages(body: CompletionRequest) -> list[ChatMessage]:
    if body.tools or body.functions:
        raise unsupported(("tools",), "tool and function calling is not supported by this gateway")
    if body.n not in (None, 1):
        raise unsupported(("n",), "only one choice per request is supported")
    if body.response_format and body.response_format.get("type") not in (None, "text"):
        raise unsupported(("response_format",), "only text responses are supported")
    if body.stream_options is not None and not body.stream:
        raise refused(("stream_options",), "only allowed when stream is true", code="bad_request")
    messages = []
    for i, m in enumerate(body.messages):
        role = ROLES.get(m.role)
        if role is None:
            raise refused(
                ("messages", i, "role"),
                f"{m.role!r} messages are not supported by this gateway "
                "(text messages of system, developer, user and assistant only)",
                code="unsupported_value",
            )
        if m.tool_calls:
            raise unsupported(("messages", i, "tool_calls"), "tool calls are not supported")
        messages.append(ChatMessage(role, text_of(m.content, ("messages", i, "content"))))
    return messages


def text_of(content: str | list[ContentPart] | None, loc: Loc) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise refused(loc, "a text content is required", code="bad_request")
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise refused(
                (*loc, j),
                f"only text parts are supported, not {part.type!r}",
                code="unsupported_value",
            )
    return "\n".join(p.text for p in content if p.text is not None)


# -- the answer ----------------------------------------------------------------------------


def completion_id(message_id: str) -> str:
    return "chatcmpl-" + compat.hex_id(message_id)


class ChunkFrames:
    """`data: <chat.completion.chunk>` frames of one completion. Everything but the delta
    is rendered once per stream; a content frame only JSON-escapes its text."""

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

    def role(self) -> bytes:
        return self.choice(b'{"role":"assistant","content":"","refusal":null}', b"null")

    def finish(self, reason: str) -> bytes:
        return self.choice(b"{}", b'"%s"' % reason.encode())

    def choice(self, delta: bytes, finish: bytes) -> bytes:
        return b'%s[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]%s' % (
            self.head,
            delta,
            finish,
            self.tail,
        )

    def usage(self, prompt: int, completion: int) -> bytes:
        return (
            b'%s[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\n'
            % (self.head, prompt, completion, prompt + completion)
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


async def encode(events: AsyncIterator[ChatEvent], *, include_usage: bool) -> AsyncIterator[bytes]:
    """Role chunk, content chunks, the finish chunk, the usage chunk (when asked), [DONE].
    A turn that did not finish (failed, blocked, stopped, shut down, or a bug of ours) ends
    with one `{"error": {...}}` chunk instead and no [DONE], as OpenAI's own streams do: the
    SDK raises it, where a stream that just stopped would look complete."""
    frames: ChunkFrames | None = None
    failed = False
    async for ev in compat.guarded(events):
        if type(ev) is Delta:
            yield frames.content(ev.text)  # type: ignore[union-attr]
        elif type(ev) is Start:
            cid = completion_id(ev.message_id)
            frames = ChunkFrames(cid, int(time.time()), ev.model, include_usage)
            yield frames.role()
        elif type(ev) is ErrorEvent and not failed:
            failed = True
            yield error_frame(ev)
        elif type(ev) is End and not failed:
            reason = FINISH.get(ev.finish_reason)
            if reason is None:
                yield error_frame(compat.stream_failure(ev))
                continue
            yield frames.finish(reason)  # type: ignore[union-attr]
            if include_usage:
                yield frames.usage(ev.input_tokens, ev.output_tokens)  # type: ignore[union-attr]
            yield DONE


def completion_json(answer: compat.Answer) -> answers.ChatCompletion:
    end = answer.end
    return answers.ChatCompletion(
        id=completion_id(answer.message_id),
        created=int(time.time()),
        model=answer.model,
        choices=[
            answers.ChatCompletionChoice(
                message=answers.ChatCompletionMessage(content=answer.text),
                finish_reason=FINISH.get(end.finish_reason, end.finish_reason),
            )
        ],
        usage=answers.OpenAIUsage(
            prompt_tokens=end.input_tokens,
            completion_tokens=end.output_tokens,
            total_tokens=end.input_tokens + end.output_tokens,
        ),
    )


def error_response(request: Request, exc: GatewayError) -> Response:
    return ok(error_json(exc.status, exc.code, exc.message, exc.param), exc.status, exc.headers)


# -- handlers ------------------------------------------------------------------------------


@compat.provider_errors(error_response)
async def chat_completions(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, CompletionRequest)
    messages = to_messages(body)
    gw = gateway_of(request)
    turn = await gw.chat.prepare(
        Prompt(
            caller,
            model_id=body.model,
            messages=messages,
            conversation_id=compat.conversation_id(request),
            max_output_tokens=body.max_completion_tokens or body.max_tokens,
            temperature=body.temperature,
            **request_timing(request),
        )
    )
    compat.audit_prompt(gw, caller, turn, stream=body.stream)
    await gw.chat.open(turn)  # an upstream refusal before any byte is still an HTTP error
    events = gw.chat.run(turn)
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return sse.sse_response(
            encode(events, include_usage=include_usage),
            settings=gw.settings,
            headers=turn.rate_headers,
        )
    return ok(completion_json(await compat.collect(events)), headers=turn.rate_headers)


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
