"""The OpenAI Chat Completions adapter (also for OpenAI-compatible servers: vLLM, Ollama, ...).

Posts through the official SDK's low-level `post()` and parses the streamed SSE itself: the
SDK's auth, retries, base URL and status errors, without its per-request body transform
(`create()` walks the body against the params' TypedDicts) or a model per chunk. What an
Anthropic-shaped request asks for is mapped, approximated or refused as
docs/compat-translation.md tells.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from typing import Any

import httpx2
import openai

from providers import wire
from providers.base import (
    OPENED,
    ChatMessage,
    ChatRequest,
    DocumentPart,
    EmbeddingRequest,
    Embeddings,
    Finish,
    FinishReason,
    ForcedTool,
    ImagePart,
    LogprobsDelta,
    ModelSpec,
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    ReasoningPart,
    RefusalDelta,
    TextCompletionRequest,
    TextDelta,
    TextPart,
    Thinking,
    TokenCount,
    TokenLogprob,
    ToolCallDelta,
    UnsupportedParameter,
    Usage,
    add_native_fields,
    estimate_request_tokens,
    text_events,
)
from providers.sdk_calls import SdkCalls
from providers.transport import body_bytes, upstream_transport

# request fields beyond OpenAI's that an OpenAI-compatible server may take (spec.options accepts)
EXTENSIONS = frozenset({"top_k"})
# Anthropic's thinking budget -> reasoning_effort: the inverse of the budgets the Anthropic
# adapter gives each effort (LiteLLM's: low 1024, medium 2048, high 4096)
_EFFORT_BY_BUDGET = ((2048, "low"), (4096, "medium"))
# as create() does: this SDK adds the auth headers of the schemes named here
_BEARER = {"security": {"bearer_auth": True}}
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIProvider:
    """spec.options: max_retries (SDK retries before the first byte, default 2);
    max_tokens_param ("max_tokens", the default that vLLM/Ollama understand, or
    "max_completion_tokens" for OpenAI's reasoning models, which reject max_tokens);
    include_usage (default True; off for servers that refuse stream_options);
    accepts (request fields beyond OpenAI's that this compatible server takes: "top_k" for
    vLLM, llama.cpp and others; default none, as OpenAI refuses them);
    max_connections, max_keepalive_connections (the upstream pool, see wire.pool_limits);
    transport ("httpx": the SDK's own httpx2 transport instead of providers.transport's)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.accepts = frozenset(spec.options.get("accepts") or ())
        if not self.accepts <= EXTENSIONS:
            unknown = ", ".join(sorted(self.accepts - EXTENSIONS))
            raise ValueError(f"model {spec.id!r}: options.accepts has unknown fields: {unknown}")
        timeout = openai.Timeout(spec.read_timeout, connect=spec.connect_timeout)
        limits = wire.pool_limits(spec.options)
        self._client = openai.AsyncOpenAI(
            api_key=spec.api_key or "unused",  # local servers want no key, the SDK insists on one
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=spec.options.get("max_retries", 2),
            http_client=openai.DefaultAsyncHttpxClient(
                timeout=timeout,
                limits=limits,
                transport=upstream_transport(spec.options, limits=limits),
            ),
        )
        self._calls = SdkCalls(self._client)

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        """The Chat Completions body; UnsupportedParameter for what it cannot carry."""
        options = self.spec.options
        messages = request.messages
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": [
                {"role": m.role, "content": m.content}
                if type(m.content) is str and _plain(m)
                else _message(m, i)
                for i, m in enumerate(messages)
            ],
            "stream": True,
        }
        if options.get("include_usage", True):
            arguments["stream_options"] = {"include_usage": True}
        max_tokens = request.max_output_tokens or self.spec.max_output_tokens
        if max_tokens:
            arguments[options.get("max_tokens_param", "max_tokens")] = max_tokens
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        self._extended(request, arguments)
        return arguments

    def _extended(self, request: ChatRequest, arguments: dict[str, Any]) -> None:
        """Everything beyond the four fields plain chat has always sent."""
        for name in _FORWARDED:
            value = getattr(request, name)
            if value is not None:
                arguments[name] = dict(value) if isinstance(value, Mapping) else value
        if request.stop:
            arguments["stop"] = list(request.stop)
        if request.top_k is not None:
            if "top_k" not in self.accepts:
                raise UnsupportedParameter(
                    "top_k",
                    "OpenAI has no top_k (an OpenAI-compatible server that takes it "
                    'is configured with options.accepts = ["top_k"])',
                )
            arguments["top_k"] = request.top_k
        if request.tools:
            arguments["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            arguments["tool_choice"] = _tool_choice(request.tool_choice)
        if request.response_format is not None:
            arguments["response_format"] = _response_format(request.response_format)
        if request.service_tier is not None:
            # Anthropic's "standard_only" is OpenAI's "default"; "auto" is both APIs' word
            tier = request.service_tier
            arguments["service_tier"] = "default" if tier == "standard_only" else tier
        if request.thinking is not None:
            effort = _effort_for(request.thinking, request.reasoning_effort)
            if effort is not None:
                arguments["reasoning_effort"] = effort
        add_native_fields(request, arguments, "openai")

    async def count_tokens(self, request: ChatRequest) -> TokenCount:
        """The estimate: Chat Completions has no counting endpoint (and compatible servers
        none in common). What stream() would refuse is refused here too."""
        self._arguments(request)
        return TokenCount(estimate_request_tokens(request), estimated=True)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        body: dict[str, Any] = {
            "model": request.model,
            "input": [item if isinstance(item, str) else list(item) for item in request.inputs],
        }
        for name in ("dimensions", "encoding_format", "user"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        with _upstream_errors():
            response = await self._calls.post(
                "/embeddings",
                body=body,
                options=_BEARER,
            )
            data = wire.json_object(response.content)
        return _embeddings(data, request)

    async def complete(self, request: TextCompletionRequest) -> AsyncIterator[ProviderEvent]:
        """A legacy completion, streamed: POST /completions, its chunks parsed from bytes
        like the chat stream's."""
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "stream": True}
        if self.spec.options.get("include_usage", True):
            body["stream_options"] = {"include_usage": True}
        max_tokens = request.max_output_tokens or self.spec.max_output_tokens
        if max_tokens:
            body["max_tokens"] = max_tokens
        for name in _COMPLETION_FORWARDED:
            value = getattr(request, name)
            if value is not None:
                body[name] = dict(value) if isinstance(value, Mapping) else value
        if request.stop:
            body["stop"] = list(request.stop)
        with _upstream_errors():
            response = await self._calls.post(
                "/completions",
                body=body,
                options=_BEARER,
                stream=True,
            )
            try:
                yield OPENED
                async for event in _completion_events(body_bytes(response)):
                    yield event
            finally:  # ended, raised, or the consumer closed us at a yield
                await response.aclose()

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """Opened once the upstream accepted, then its events: one generator, which opens
        the response itself (a generator that re-yielded `_events` cost a resume per token)."""
        return _events(self._open(request), bool(request.logprobs), (request.n or 1) > 1)

    async def _open(self, request: ChatRequest) -> httpx2.Response:
        """The response once its headers are in (the body streams); a non-2xx status has
        raised by then, after the SDK's retries. A request we refuse is refused before any
        upstream call."""
        body = self._arguments(request)
        with _upstream_errors():
            response: httpx2.Response = await self._calls.post(
                "/chat/completions",
                body=body,
                options=_BEARER,
                stream=True,
            )
        return response


@contextlib.contextmanager
def _upstream_errors() -> Iterator[None]:
    """The SDK's and the transport's failures as ProviderError (what stream() does inline)."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise _status_error(exc) from exc
    except openai.APITimeoutError as exc:
        raise ProviderError(f"upstream timed out: {exc.message}", kind="timeout") from exc
    except openai.APIConnectionError as exc:
        raise ProviderError(
            f"upstream connection failed: {exc.message}", kind="connection"
        ) from exc
    except wire.TRANSPORT_ERRORS as exc:
        raise wire.transport_error(exc) from exc


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    """The upstream's own message (the SDK's prefixes "Error code: N - "), code and param."""
    body = exc.body
    message = body.get("message") if isinstance(body, dict) else None
    return wire.status_error(
        exc.status_code,
        message if isinstance(message, str) and message else exc.message,
        exc.response.headers,
        code=exc.code,
        param=exc.param,
        error_type=exc.type,
    )


def _embeddings(data: dict[str, Any], request: EmbeddingRequest) -> Embeddings:
    items = data.get("data")
    if not isinstance(items, list) or len(items) != len(request.inputs):
        raise ProviderError("the upstream answered another number of embeddings", kind="protocol")
    ordered = sorted(items, key=lambda item: item.get("index", 0))
    usage = data.get("usage") or {}
    return Embeddings(
        tuple(item.get("embedding") for item in ordered),
        usage.get("prompt_tokens") or 0,
        data.get("model") or request.model,
    )


# -- the request -----------------------------------------------------------------------------

# normalized fields with the same name and meaning in the Chat Completions body
_FORWARDED = (
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "n",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "metadata",
)


# the legacy completion's fields of the same name and meaning
_COMPLETION_FORWARDED = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "suffix",
    "user",
)


def _plain(m: ChatMessage) -> bool:
    return not m.tool_calls and m.role != "tool" and m.name is None


def _message(m: ChatMessage, i: int) -> dict[str, Any]:
    where = f"messages[{i}]"
    out: dict[str, Any] = {"role": m.role}
    if m.name is not None:
        out["name"] = m.name
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
        content: Any = _text_parts(m.content, where, "a tool result")
        if m.is_error:  # OpenAI has no error flag: the model reads that the tool failed
            content = (
                "Error: " + content
                if isinstance(content, str)
                else [{"type": "text", "text": "Error:"}, *content]
            )
        out["content"] = content
        return out
    if m.role == "assistant":
        text = _text_parts(m.content, where, "an assistant turn")
        out["content"] = text if text or not m.tool_calls else None
        if m.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in m.tool_calls
            ]
        return out
    if m.role == "system":
        out["content"] = _text_parts(m.content, where, "a system turn")
        return out
    content = m.content
    out["content"] = (
        content
        if isinstance(content, str)
        else [_user_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    )
    return out


def _text_parts(content: Any, where: str, what: str) -> str | list[dict[str, str]]:
    """Text alone: OpenAI's system, assistant and tool turns take no images or documents.
    Reasoning handed back is left out: OpenAI keeps no earlier reasoning in the context (and
    compatible servers such as DeepSeek refuse reasoning_content in the history)."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        if type(part) is TextPart:
            texts.append(part.text)
        elif type(part) is not ReasoningPart:
            raise UnsupportedParameter(f"{where}.content[{j}]", f"OpenAI takes only text in {what}")
    return "".join(texts) if len(texts) <= 1 else [{"type": "text", "text": t} for t in texts]


def _user_part(part: Any, where: str) -> dict[str, Any]:
    kind = type(part)
    if kind is TextPart:
        return {"type": "text", "text": part.text}
    if kind is ImagePart:
        url = part.url or f"data:{part.media_type or 'image/png'};base64,{part.data}"
        image: dict[str, Any] = {"url": url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if kind is DocumentPart:
        return _document(part, where)
    raise UnsupportedParameter(where, "reasoning belongs to assistant turns")


def _document(part: DocumentPart, where: str) -> dict[str, Any]:
    if part.text is not None:  # a plain-text document is text the model reads, titled
        title = f"{part.title}\n\n" if part.title else ""
        return {"type": "text", "text": title + part.text}
    if part.file_id is not None:
        return {"type": "file", "file": {"file_id": part.file_id}}
    if part.data is None:
        raise UnsupportedParameter(where, "OpenAI reads documents by data or file id, not URL")
    file = {
        "file_data": f"data:{part.media_type};base64,{part.data}",
        "filename": part.title or "document.pdf",
    }
    return {"type": "file", "file": file}


def _tool(tool: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, ForcedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice  # "auto" | "none" | "required": the same words


def _response_format(fmt: Any) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    schema: dict[str, Any] = {"name": fmt.name or "response", "schema": dict(fmt.schema or {})}
    if fmt.description is not None:
        schema["description"] = fmt.description
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def _effort_for(thinking: Thinking, effort: str | None) -> str | None:
    """Anthropic's thinking as a reasoning_effort: a budget by its size; "adaptive" and
    "disabled" as the model's default (OpenAI has no word for either)."""
    if effort is not None:
        raise UnsupportedParameter("thinking", "set thinking or reasoning_effort, not both")
    if thinking.type in ("adaptive", "disabled"):
        return None
    if thinking.type != "enabled":
        raise UnsupportedParameter("thinking", f"OpenAI has no thinking type {thinking.type!r}")
    budget = thinking.budget_tokens or 0
    return next((e for limit, e in _EFFORT_BY_BUDGET if budget < limit), "high")


# -- the stream ------------------------------------------------------------------------------


async def _events(  # noqa: C901  # long: the hot loop as one generator: a call per chunk, or a generator around it, would cost more than its branches
    source: Awaitable[httpx2.Response] | AsyncIterator[bytes],
    logprobs: bool = False,
    many: bool = False,
) -> AsyncIterator[ProviderEvent]:
    """Deltas as they come; Usage and Finish held back to [DONE], so the order is fixed
    (the usage chunk arrives after the finish_reason chunk). logprobs: they were asked for
    (else the chunks' logprobs, null, are not looked at); many: n > 1 choices were.
    `source`: the response to open (Opened first, the response closed at the end, its
    transport errors as ProviderError), or a body's chunks as they come."""
    response = None
    if isinstance(source, AsyncIterator):
        body = source
    else:
        response = await source
        body = body_bytes(response)
    finishes: dict[int, str] = {}  # choice -> the upstream's finish_reason
    usage: Usage | None = None
    done = ended = False
    reader = wire.SSEReader()  # read here, not through wire.sse_events: a generator less
    try:
        if response is not None:
            yield OPENED  # closed here (the turn went no further): the response is closed too
        while not ended:
            events, ended = await wire.next_read(reader, body)
            run: list[str] | None = None  # the read's text after its first delta
            for event, data in events:
                if done:
                    continue  # read on to the end of the body so the connection can be reused
                if data == b"[DONE]":
                    done = True
                    if run:
                        yield text_events(run)
                        run = []
                    for ending in _ending(finishes, usage):
                        yield ending
                    continue
                chunk = wire.json_object(data)
                if event == "error" or chunk.get("error"):
                    if run:
                        yield text_events(run)  # what came before the error is kept
                    raise _stream_error(chunk)
                choices = chunk.get("choices")
                if choices and many:
                    if run:
                        yield text_events(run)
                        run = []
                    for extra in _choices(choices, logprobs, finishes):
                        yield extra
                elif choices:  # one choice: the hot path, as lean as plain text allows
                    choice = choices[0]
                    delta = choice.get("delta")
                    text = delta.get("content") if delta else None
                    probs = choice.get("logprobs") if logprobs else None
                    # the hot path is {"content": ...} alone: look further only if not
                    if text and len(delta) == 1 and not probs:
                        if run is None:
                            yield TextDelta(text)  # the read's first text: at once, alone
                            run = []
                        else:
                            run.append(text)  # the rest of the read's text: one TextRun
                    elif delta or probs:
                        if run:
                            yield text_events(run)
                            run = []
                        if text:
                            yield TextDelta(text)
                        if delta and (text is None or len(delta) > 1):
                            for extra in _extras(delta, 0):
                                yield extra
                        if probs:
                            for extra in _logprobs(probs, 0):
                                yield extra
                    reason = choice.get("finish_reason")
                    if reason:
                        finishes[0] = reason
                counts = chunk.get("usage")
                if counts:
                    usage = _usage(counts)
            if run:
                yield text_events(run)
            # not kept while the next chunk is awaited
            events = chunk = choices = choice = delta = counts = data = run = None  # type: ignore[assignment]
    except wire.TRANSPORT_ERRORS as exc:
        if done:
            return  # the answer was complete; only reading past [DONE] failed
        if response is None:
            raise
        raise wire.transport_error(exc) from exc
    finally:  # ended, raised, or the consumer closed us at a yield
        if response is not None:
            await response.aclose()
    if not done:  # a clean end without [DONE] (some compatible servers): finish_reason decides
        for ending in _ending(finishes, usage):
            yield ending


async def _completion_events(body: AsyncIterator[bytes]) -> AsyncIterator[ProviderEvent]:
    """A legacy completion's chunks: choices[0].text as it comes, then Usage and Finish at
    [DONE] (or at a clean end without it), as in the chat stream."""
    finishes: dict[int, str] = {}
    usage: Usage | None = None
    done = False
    try:
        async for event, data in wire.sse_events(body):
            if done:
                continue  # read on to the end so the connection can be reused
            if data == b"[DONE]":
                done = True
                continue
            chunk = wire.json_object(data)
            if event == "error" or chunk.get("error"):
                raise _stream_error(chunk)
            for choice in chunk.get("choices") or ():
                text = choice.get("text")
                if text:
                    yield TextDelta(text)
                if choice.get("finish_reason"):
                    finishes[0] = choice["finish_reason"]
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
    except wire.TRANSPORT_ERRORS:
        if not done:
            raise
    for ending in _ending(finishes, usage):
        yield ending


def _choices(
    choices: list[dict[str, Any]], logprobs: bool, finishes: dict[int, str]
) -> list[ProviderEvent]:
    """The events of a chunk of n > 1 choices, each carrying its index."""
    events: list[ProviderEvent] = []
    for choice in choices:
        index = choice.get("index") or 0
        delta = choice.get("delta")
        if delta:
            text = delta.get("content")
            if text:
                events.append(TextDelta(text, index))
            if text is None or len(delta) > 1:
                events += _extras(delta, index)
        if logprobs and choice.get("logprobs"):
            events += _logprobs(choice["logprobs"], index)
        reason = choice.get("finish_reason")
        if reason:
            finishes[index] = reason
    return events


def _extras(delta: dict[str, Any], index: int) -> list[ProviderEvent]:
    """What a delta carries beyond content: tool-call pieces, a refusal, reasoning (the
    reasoning_content of vLLM and DeepSeek, the reasoning of OpenRouter)."""
    events: list[ProviderEvent] = []
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        events.append(ReasoningDelta(reasoning, index))
    refusal = delta.get("refusal")
    if refusal:
        events.append(RefusalDelta(refusal, index))
    for position, call in enumerate(delta.get("tool_calls") or ()):
        function = call.get("function") or {}
        events.append(
            ToolCallDelta(
                call.get("index", position),  # a few compatible servers leave it out
                call.get("id"),
                function.get("name"),
                function.get("arguments") or "",
                index,
            )
        )
    return events


def _logprobs(logprobs: dict[str, Any], index: int) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []
    for key, refusal in (("content", False), ("refusal", True)):
        tokens = logprobs.get(key)
        if tokens:
            events.append(LogprobsDelta(tuple(_token(t) for t in tokens), refusal, index))
    return events


def _token(entry: dict[str, Any]) -> TokenLogprob:
    raw = entry.get("bytes")
    return TokenLogprob(
        entry.get("token", ""),
        float(entry.get("logprob", 0.0)),
        tuple(raw) if raw is not None else None,
        tuple(_token(t) for t in entry.get("top_logprobs") or ()),
    )


def _usage(counts: dict[str, Any]) -> Usage:
    prompt = counts.get("prompt_tokens_details") or {}
    completion = counts.get("completion_tokens_details") or {}
    return Usage(
        counts.get("prompt_tokens") or 0,
        counts.get("completion_tokens") or 0,
        cached_input_tokens=prompt.get("cached_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def _ending(finishes: dict[int, str], usage: Usage | None) -> list[ProviderEvent]:
    if not finishes:
        raise ProviderError("upstream stream ended early", kind="protocol")
    ending: list[ProviderEvent] = [usage] if usage is not None else []
    for index in sorted(finishes):
        native = finishes[index]
        reason = _FINISH.get(native, "stop")
        ending.append(Finish(reason, index, native if native != reason else None))
    return ending


def _stream_error(chunk: dict[str, Any]) -> ProviderError:
    error = chunk.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or "error"
    else:
        message = str(error or chunk)
    return ProviderError(f"upstream error mid-stream: {message}", kind="upstream")
