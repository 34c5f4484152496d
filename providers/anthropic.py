"""The Anthropic Messages adapter.

Posts through the official SDK's low-level `post()` and parses the streamed SSE itself: the
SDK's auth, retries, base URL and status errors, without `create()`'s per-call wrappers or a
model per event. What an OpenAI-shaped request asks for is mapped, approximated or refused as
docs/compat-translation.md tells.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic

from providers import wire
from providers.base import (
    OPENED,
    ChatMessage,
    ChatRequest,
    ContentPart,
    DocumentPart,
    EmbeddingRequest,
    Embeddings,
    Finish,
    FinishReason,
    ForcedTool,
    ImagePart,
    ModelSpec,
    ProviderError,
    ProviderEvent,
    ReasoningDelta,
    ReasoningPart,
    ReasoningSignature,
    RedactedReasoning,
    ResponseFormat,
    TextDelta,
    TextPart,
    TokenCount,
    Tool,
    ToolCallDelta,
    UnsupportedParameter,
    Usage,
    add_native_fields,
    text_events,
)
from providers.sdk_calls import SdkCalls
from providers.transport import body_bytes, upstream_transport

DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens; used when nothing sets it
# reasoning_effort -> a thinking budget, LiteLLM's table (low 1024, medium 2048, high 4096,
# max 16384); the API's floor is 1024, so minimal gets it too
THINKING_BUDGETS = {
    "minimal": 1024,
    "low": 1024,
    "medium": 2048,
    "high": 4096,
    "xhigh": 8192,
    "max": 16384,
}
# reasoning_effort -> output_config.effort (options effort = "output_config")
OUTPUT_EFFORTS = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
JSON_TOOL = "json_response"  # the forced tool of a JSON answer when the format has no name
# what the count_tokens endpoint takes: the fields that shape the input
_COUNTED = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"}
)
SERVICE_TIERS = {"auto": "auto", "default": "standard_only", "standard_only": "standard_only"}

# Error event types that mean "try again later" rather than "this stream is broken".
_STREAM_ERROR_KINDS = {"rate_limit_error": "rate_limit", "overloaded_error": "server"}
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause",
}
_DATA_URL = re.compile(r"data:([\w/+.-]+);base64,(.*)", re.DOTALL)


class AnthropicProvider:
    """spec.options: max_retries (SDK retries before the first byte, default 2);
    structured_output ("tool", the default: a JSON answer is a forced tool's input, as LiteLLM
    does, for every model; "output_config": the API's own output_config.format, for the
    models that take it); effort ("thinking", the default: reasoning_effort becomes a thinking
    budget; "output_config": output_config.effort, for the models that take it);
    max_connections, max_keepalive_connections (the upstream pool, see wire.pool_limits);
    transport ("httpx": the SDK's own httpx2 transport instead of providers.transport's)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        for option, values in (
            ("structured_output", ("tool", "output_config")),
            ("effort", ("thinking", "output_config")),
        ):
            if spec.options.get(option, values[0]) not in values:
                raise ValueError(f"model {spec.id!r}: options.{option} must be one of {values}")
        timeout = anthropic.Timeout(spec.read_timeout, connect=spec.connect_timeout)
        limits = wire.pool_limits(spec.options)
        self._client = anthropic.AsyncAnthropic(
            api_key=spec.api_key or "unused",
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=spec.options.get("max_retries", 2),
            http_client=anthropic.DefaultAsyncHttpxClient(
                timeout=timeout,
                limits=limits,
                transport=upstream_transport(spec.options, limits=limits),
            ),
        )
        self._calls = SdkCalls(self._client)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        raise UnsupportedParameter("model", "Anthropic has no embeddings API")

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest) -> tuple[dict[str, Any], str | None]:
        """The Messages body, and the name of the tool whose input is the answer's JSON text
        (None when the answer is not a forced tool's)."""
        system, messages = to_anthropic_messages(request.messages)
        if not messages:
            raise ProviderError("no user message to send", kind="bad_request")
        arguments: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_output_tokens or self.spec.max_output_tokens,
            "messages": messages,
            "stream": True,
        }
        if system:
            arguments["system"] = system
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        _refuse_openai_only(request)
        _sampling(request, arguments)
        _tools(request, arguments)
        self._reasoning(request, arguments)
        json_tool = self._structured(request, arguments)
        add_native_fields(request, arguments, "anthropic")
        if not arguments["max_tokens"]:
            budget = (arguments.get("thinking") or {}).get("budget_tokens") or 0
            arguments["max_tokens"] = budget + DEFAULT_MAX_TOKENS
        return arguments, json_tool

    def _reasoning(self, request: ChatRequest, arguments: dict[str, Any]) -> None:
        effort, thinking = request.reasoning_effort, request.thinking
        if effort is not None and thinking is not None:
            raise UnsupportedParameter("thinking", "set thinking or reasoning_effort, not both")
        if thinking is not None:
            config: dict[str, Any] = {"type": thinking.type}
            if thinking.budget_tokens is not None:
                config["budget_tokens"] = thinking.budget_tokens
            if thinking.display is not None:
                config["display"] = thinking.display
            arguments["thinking"] = config
        elif effort == "none":
            arguments["thinking"] = {"type": "disabled"}
        elif effort is not None:
            if self.spec.options.get("effort") == "output_config":
                if effort not in OUTPUT_EFFORTS:
                    raise UnsupportedParameter("reasoning_effort", f"unknown effort {effort!r}")
                arguments.setdefault("output_config", {})["effort"] = OUTPUT_EFFORTS[effort]
                return
            budget = THINKING_BUDGETS.get(effort)
            if budget is None:
                raise UnsupportedParameter("reasoning_effort", f"unknown effort {effort!r}")
            limit = arguments["max_tokens"]
            if limit and limit <= budget:
                raise UnsupportedParameter(
                    "reasoning_effort",
                    f"{effort!r} is a thinking budget of {budget} tokens, which must be less "
                    f"than the output limit ({limit})",
                )
            arguments["thinking"] = {"type": "enabled", "budget_tokens": budget}

    def _structured(self, request: ChatRequest, arguments: dict[str, Any]) -> str | None:
        fmt = request.response_format
        if fmt is None or fmt.type == "text":  # text is what the API answers anyway
            return None
        native = self.spec.options.get("structured_output") == "output_config"
        if fmt.type == "json_schema" and native:
            output = {"type": "json_schema", "schema": dict(fmt.schema or {})}
            arguments.setdefault("output_config", {})["format"] = output
            return None
        if request.tools or request.tool_choice is not None:
            raise UnsupportedParameter(
                "response_format",
                "a JSON answer on this Anthropic model is a forced tool's "
                "input, so it cannot be asked for beside the request's own tools",
            )
        tool = _json_tool(fmt)
        arguments["tools"] = [tool]
        thinking = (arguments.get("thinking") or {}).get("type") in ("enabled", "adaptive")
        # the API refuses a forced tool while thinking: then the model is asked, not forced
        choice = {"type": "auto"} if thinking else {"type": "tool", "name": tool["name"]}
        arguments["tool_choice"] = choice
        return str(tool["name"])

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        body, json_tool = self._arguments(request)  # refused before any upstream call
        try:
            # Returns once the response headers are in (the body streams); a non-2xx status
            # has raised APIStatusError by then, after the SDK's retries.
            response = await self._calls.post("/v1/messages", body=body, stream=True)
            try:
                yield OPENED
                async for event in _events(body_bytes(response), json_tool):
                    yield event
            finally:  # ended, raised, or the consumer closed us at a yield
                await response.aclose()
        except anthropic.APIError as exc:
            raise _api_error(exc) from exc
        except wire.TRANSPORT_ERRORS as exc:
            raise wire.transport_error(exc) from exc

    async def count_tokens(self, request: ChatRequest) -> TokenCount:
        """The upstream's count of the request as stream() would send it (the fields that
        shape the input: sampling and limits do not count, and the endpoint refuses them)."""
        body, _ = self._arguments(request)
        counted = {name: value for name, value in body.items() if name in _COUNTED}
        try:
            response = await self._calls.post("/v1/messages/count_tokens", body=counted)
            data = wire.json_object(response.content)
        except anthropic.APIError as exc:
            raise _api_error(exc) from exc
        except wire.TRANSPORT_ERRORS as exc:
            raise wire.transport_error(exc) from exc
        tokens = data.get("input_tokens")
        if not isinstance(tokens, int):
            raise ProviderError(f"no input_tokens in the count: {data!r:.200}", kind="protocol")
        return TokenCount(tokens, estimated=False)


def _api_error(exc: anthropic.APIError) -> ProviderError:
    """The SDK's failure, normalized: a status keeps the upstream's own message and type."""
    if isinstance(exc, anthropic.APIStatusError):
        return wire.status_error(
            exc.status_code,
            exc.api_message or exc.message,
            exc.response.headers,
            code=exc.error_code,
            error_type=exc.type,
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("upstream timed out", kind="timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(f"upstream connection failed: {exc.message}", kind="connection")
    return ProviderError(f"unreadable answer from upstream: {exc.message}", kind="protocol")


# -- the request: turns ----------------------------------------------------------------------


def to_anthropic_messages(messages: list[ChatMessage]) -> tuple[Any, list[dict[str, Any]]]:
    """(system, turns) in the shape the Messages API insists on: system apart (text, or text
    blocks when one carries a cache breakpoint), then alternating turns that start with the
    user; tool results are user turns. Consecutive turns of one role are merged; an assistant
    turn before the first user turn has nothing to answer and is dropped."""
    system = _system([(i, m) for i, m in enumerate(messages) if m.role == "system"])
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if m.role == "system" or (m.role == "assistant" and not turns):
            continue
        role = "assistant" if m.role == "assistant" else "user"
        content = _content(m, i)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _merge(turns[-1]["content"], content)
        else:
            turns.append({"role": role, "content": content})
    return system, turns


def _system(messages: list[tuple[int, ChatMessage]]) -> str | list[dict[str, Any]]:
    if all(isinstance(m.content, str) for _, m in messages):
        return "\n\n".join(m.content for _, m in messages if m.content)  # type: ignore[misc]
    blocks: list[dict[str, Any]] = []
    for i, m in messages:
        parts = [TextPart(m.content)] if isinstance(m.content, str) else m.content
        for j, part in enumerate(parts):
            if type(part) is not TextPart:
                raise UnsupportedParameter(
                    f"messages[{i}].content[{j}]", "Anthropic's system prompt is text only"
                )
            if part.text:
                blocks.append(_text_block(part))
    return blocks


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + "\n\n" + b
    as_blocks = [{"type": "text", "text": a}] if isinstance(a, str) else a
    return as_blocks + ([{"type": "text", "text": b}] if isinstance(b, str) else b)


def _content(m: ChatMessage, i: int) -> Any:
    where = f"messages[{i}]"
    if m.name is not None:
        raise UnsupportedParameter(f"{where}.name", "Anthropic has no participant names")
    if m.role == "tool":
        return [_tool_result(m, where)]
    if m.role == "assistant":
        return _assistant(m, where)
    if isinstance(m.content, str):
        return m.content
    return [_user_block(p, f"{where}.content[{j}]") for j, p in enumerate(m.content)]


def _assistant(m: ChatMessage, where: str) -> Any:
    if isinstance(m.content, str) and not m.tool_calls:
        return m.content
    parts: Sequence[ContentPart] = (
        [TextPart(m.content)] if isinstance(m.content, str) else m.content
    )
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        if isinstance(part, TextPart):
            if part.text:  # the API refuses empty text blocks
                blocks.append(_text_block(part))
        elif isinstance(part, ReasoningPart):
            block = _thinking_block(part)
            if block is not None:
                blocks.append(block)
        else:
            raise UnsupportedParameter(
                f"{where}.content[{j}]", "an assistant turn holds text and reasoning only"
            )
    for j, call in enumerate(m.tool_calls):
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise UnsupportedParameter(
                f"{where}.tool_calls[{j}].arguments",
                "Anthropic takes a tool call's input as a JSON object; these arguments are not one",
            )
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def _thinking_block(part: ReasoningPart) -> dict[str, Any] | None:
    """Reasoning as Anthropic hands it back; reasoning without a signature (another
    provider's) cannot be, and is left out: the API ignores earlier turns' thinking anyway."""
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature is None:
        return None
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _tool_result(m: ChatMessage, where: str) -> dict[str, Any]:
    if isinstance(m.content, str):
        content: Any = m.content
    else:
        content = [_user_block(p, f"{where}.content[{j}]") for j, p in enumerate(m.content)]
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": m.tool_call_id,
        "content": content,
    }
    if m.is_error:
        block["is_error"] = True
    return block


def _text_block(part: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control is not None:
        block["cache_control"] = dict(part.cache_control)
    return block


def _user_block(part: Any, where: str) -> dict[str, Any]:
    kind = type(part)
    if kind is TextPart:
        return _text_block(part)
    if kind is ImagePart:
        block = {"type": "image", "source": _image_source(part, where)}
    elif kind is DocumentPart:
        block = _document(part, where)
    else:
        raise UnsupportedParameter(where, "reasoning belongs to assistant turns")
    if part.cache_control is not None:
        block["cache_control"] = dict(part.cache_control)
    return block


def _image_source(part: ImagePart, where: str) -> dict[str, Any]:
    """An http(s) URL as the url source; a data: URL or base64 data as the base64 source.
    OpenAI's detail has no Anthropic counterpart (the API sizes images itself)."""
    if part.data is not None:
        return {"type": "base64", "media_type": part.media_type or "image/png", "data": part.data}
    url = part.url or ""
    match = _DATA_URL.match(url)
    if match:
        return {"type": "base64", "media_type": match[1], "data": match[2]}
    if not url.startswith(("http://", "https://")):
        raise UnsupportedParameter(where, "an image is an http(s) URL, a data URL or base64 data")
    return {"type": "url", "url": url}


def _document(part: DocumentPart, where: str) -> dict[str, Any]:
    if part.text is not None:
        source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": part.text}
    elif part.data is not None:
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    elif part.url is not None:
        source = {"type": "url", "url": part.url}
    else:
        raise UnsupportedParameter(where, "an OpenAI file id means nothing to Anthropic")
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.title is not None:
        block["title"] = part.title
    return block


# -- the request: options --------------------------------------------------------------------


def _refuse_openai_only(request: ChatRequest) -> None:
    """What the Messages API has no way to do. A default (0 penalties, n 1, logprobs off) asks
    for nothing and passes."""
    if request.n not in (None, 1):
        raise UnsupportedParameter("n", "Anthropic answers one choice per request")
    if request.logprobs or request.top_logprobs:
        raise UnsupportedParameter(
            "logprobs" if request.logprobs else "top_logprobs",
            "Anthropic does not return log probabilities",
        )
    if request.logit_bias:
        raise UnsupportedParameter("logit_bias", "Anthropic has no logit bias")
    if request.seed is not None:
        raise UnsupportedParameter("seed", "Anthropic has no seed")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise UnsupportedParameter(name, "Anthropic has no repetition penalties")
    if request.metadata:
        raise UnsupportedParameter("metadata", "Anthropic's metadata holds a user_id only")


def _sampling(request: ChatRequest, arguments: dict[str, Any]) -> None:
    if request.top_p is not None:
        arguments["top_p"] = request.top_p
    if request.top_k is not None:
        arguments["top_k"] = request.top_k
    if request.stop:
        arguments["stop_sequences"] = list(request.stop)
    if request.user is not None:
        arguments["metadata"] = {"user_id": request.user}
    if request.service_tier is not None:
        tier = SERVICE_TIERS.get(request.service_tier)
        if tier is None:
            raise UnsupportedParameter(
                "service_tier", f"Anthropic has no {request.service_tier!r} tier"
            )
        arguments["service_tier"] = tier


def _tools(request: ChatRequest, arguments: dict[str, Any]) -> None:
    if request.tools:
        arguments["tools"] = [_tool(t) for t in request.tools]
    choice: dict[str, Any] | None = None
    if isinstance(request.tool_choice, ForcedTool):
        choice = {"type": "tool", "name": request.tool_choice.name}
    elif request.tool_choice is not None:
        words = {"auto": "auto", "none": "none", "required": "any"}
        choice = {"type": words[request.tool_choice]}
    if request.parallel_tool_calls is not None:
        if not request.tools:
            raise UnsupportedParameter("parallel_tool_calls", "it needs tools")
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":  # the API takes the flag on auto, any and tool only
            choice["disable_parallel_tool_use"] = not request.parallel_tool_calls
    if choice is not None:
        arguments["tool_choice"] = choice


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": tool.name,
        "input_schema": dict(tool.parameters or {"type": "object", "properties": {}}),
    }
    if tool.description is not None:
        out["description"] = tool.description
    if tool.strict is not None:
        out["strict"] = tool.strict
    if tool.cache_control is not None:
        out["cache_control"] = dict(tool.cache_control)
    return out


def _json_tool(fmt: ResponseFormat) -> dict[str, Any]:
    """A JSON answer as the input of a tool the model is made to call (an object at the
    root: tool input is one)."""
    if fmt.type == "json_object" or not fmt.schema:
        schema: dict[str, Any] = {"type": "object", "additionalProperties": True}
    else:
        schema = dict(fmt.schema)
        if schema.get("type") != "object":
            raise UnsupportedParameter(
                "response_format", "on Anthropic the JSON schema's root must be an object"
            )
    tool: dict[str, Any] = {
        "name": fmt.name or JSON_TOOL,
        "description": fmt.description or "Give the answer as this tool's input.",
        "input_schema": schema,
    }
    if fmt.strict is not None:
        tool["strict"] = fmt.strict
    return tool


# -- the stream ------------------------------------------------------------------------------

_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


async def _events(  # noqa: C901  # long: one loop on the hot path: a call per event would cost more than its branches
    body: AsyncIterator[bytes], json_tool: str | None = None
) -> AsyncIterator[ProviderEvent]:
    """Deltas as they come; one Usage at the start (input known) and the final Usage and
    Finish held back to message_stop, so the stream ends ..., Usage, Finish.

    json_tool: the forced tool whose input is the answer: its input streams as text."""
    # Every count in a usage object is the total so far (output_tokens in message_delta is
    # cumulative, not an increment), so the latest value of each field wins.
    counts = dict.fromkeys((*_INPUT_FIELDS, "output_tokens", "thinking_tokens"), 0)
    stop_reason = "end_turn"
    stop_sequence: str | None = None
    blocks: _Blocks | None = None  # made at the first block that is not text
    stopped = ended = False
    reader = wire.SSEReader()  # read here, not through wire.sse_events: a generator less
    try:
        while not ended:
            events, ended = await wire.next_read(reader, body)
            run: list[str] | None = None  # the read's text after its first delta
            for event, data in events:
                if stopped or event == "ping":
                    continue  # after message_stop: read on to the end so the connection is reused
                payload = wire.json_object(data)
                kind = payload.get("type") or event
                if kind == "content_block_delta":
                    delta = payload.get("delta") or {}
                    if delta.get("type") == "text_delta":
                        text = delta.get("text")
                        if not text:
                            continue
                        if run is None:
                            yield TextDelta(text)  # the read's first text: at once, alone
                            run = []
                        else:
                            run.append(text)  # the rest of the read's text: one TextRun
                        continue
                if run:  # any other event follows the text before it
                    yield text_events(run)
                    run = []
                if kind == "content_block_delta":
                    if blocks is not None:
                        for extra in blocks.delta(payload.get("index", 0), delta):
                            yield extra
                elif kind == "content_block_start":
                    block = payload.get("content_block") or {}
                    if block.get("type") != "text":
                        blocks = blocks or _Blocks(json_tool)
                        for extra in blocks.start(payload.get("index", 0), block):
                            yield extra
                elif kind == "content_block_stop":
                    if blocks is not None:
                        for extra in blocks.stop(payload.get("index", 0)):
                            yield extra
                elif kind == "message_start":
                    _update(counts, (payload.get("message") or {}).get("usage"))
                    yield _usage(counts)
                elif kind == "message_delta":
                    ending = payload.get("delta") or {}
                    stop_reason = ending.get("stop_reason") or stop_reason
                    stop_sequence = ending.get("stop_sequence") or stop_sequence
                    _update(counts, payload.get("usage"))
                elif kind == "message_stop":
                    stopped = True
                    yield _usage(counts)
                    yield _finish(stop_reason, stop_sequence, json_tool)
                elif kind == "error":
                    raise _stream_error(payload)
            if run:
                yield text_events(run)
            # not kept while the next chunk is awaited
            events = payload = delta = block = data = run = None  # type: ignore[assignment]
    except wire.TRANSPORT_ERRORS:
        if not stopped:
            raise
        return  # the answer was complete; only reading past message_stop failed
    if not stopped:
        raise ProviderError("upstream stream ended early", kind="protocol")


class _Blocks:
    """The content blocks beyond text: tool_use blocks numbered as tool calls (0, 1, ... in
    their order, whatever their block index), thinking and redacted thinking."""

    def __init__(self, json_tool: str | None) -> None:
        self.json_tool = json_tool
        self.calls: dict[int, int] = {}  # block index -> tool call index
        self.json_blocks: set[int] = set()  # blocks whose input is the answer's text
        self.fed: set[int] = set()  # tool blocks that got argument text

    def start(self, index: int, block: dict[str, Any]) -> list[ProviderEvent]:
        kind = block.get("type")
        if kind == "tool_use":
            if block.get("name") == self.json_tool and self.json_tool is not None:
                self.json_blocks.add(index)
                return []
            self.calls[index] = len(self.calls)
            arguments = json.dumps(block["input"]) if block.get("input") else ""
            if arguments:
                self.fed.add(index)
            return [ToolCallDelta(self.calls[index], block.get("id"), block.get("name"), arguments)]
        if kind == "redacted_thinking":
            return [RedactedReasoning(block.get("data") or "")]
        return []  # thinking: its text and signature arrive as deltas

    def delta(self, index: int, delta: dict[str, Any]) -> list[ProviderEvent]:
        kind = delta.get("type")
        if kind == "input_json_delta":
            piece = delta.get("partial_json") or ""
            if not piece:
                return []
            self.fed.add(index)
            if index in self.json_blocks:
                return [TextDelta(piece)]
            if index in self.calls:
                return [ToolCallDelta(self.calls[index], arguments=piece)]
            return []
        if kind == "thinking_delta":
            return [ReasoningDelta(delta["thinking"])] if delta.get("thinking") else []
        if kind == "signature_delta":
            return [ReasoningSignature(delta.get("signature") or "")]
        return []  # citations_delta: documents are sent without citations asked for

    def stop(self, index: int) -> list[ProviderEvent]:
        """A tool called without input streamed none: its arguments are the empty object."""
        if index in self.fed:
            return []
        if index in self.json_blocks:
            return [TextDelta("{}")]
        if index in self.calls:
            return [ToolCallDelta(self.calls[index], arguments="{}")]
        return []


def _finish(stop_reason: str, stop_sequence: str | None, json_tool: str | None) -> Finish:
    reason = _FINISH.get(stop_reason, "stop")
    if json_tool is not None and stop_reason == "tool_use":
        reason = "stop"  # the tool call was the answer
    return Finish(reason, 0, stop_reason if stop_reason != reason else None, stop_sequence)


def _update(counts: dict[str, int], usage: dict[str, Any] | None) -> None:
    for name, value in (usage or {}).items():
        if name in counts and isinstance(value, int):
            counts[name] = value
        elif name == "output_tokens_details" and isinstance(value, dict):
            thinking = value.get("thinking_tokens")
            if isinstance(thinking, int):
                counts["thinking_tokens"] = thinking


def _usage(counts: dict[str, int]) -> Usage:
    # cached prompt tokens are reported apart from input_tokens; all of them are input
    return Usage(
        sum(counts[name] for name in _INPUT_FIELDS),
        counts["output_tokens"],
        cached_input_tokens=counts["cache_read_input_tokens"],
        cache_write_input_tokens=counts["cache_creation_input_tokens"],
        reasoning_tokens=counts["thinking_tokens"],
    )


def _stream_error(payload: dict[str, Any]) -> ProviderError:
    error = payload.get("error") or {}
    kind = error.get("type") or "error"
    message = error.get("message") or kind
    return ProviderError(
        f"upstream error mid-stream: {kind}: {message}",
        kind=_STREAM_ERROR_KINDS.get(kind, "upstream"),
    )
