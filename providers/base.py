"""The provider boundary: one normalized request in, one normalized event stream out.

Adapters (openai.py, anthropic.py, demo.py) are the only modules that import an SDK;
nothing above this line knows about conversations' storage or SDK types. The request carries
the union of what the OpenAI and Anthropic APIs can ask for; each adapter maps a field
exactly, approximates it (docs/compat-translation.md says how) or refuses it with
UnsupportedParameter before calling the upstream, never dropping it silently.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]
# "stop": a natural end or a stop sequence; "length": the token limit; "tool_calls": the
# model waits for tool results; "content_filter": the provider withheld or cut the answer
# (OpenAI's content filter, Anthropic's refusal); "pause": Anthropic's pause_turn (a server
# tool's long turn, to be continued). "error" and "cancelled" are the gateway's own.
FinishReason = Literal[
    "stop", "length", "tool_calls", "content_filter", "pause", "error", "cancelled"
]
# the reasons of an answer that ended on the model's side and may be checked and kept whole
ANSWERED_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "pause"})


MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per message, as chat formats count them


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English text: what the
    gateway records when a provider never reports its counts."""
    return max(1, (len(text) + 3) // 4) if text else 0


# -- the request: content parts --------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class TextPart:
    text: str
    _: KW_ONLY
    cache_control: Mapping[str, Any] | None = None  # Anthropic's prompt-cache breakpoint


@dataclass(slots=True, frozen=True)
class ImagePart:
    """An image by URL (http(s) or a data: URL) or by base64 data with its media type."""

    url: str | None = None
    data: str | None = None  # base64, without a data: prefix
    media_type: str | None = None  # with data: image/png, image/jpeg, image/gif, image/webp
    _: KW_ONLY
    detail: str | None = None  # OpenAI's "auto" | "low" | "high"
    cache_control: Mapping[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class DocumentPart:
    """A document the model reads: a PDF by base64 data or URL, plain text, or a file id of
    the provider's own file store (OpenAI's)."""

    data: str | None = None  # base64 of a PDF
    url: str | None = None
    text: str | None = None  # a plain-text document
    _: KW_ONLY
    media_type: str = "application/pdf"
    title: str | None = None  # Anthropic's title; OpenAI's filename
    file_id: str | None = None
    cache_control: Mapping[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class ReasoningPart:
    """Reasoning the model wrote in an earlier turn, handed back: Anthropic wants a tool loop
    with thinking on to return the thinking blocks (with their signatures) unchanged."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None  # the data of an Anthropic redacted_thinking block


ContentPart = TextPart | ImagePart | DocumentPart | ReasoningPart


@dataclass(slots=True, frozen=True)
class ToolCall:
    """A call the model made: arguments are the JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True, frozen=True)
class ChatMessage:
    """One turn. content is plain text or parts; an assistant turn may carry tool_calls; a
    "tool" turn is the result of the call tool_call_id (is_error: the tool failed)."""

    role: Role
    content: str | Sequence[ContentPart]
    _: KW_ONLY
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    name: str | None = None  # OpenAI's participant name

    @property
    def text(self) -> str:
        """The text of the turn, parts joined (what policies and estimates read)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if type(p) is TextPart)


# -- the request: tools, output, reasoning ---------------------------------------------------


@dataclass(slots=True, frozen=True)
class Tool:
    """A function the model may call; parameters is the JSON Schema of its arguments."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    _: KW_ONLY
    strict: bool | None = None
    cache_control: Mapping[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class ForcedTool:
    """tool_choice naming the one tool the model must call."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | ForcedTool


@dataclass(slots=True, frozen=True)
class ResponseFormat:
    """Structured output: "text" (the default), "json_object", or "json_schema" with its
    schema (and the name, description and strictness OpenAI's json_schema carries)."""

    type: Literal["text", "json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


@dataclass(slots=True, frozen=True)
class Thinking:
    """Anthropic's thinking configuration: "enabled" with a token budget, "adaptive" (the
    model decides), or "disabled"; display "summarized" or "omitted"."""

    type: str
    budget_tokens: int | None = None
    display: str | None = None


# Not frozen, though never changed once made (each change is a `replace`): a frozen
# dataclass's __init__ sets its 28 fields through object.__setattr__, and a turn makes four
# (~120 K instructions, 5% of a one-token /v1 request).
@dataclass(slots=True)
class ChatRequest:
    model: str  # the upstream model name
    messages: list[ChatMessage]
    max_output_tokens: int | None = None
    temperature: float | None = None
    _: KW_ONLY
    # sampling
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()  # OpenAI's stop, Anthropic's stop_sequences
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    n: int | None = None
    # tools and structured output
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # reasoning
    reasoning_effort: str | None = None  # OpenAI's: none, minimal, low, medium, high, ...
    thinking: Thinking | None = None
    # who asks, and how
    user: str | None = None  # OpenAI's user, Anthropic's metadata.user_id
    metadata: Mapping[str, str] | None = None  # OpenAI's metadata (stored completions)
    service_tier: str | None = None
    # Fields of one API's own body that have no normalized form (OpenAI's prediction,
    # web_search_options, ...; Anthropic's container, mcp_servers, ...): sent as they are
    # when the adapter speaks native_api, refused by the other adapter.
    native: Mapping[str, Any] = field(default_factory=dict)
    native_api: Literal["openai", "anthropic"] | None = None


# the normalized fields beyond the four every adapter has always taken
EXTENDED_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in fields(ChatRequest)
    if f.name not in ("model", "messages", "max_output_tokens", "temperature")
)


# -- the events ------------------------------------------------------------------------------
# choice: the index of the answer among n > 1 alternatives (OpenAI's n); 0 otherwise.


@dataclass(slots=True)
class Opened:
    """The upstream accepted the request (response headers arrived); tokens follow.
    Every adapter yields it first, so the gateway can still answer an HTTP error (for
    example 502 on an upstream 401) when the upstream refuses, before any SSE bytes."""


OPENED = Opened()


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class TextRun:
    """Choice 0's text deltas that arrived together, in order: each is what a TextDelta
    would carry, and reaches the client as its own frame. An adapter yields one for the
    deltas of one read of the upstream's body after its first (which goes alone, at once):
    the gateway then takes them through the policies and the encoders in one pass instead
    of one pass per delta. The gateway's turn passes on the same event, as a chat event."""

    texts: list[str]


def text_events(texts: list[str]) -> TextDelta | TextRun:
    """A read's texts after its first delta as one event: a run of one is a TextDelta."""
    return TextDelta(texts[0]) if len(texts) == 1 else TextRun(texts)


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call. The first piece of call `index` (0, 1, ... in the
    order the model makes them) carries its id and name; argument pieces follow, JSON text
    split anywhere (even inside a string). A call's arguments are all its pieces joined."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


@dataclass(slots=True)
class ReasoningDelta:
    """Reasoning text as the model thinks it (Anthropic's thinking, the reasoning_content of
    OpenAI-compatible servers)."""

    text: str
    choice: int = 0


@dataclass(slots=True)
class ReasoningSignature:
    """Ends the reasoning block so far: the provider's signature over it, to hand back."""

    signature: str
    choice: int = 0


@dataclass(slots=True)
class RedactedReasoning:
    """A reasoning block the provider encrypted (Anthropic's redacted_thinking)."""

    data: str
    choice: int = 0


@dataclass(slots=True)
class RefusalDelta:
    """The model declines, in words (OpenAI's refusal, apart from the content)."""

    text: str
    choice: int = 0


@dataclass(slots=True, frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top: tuple[TokenLogprob, ...] = ()  # the most likely tokens at this position


@dataclass(slots=True)
class LogprobsDelta:
    """Log probabilities of the tokens just streamed (of the refusal when refusal)."""

    tokens: tuple[TokenLogprob, ...]
    refusal: bool = False
    choice: int = 0


@dataclass(slots=True)
class Usage:
    """Token counts as the provider reported them.

    Adapters emit Usage whenever they learn more; the last one wins (Anthropic reports
    input tokens first and a cumulative output count later). The details are parts of the
    totals: cached_input_tokens of input_tokens were read from the provider's prompt cache,
    cache_write_input_tokens written to it; reasoning_tokens of output_tokens were spent
    thinking."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Finish:
    """The answer (of one choice) ended. native is the provider's own word for it when that
    is not `reason` ("end_turn", "stop_sequence", "tool_use", "refusal", "function_call",
    ...); stop_sequence the sequence that stopped it, when the provider says which."""

    reason: FinishReason
    choice: int = 0
    native: str | None = None
    stop_sequence: str | None = None


ProviderEvent = (
    Opened
    | TextDelta
    | TextRun
    | ToolCallDelta
    | ReasoningDelta
    | ReasoningSignature
    | RedactedReasoning
    | RefusalDelta
    | LogprobsDelta
    | Usage
    | Finish
)


# -- errors ----------------------------------------------------------------------------------


class ProviderError(Exception):
    """Any failure of the upstream, normalized.

    kind: "auth" (upstream 401/403), "rate_limit" (429), "timeout", "connection",
    "bad_request" (other 4xx, and requests refused before any call), "server" (5xx),
    "protocol" (a stream we could not read), "upstream" (an error event inside an
    otherwise healthy stream).
    status is the upstream's HTTP status (None when no upstream answered); message, code,
    param and error_type are the upstream's own when it said them.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "upstream",
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.param = param
        self.error_type = error_type

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limit", "timeout", "connection", "server")


class UnsupportedParameter(ProviderError):
    """The target API cannot do what the request asks: refused before any upstream call.
    param names the request field (in the normalized request's terms)."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(
            f"{param}: {reason}", kind="bad_request", code="unsupported_parameter", param=param
        )


def add_native_fields(request: ChatRequest, arguments: dict[str, Any], api: str) -> None:
    """A body's own fields: sent to their own API, refused elsewhere, never overriding what
    the normalized request set."""
    if not request.native:
        return
    if request.native_api != api:
        name = next(iter(request.native))
        raise UnsupportedParameter(name, f"a field of the {request.native_api} API only")
    for name, value in request.native.items():
        if name in arguments:
            raise ProviderError(f"native field {name!r} is set twice", kind="bad_request")
        arguments[name] = value


def estimate_request_tokens(request: ChatRequest) -> int:
    """The rule of thumb for a whole request: each turn's text, tool calls and overhead, and
    the tools' definitions. Images and documents are not counted (their cost is the
    provider's to tell)."""
    total = 0
    for m in request.messages:
        total += estimate_tokens(m.text) + MESSAGE_OVERHEAD_TOKENS
        for call in m.tool_calls:
            total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    for tool in request.tools:
        schema = json.dumps(dict(tool.parameters or {}), separators=(",", ":"))
        total += estimate_tokens(tool.name) + estimate_tokens(tool.description or "")
        total += estimate_tokens(schema)
    return total


@dataclass(slots=True, frozen=True)
class TokenCount:
    """A request's input tokens: the provider's count, or (estimated) the rule of thumb's."""

    input_tokens: int
    estimated: bool


@dataclass(slots=True, frozen=True)
class EmbeddingRequest:
    """Texts (or token arrays) to embed, in order; encoding_format "base64" asks for each
    vector as base64 of little-endian float32 (what the OpenAI SDK asks by default)."""

    model: str
    inputs: Sequence[str | Sequence[int]]
    _: KW_ONLY
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None


@dataclass(slots=True, frozen=True)
class Embeddings:
    vectors: tuple[list[float] | str, ...]  # one per input, in the inputs' order
    input_tokens: int
    model: str


@dataclass(slots=True, frozen=True)
class TextCompletionRequest:
    """A legacy completion (OpenAI's /v1/completions): the prompt continued as text, with
    the sampling options that API takes. Only OpenAI-compatible upstreams have one."""

    model: str
    prompt: str
    _: KW_ONLY
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, int] | None = None
    suffix: str | None = None
    user: str | None = None


# -- the provider ----------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class ModelSpec:
    """A configured model as the adapters need it (a view of the settings entry)."""

    id: str
    provider: Literal["openai", "anthropic", "demo"]
    model: str
    base_url: str | None = None
    api_key: str | None = None
    max_output_tokens: int | None = None
    context_window: int | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    options: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """One per configured model. stream() yields Opened, then the other events and raises
    ProviderError; the upstream response is closed however the iteration ends (exhausted,
    raised, or the consumer stopped and closed the iterator)."""

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]: ...

    async def count_tokens(self, request: ChatRequest) -> TokenCount:
        """The request's input tokens without running it: the upstream's count where it has
        one (Anthropic's count_tokens), else the estimate. Raises what stream() would refuse."""
        ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """Embeddings of the inputs; UnsupportedParameter where the provider has none."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class TextCompleter(Protocol):
    """A provider with legacy completions (the OpenAI adapter): the same events as stream()
    (Opened first, text deltas, Usage, Finish), closed however the iteration ends."""

    def complete(self, request: TextCompletionRequest) -> AsyncIterator[ProviderEvent]: ...
