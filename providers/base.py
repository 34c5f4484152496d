"""The provider boundary: one normalized request in, one normalized event stream out.

Adapters (openai.py, anthropic.py, demo.py) are the only modules that import an SDK;
nothing above this line knows about conversations' storage or SDK types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "error", "cancelled"]


@dataclass(slots=True, frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(slots=True, frozen=True)
class ChatRequest:
    model: str  # the upstream model name
    messages: list[ChatMessage]
    max_output_tokens: int | None = None
    temperature: float | None = None


@dataclass(slots=True)
class Opened:
    """The upstream accepted the request (response headers arrived); tokens follow.
    Every adapter yields it first, so the gateway can still answer an HTTP error (for
    example 502 on an upstream 401) when the upstream refuses, before any SSE bytes."""


OPENED = Opened()


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class Usage:
    """Token counts as the provider reported them.

    Adapters emit Usage whenever they learn more; the last one wins (Anthropic reports
    input tokens first and a cumulative output count later)."""

    input_tokens: int
    output_tokens: int


@dataclass(slots=True)
class Finish:
    reason: FinishReason


ProviderEvent = Opened | TextDelta | Usage | Finish


class ProviderError(Exception):
    """Any failure of the upstream, normalized.

    kind: "auth" (upstream 401/403), "rate_limit" (429), "timeout", "connection",
    "bad_request" (other 4xx), "server" (5xx), "protocol" (a stream we could not read),
    "upstream" (an error event inside an otherwise healthy stream).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "upstream",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in ("rate_limit", "timeout", "connection", "server")


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
    options: dict = field(default_factory=dict)


class Provider(Protocol):
    """One per configured model. stream() yields Opened, then TextDelta, Usage and Finish events and
    raises ProviderError; the upstream response is closed however the iteration ends
    (exhausted, raised, or the consumer stopped and closed the iterator)."""

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English text: what the
    gateway records when a provider never reports its counts."""
    return max(1, (len(text) + 3) // 4) if text else 0
