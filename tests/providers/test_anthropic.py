"""AnthropicProvider against the fake upstream over real HTTP: what it yields, sends and raises,
and that it lets go of the upstream however the stream ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx2
import pytest

from providers.anthropic import AnthropicProvider, _events, to_anthropic_messages
from providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    ModelSpec,
    Opened,
    ProviderError,
    ProviderEvent,
    TextDelta,
    TextRun,
    ToolCallDelta,
    Usage,
)
from tests.fake_upstream import FakeUpstream, Reply
from tests.providers.conftest import flat

MakeProvider = Callable[..., AnthropicProvider]


@pytest.fixture
async def make_provider(upstream: FakeUpstream) -> AsyncIterator[MakeProvider]:
    made: list[AnthropicProvider] = []

    def make(
        *, read_timeout: float = 5.0, max_output_tokens: int | None = None, **options
    ) -> AnthropicProvider:
        spec = ModelSpec(
            id="claude",
            provider="anthropic",
            model="claude-test",
            base_url=upstream.anthropic_base_url,
            api_key="sk-ant-test",
            connect_timeout=2.0,
            read_timeout=read_timeout,
            max_output_tokens=max_output_tokens,
            options={"max_retries": 0, **options},
        )
        made.append(AnthropicProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def ask(text: str = "hello there", **kwargs) -> ChatRequest:
    return ChatRequest(model="claude-test", messages=[ChatMessage("user", text)], **kwargs)


async def collect(provider: AnthropicProvider, request: ChatRequest) -> list[ProviderEvent]:
    return flat([event async for event in provider.stream(request)])


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_yields_start_usage_text_then_final_usage_and_finish(make_provider, upstream):
    upstream.script(Reply(chunks=["Hel", "lo", " world"], input_tokens=11, output_tokens=3))

    events = await collect(make_provider(), ask())

    assert events == [
        Opened(),
        Usage(input_tokens=11, output_tokens=1),  # message_start: input known, output barely begun
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        Usage(input_tokens=11, output_tokens=3),
        Finish("stop", native="end_turn"),
    ]


async def test_output_tokens_are_cumulative_not_summed(make_provider, upstream):
    upstream.script(Reply(chunks=["a", "b", "c"], input_tokens=5, output_tokens=7))

    events = await collect(make_provider(), ask())

    usages = [e for e in events if isinstance(e, Usage)]
    assert usages[-1] == Usage(input_tokens=5, output_tokens=7)  # not 1 + 7, not 3 + 7
    assert events[-2:] == [Usage(5, 7), Finish("stop", native="end_turn")]


async def test_default_reply_echoes_the_last_user_message(make_provider, upstream):
    events = await collect(make_provider(), ask("what is up"))

    assert text_of(events) == "Echo: what is up"
    assert events[-2] == Usage(input_tokens=3, output_tokens=4)


async def test_many_tiny_chunks_arrive_whole_and_in_order(make_provider, upstream):
    text = 'Streaming über alles, 一二三 — with emoji 🙂 and quotes "x"\n' * 8
    chunks = [c for c in (text[i : i + 1 + i % 2] for i in range(0, len(text), 2)) if c]
    upstream.script(Reply(chunks=chunks))

    events = await collect(make_provider(), ask())

    assert text_of(events) == "".join(chunks)
    assert sum(isinstance(e, TextDelta) for e in events) == len(chunks)


async def test_unicode_line_separators_inside_text_do_not_split_events(make_provider, upstream):
    chunks = ["a\u2028b", "c\u2029d", "e\x85f"]
    upstream.script(Reply(chunks=chunks))

    events = await collect(make_provider(), ask())

    assert text_of(events) == "".join(chunks)


async def test_sends_system_apart_and_alternating_turns(make_provider, upstream):
    request = ChatRequest(
        model="claude-test",
        messages=[
            ChatMessage("system", "Be brief."),
            ChatMessage("assistant", "Welcome!"),  # nothing to answer yet: dropped
            ChatMessage("user", "Hi"),
            ChatMessage("user", "Are you there?"),
            ChatMessage("assistant", "Yes."),
            ChatMessage("system", "Be kind."),
            ChatMessage("user", "Good."),
        ],
        max_output_tokens=50,
        temperature=0.3,
    )

    await collect(make_provider(), request)

    [sent] = upstream.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["authorization"] == "Bearer sk-ant-test"  # anthropic 2.x: not x-api-key
    assert "anthropic-version" in sent.headers
    assert sent.body["model"] == "claude-test"
    assert sent.body["system"] == "Be brief.\n\nBe kind."
    assert sent.body["messages"] == [
        {"role": "user", "content": "Hi\n\nAre you there?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": "Good."},
    ]
    assert sent.body["max_tokens"] == 50
    assert sent.body["temperature"] == 0.3
    assert sent.body["stream"] is True


async def test_sends_exactly_the_api_body_with_the_sdk_headers(make_provider, upstream):
    request = ChatRequest(
        model="claude-test",
        messages=[ChatMessage("system", "Be brief."), ChatMessage("user", "hi")],
    )

    await collect(make_provider(), request)

    [sent] = upstream.requests
    assert sent.body == {
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        "system": "Be brief.",
        "stream": True,
    }
    assert sent.headers["authorization"] == "Bearer sk-ant-test"  # the SDK's auth
    assert sent.headers["anthropic-version"]
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("AsyncAnthropic/")


async def test_max_tokens_falls_back_to_spec_then_default(make_provider, upstream):
    await collect(make_provider(max_output_tokens=300), ask())
    await collect(make_provider(), ask())

    first, second = upstream.requests
    assert first.body["max_tokens"] == 300
    assert second.body["max_tokens"] == 1024
    assert "system" not in first.body
    assert "temperature" not in first.body


def test_message_shaping_edge_cases():
    assert to_anthropic_messages([ChatMessage("assistant", "hi")]) == ("", [])
    assert to_anthropic_messages(
        [ChatMessage("user", "a"), ChatMessage("assistant", "b"), ChatMessage("assistant", "c")]
    ) == ("", [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b\n\nc"}])


async def test_nothing_to_send_is_a_bad_request_without_a_call(make_provider, upstream):
    request = ChatRequest(model="claude-test", messages=[ChatMessage("system", "Be brief.")])

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(), request)

    assert caught.value.kind == "bad_request"
    assert upstream.requests == []


async def test_finish_length_from_max_tokens(make_provider, upstream):
    upstream.script(Reply(chunks=["cut ", "short"], finish="length"))

    events = await collect(make_provider(), ask())

    assert events[-1] == Finish("length", native="max_tokens")
    assert upstream.requests[0].body["max_tokens"] == 1024


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "bad_request"), (401, "auth"), (403, "auth"), (500, "server"), (529, "server")],
)
async def test_status_errors_map_to_kinds(make_provider, upstream, status, kind):
    upstream.script(Reply(status=status))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(), ask())

    assert caught.value.kind == kind
    assert caught.value.status == status
    assert caught.value.message == f"fake upstream error {status}"  # the API's own message
    assert len(upstream.requests) == 1


async def test_rate_limit_carries_retry_after(make_provider, upstream):
    upstream.script(Reply(status=429, retry_after=2.5))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(), ask())

    assert (caught.value.kind, caught.value.status, caught.value.retry_after) == (
        "rate_limit",
        429,
        2.5,
    )


async def test_error_event_mid_stream_raises_after_the_text_so_far(make_provider, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    seen: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for event in make_provider().stream(ask()):
            seen.append(event)

    # the fake sends overloaded_error: capacity, not a broken stream, so worth a retry
    assert caught.value.kind == "server"
    assert "overloaded_error" in caught.value.message
    assert [e for e in seen if isinstance(e, TextDelta)] == [TextDelta("one "), TextDelta("two ")]
    assert not any(isinstance(e, Finish) for e in seen)


async def test_dropped_connection_raises_connection_error(make_provider, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "three"], drop_after=1))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(), ask())

    assert caught.value.kind == "connection"
    assert (upstream.open_streams, upstream.cancelled_streams) == (0, 0)


async def test_read_timeout_mid_stream(make_provider, upstream):
    upstream.script(Reply(chunks=["late"], first_delay=1.0))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(read_timeout=0.2), ask())

    assert caught.value.kind == "timeout"
    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)


async def test_consumer_closing_early_closes_the_upstream(make_provider, upstream):
    upstream.script(Reply(chunks=["tick "] * 100, delay=0.02))  # two seconds if read to the end
    stream = make_provider().stream(ask())

    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()

    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)
    assert upstream.open_streams == 0


async def test_cancelling_the_consuming_task_closes_the_upstream(make_provider, upstream):
    upstream.script(Reply(chunks=["tick "] * 100, delay=0.02))
    first = asyncio.Event()

    async def consume() -> None:
        async for event in make_provider().stream(ask()):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)
    assert upstream.open_streams == 0


async def test_a_finished_stream_leaves_the_connection_reusable(make_provider, upstream):
    provider = make_provider()

    await collect(provider, ask("one"))
    await collect(provider, ask("two"))

    first, second = upstream.requests
    assert first.client_port == second.client_port


async def test_the_upstream_pool_takes_its_size_from_the_options(make_provider, upstream):
    upstream.script(Reply(chunks=["tick "] * 50, delay=0.02))
    provider = make_provider(max_connections=1)
    first = provider.stream(ask())
    assert await anext(first) == Opened()

    second = provider.stream(ask())
    with pytest.raises(TimeoutError):  # its one connection is streaming: the next one waits
        await asyncio.wait_for(anext(second), 0.3)
    await first.aclose()

    roomy = make_provider()  # the default pool: 10,000 connections
    a, b = roomy.stream(ask()), roomy.stream(ask())
    assert await anext(a) == Opened()
    assert await asyncio.wait_for(anext(b), 2) == Opened()
    await a.aclose()
    await b.aclose()


def _frame(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _body(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


async def test_cached_prompt_tokens_count_as_input_and_are_reported_apart():
    usage = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 20,
        "output_tokens": 1,
    }
    frames = (
        _frame("message_start", {"type": "message_start", "message": {"usage": usage}}),
        _frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 9},
            },
        ),
        _frame("message_stop", {"type": "message_stop"}),
    )

    events = [event async for event in _events(_body(*frames))]

    cache = {"cached_input_tokens": 20, "cache_write_input_tokens": 100}
    assert events == [
        Usage(123, 1, **cache),
        Usage(123, 9, **cache),
        Finish("stop", native="end_turn"),
    ]


async def test_a_stream_without_message_stop_is_a_protocol_error():
    frames = (
        _frame(
            "message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}
        ),
        _frame(
            "content_block_delta",
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        ),
    )

    with pytest.raises(ProviderError) as caught:
        _ = [event async for event in _events(_body(*frames))]

    assert caught.value.kind == "protocol"


async def test_a_failure_after_message_stop_does_not_spoil_a_complete_answer():
    async def body() -> AsyncIterator[bytes]:
        yield _frame(
            "message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}
        )
        yield _frame("message_stop", {"type": "message_stop"})
        raise httpx2.RemoteProtocolError("peer closed connection")

    events = [event async for event in _events(body())]

    assert events == [Usage(3, 0), Usage(3, 0), Finish("stop", native="end_turn")]


def _text(text: str) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return _frame(
        "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    )


async def test_the_text_of_one_read_after_its_first_delta_comes_as_one_text_run():
    """As in the OpenAI adapter: a read's first text goes alone, the rest of its text is
    one TextRun, and any other event (a tool call's start, the end) closes the run first."""
    start = _frame(
        "message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}
    )
    tool = _frame(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        },
    )
    end = _frame(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 5},
        },
    ) + _frame("message_stop", {"type": "message_stop"})
    first = start + _text("A") + _text("b") + _text("c") + tool
    second = _text("D") + _text("e") + end
    events = [event async for event in _events(_body(first, second))]
    assert events[:4] == [
        Usage(3, 0),
        TextDelta("A"),
        TextRun(["b", "c"]),
        ToolCallDelta(0, "toolu_1", "f", ""),
    ]
    assert events[4:6] == [TextDelta("D"), TextDelta("e")]
    assert type(events[-1]) is Finish
