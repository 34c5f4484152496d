"""Factories for adapters pointed at the fake upstream, closed after each test, and the
helpers the translation tests share."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from providers.anthropic import AnthropicProvider
from providers.base import (
    ChatMessage,
    ChatRequest,
    ModelSpec,
    Provider,
    ProviderEvent,
    TextDelta,
    TextRun,
    ToolCallDelta,
)
from providers.openai import OpenAIProvider
from tests.fake_upstream import FakeUpstream
from tests.providers.raw_server import Answer, RawServer

MakeOpenAI = Callable[..., OpenAIProvider]
MakeAnthropic = Callable[..., AnthropicProvider]


@pytest.fixture
async def make_openai(upstream: FakeUpstream) -> AsyncIterator[MakeOpenAI]:
    made: list[OpenAIProvider] = []

    def make(*, base_url: str | None = None, **options) -> OpenAIProvider:
        spec = ModelSpec(
            id="gpt",
            provider="openai",
            model="gpt-test",
            api_key="sk-test",
            base_url=base_url or upstream.openai_base_url,
            connect_timeout=2.0,
            read_timeout=5.0,
            options={"max_retries": 0, **options},
        )
        made.append(OpenAIProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
async def make_anthropic(upstream: FakeUpstream) -> AsyncIterator[MakeAnthropic]:
    made: list[AnthropicProvider] = []

    def make(*, max_output_tokens: int | None = None, **options) -> AnthropicProvider:
        spec = ModelSpec(
            id="claude",
            provider="anthropic",
            model="claude-test",
            api_key="sk-ant-test",
            base_url=upstream.anthropic_base_url,
            connect_timeout=2.0,
            read_timeout=5.0,
            max_output_tokens=max_output_tokens,
            options={"max_retries": 0, **options},
        )
        made.append(AnthropicProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def ask(text: str = "hello there", *, model: str = "m", **kwargs) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage("user", text)], **kwargs)


async def collect(provider: Provider, request: ChatRequest) -> list[ProviderEvent]:
    """The provider's events, each TextRun as the TextDeltas it stands for (how an adapter
    groups them is pinned in test_openai.py)."""
    return flat([event async for event in provider.stream(request)])


def flat(events: list[ProviderEvent]) -> list[ProviderEvent]:
    out: list[ProviderEvent] = []
    for event in events:
        if type(event) is TextRun:
            out += [TextDelta(text) for text in event.texts]
        else:
            out.append(event)
    return out


def text_of(events: list[ProviderEvent], choice: int = 0) -> str:
    return "".join(e.text for e in events if type(e) is TextDelta and e.choice == choice)


def calls_of(events: list[ProviderEvent]) -> list[tuple[str | None, str | None, str]]:
    """(id, name, arguments) per tool call, accumulated from the deltas as a client would."""
    calls: dict[int, list] = {}
    for e in events:
        if type(e) is ToolCallDelta:
            call = calls.setdefault(e.index, [None, None, ""])
            call[0] = call[0] or e.id
            call[1] = call[1] or e.name
            call[2] += e.arguments
    return [tuple(calls[i]) for i in sorted(calls)]  # type: ignore[misc]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    started: list[RawServer] = []

    async def start(answer: Answer, tls: ssl.SSLContext | None = None) -> RawServer:
        started.append(await RawServer(answer).start(tls))
        return started[-1]

    yield start
    for server in started:
        await server.aclose()
