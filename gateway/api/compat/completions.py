"""The OpenAI-compatible legacy POST /v1/completions (JSON or SSE), for OpenAI-compatible
models only: the prompt is a turn like any other (rate limits, the three policy stages,
usage, `X-Conversation-Id`), whose upstream call is the adapter's complete() instead of
stream(). Anthropic and demo models answer 400: they have no text-completion API.

One prompt and one choice per request: several prompts, `n`/`best_of` above 1, `echo` and
`logprobs` are refused with 400, never dropped."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import sse
from gateway.api.compat import common as compat
from gateway.api.compat import openai as openai_compat
from gateway.api.inputs import Body, gateway_of, ok, read_body, refused, request_timing
from gateway.api.schemas import openai_completions as answers
from gateway.errors import BadRequest
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start, TextRun, Turn
from gateway.turn.prepare import NO_ORG, Prompt
from providers.base import (
    ChatMessage,
    ChatRequest,
    EmbeddingRequest,
    Embeddings,
    ProviderEvent,
    TextCompleter,
    TextCompletionRequest,
    TokenCount,
)

FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter"}
MAX_STOP = 4  # OpenAI's limit
# the provider kinds whose adapter is a TextCompleter (providers/openai.py's complete());
# the kind decides it before the turn builds its client (as_text_completion checks it)
TEXT_COMPLETION_PROVIDERS = frozenset({"openai"})


class StreamOptions(Body):
    include_usage: bool = False


class CompletionsRequest(Body):
    model: str = Field(min_length=1, max_length=200)
    prompt: str | list[str] = Field(description="the text to continue (one prompt)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, int] | None = Field(default=None, max_length=300)
    suffix: str | None = None
    user: str | None = Field(default=None, max_length=256)
    # one choice, no echo, no log probabilities: asked for, they are refused
    n: int | None = None
    best_of: int | None = None
    echo: bool | None = None
    logprobs: int | None = None


def prompt_of(body: CompletionsRequest) -> str:
    if isinstance(body.prompt, str):
        return body.prompt
    if len(body.prompt) != 1:
        raise unsupported(("prompt",), "one prompt per request (send each on its own)")
    return body.prompt[0]


def unsupported(loc: tuple[str, ...], message: str) -> BadRequest:
    return refused(loc, message, code="unsupported_parameter")


def template_of(body: CompletionsRequest) -> TextCompletionRequest:
    """Everything the upstream gets but the model and the prompt (the turn's, after the
    pre-stage policies)."""
    for name, default in (("n", 1), ("best_of", 1)):
        if getattr(body, name) not in (None, default):
            raise unsupported((name,), "one choice per request")
    if body.echo:
        raise unsupported(("echo",), "the prompt is not echoed by this gateway")
    if body.logprobs is not None:
        raise unsupported(("logprobs",), "log probabilities of legacy completions")
    if body.stream_options is not None and not body.stream:
        raise refused(("stream_options",), "only allowed when stream is true", code="bad_request")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > MAX_STOP:
        raise refused(("stop",), f"at most {MAX_STOP} sequences", code="invalid_value")
    return TextCompletionRequest(
        model="",
        prompt="",
        max_output_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias,
        suffix=body.suffix,
        user=body.user,
    )


@dataclass(slots=True)
class AsTextCompletion:
    """The model's adapter as a legacy-completion turn calls it: stream() is complete() with
    the turn's (policy-checked) prompt and output limit, and the request's other options."""

    provider: TextCompleter
    template: TextCompletionRequest

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        return self.provider.complete(
            replace(
                self.template,
                model=request.model,
                prompt=request.messages[-1].text,
                max_output_tokens=request.max_output_tokens,
            )
        )

    async def count_tokens(self, request: ChatRequest) -> TokenCount:
        raise NotImplementedError("a legacy completion counts no tokens beforehand")

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        raise NotImplementedError("a legacy completion embeds nothing")

    async def aclose(self) -> None:
        return None  # the adapter is the worker's, closed with it


def as_text_completion(turn: Turn, template: TextCompletionRequest) -> None:
    """Point the prepared turn at complete(). The model's fallbacks are not tried: they may
    be models without a text-completion API."""
    assert isinstance(turn.provider, TextCompleter)
    turn.provider = AsTextCompletion(turn.provider, template)
    turn.model = turn.model.model_copy(update={"fallbacks": ()})


# -- the answer ----------------------------------------------------------------------------


def completion_id(message_id: str) -> str:
    return "cmpl-" + compat.hex_id(message_id)


class Frames:
    """`data: <text_completion>` frames of one completion; a text frame only JSON-escapes
    its text into a head and a tail rendered once per stream."""

    __slots__ = ("head", "text_head", "text_tail")

    def __init__(self, cid: str, created: int, model: str) -> None:
        self.head = (
            b'data: {"id":"%s","object":"text_completion","created":%d,"model":%s,'
            b'"system_fingerprint":null,"choices":'
            % (cid.encode(), created, sse.json_string(model))
        )
        self.text_head = self.head + b'[{"text":'
        self.text_tail = b',"index":0,"logprobs":null,"finish_reason":null}]}\n\n'

    def text(self, text: str) -> bytes:
        return self.text_head + sse.json_string(text) + self.text_tail

    def finish(self, reason: str) -> bytes:
        return self.head + (
            b'[{"text":"","index":0,"logprobs":null,"finish_reason":"%s"}]}\n\n' % reason.encode()
        )

    def usage(self, end: End) -> bytes:
        usage = openai_compat.usage_json(end)
        body = sse.escape_line_break_bytes(usage.__pydantic_serializer__.to_json(usage))
        return self.head + b'[],"usage":%s}\n\n' % body


async def encode(events: AsyncIterator[ChatEvent], *, include_usage: bool) -> AsyncIterator[bytes]:
    """Text chunks, the finish chunk, the usage chunk (when asked), [DONE]; a turn that did
    not finish (failed, blocked, stopped, shut down, or a bug of ours) ends with one
    `{"error": {...}}` chunk and no [DONE], as OpenAI's streams do."""
    frames: Frames | None = None
    failed = False
    async for ev in compat.guarded(events):
        if type(ev) is Delta:
            yield frames.text(ev.text)  # type: ignore[union-attr]
        elif type(ev) is TextRun:
            yield b"".join(map(frames.text, ev.texts))  # type: ignore[union-attr]
        elif type(ev) is Start:
            frames = Frames(completion_id(ev.message_id), int(time.time()), ev.model)
        elif type(ev) is ErrorEvent and not failed:
            failed = True
            yield openai_compat.error_frame(ev)
        elif type(ev) is End and not failed:
            reason = FINISH.get(ev.finish_reason)
            if reason is None:
                yield openai_compat.error_frame(compat.stream_failure(ev))
                continue
            yield frames.finish(reason)  # type: ignore[union-attr]
            if include_usage:
                yield frames.usage(ev)  # type: ignore[union-attr]
            yield openai_compat.DONE


def completion_json(answer: compat.Answer) -> answers.TextCompletion:
    end = answer.end
    reason = FINISH.get(end.finish_reason, end.finish_reason)
    return answers.TextCompletion(
        id=completion_id(answer.message_id),
        created=int(time.time()),
        model=answer.model,
        choices=[answers.TextCompletionChoice(text=answer.text, finish_reason=reason)],
        usage=openai_compat.usage_json(end),
    )


# -- the handler ---------------------------------------------------------------------------


@compat.provider_errors(openai_compat.error_response)
async def completions(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, CompletionsRequest)
    text = prompt_of(body)
    template = template_of(body)
    gw = gateway_of(request)
    # the model as the turn will find it (404, or 403 for an API key's), refused before
    # anything is stored when its adapter has no legacy completions
    model = (await gw.chat.preparation.model(caller, body.model, caller.org_id or NO_ORG)).config
    if model.provider not in TEXT_COMPLETION_PROVIDERS:
        raise unsupported(
            ("model",),
            f"model {body.model!r} ({model.provider}) has no legacy completions; "
            "use /v1/chat/completions",
        )
    turn = await gw.chat.prepare(
        Prompt(
            caller,
            model_id=body.model,
            messages=[ChatMessage("user", text)],
            conversation_id=compat.conversation_id(request),
            max_output_tokens=body.max_tokens,
            temperature=body.temperature,
            **request_timing(request),
        )
    )
    as_text_completion(turn, template)
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


routes = [Route("/v1/completions", completions, methods=["POST"])]
