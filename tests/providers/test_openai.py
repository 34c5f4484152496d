"""OpenAIProvider against the fake upstream over real HTTP: what it yields, sends and raises,
and that it lets go of the upstream however the stream ends.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import httpx2
import pytest

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
from providers.openai import OpenAIProvider, _events
from tests.fake_upstream import FakeUpstream, Reply
from tests.providers.conftest import flat
from tests.providers.test_openai_translation import _chunk

MakeProvider = Callable[..., OpenAIProvider]


@pytest.fixture
async def make_provider(upstream: FakeUpstream) -> AsyncIterator[MakeProvider]:
    made: list[OpenAIProvider] = []

    def make(
        *,
        base_url: str | None = None,
        read_timeout: float = 5.0,
        max_output_tokens: int | None = None,
        **options,
    ) -> OpenAIProvider:
        spec = ModelSpec(
            id="gpt",
            provider="openai",
            model="gpt-test",
            base_url=base_url or upstream.openai_base_url,
            api_key="sk-test",
            connect_timeout=2.0,
            read_timeout=read_timeout,
            max_output_tokens=max_output_tokens,
            options={"max_retries": 0, **options},
        )
        made.append(OpenAIProvider(spec))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def ask(text: str = "hello there", **kwargs) -> ChatRequest:
    return ChatRequest(model="gpt-test", messages=[ChatMessage("user", text)], **kwargs)


async def collect(provider: OpenAIProvider, request: ChatRequest) -> list[ProviderEvent]:
    return flat([event async for event in provider.stream(request)])


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_yields_text_then_usage_then_finish(make_provider, upstream):
    upstream.script(Reply(chunks=["Hel", "lo", " world"], input_tokens=11, output_tokens=3))

    events = await collect(make_provider(), ask())

    assert events == [
        Opened(),
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        Usage(input_tokens=11, output_tokens=3),
        Finish("stop"),
    ]


async def test_default_reply_echoes_the_last_user_message(make_provider, upstream):
    events = await collect(make_provider(), ask("what is up"))

    assert text_of(events) == "Echo: what is up"
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Echo: ", "what ", "is ", "up"]
    assert Usage(input_tokens=3, output_tokens=4) in events


async def test_many_tiny_chunks_arrive_whole_and_in_order(make_provider, upstream):
    text = 'Streaming über alles, 一二三 — with emoji 🙂 and quotes "x"\n' * 8
    chunks = [text[i : i + 1 + i % 2] for i in range(0, len(text), 2)]
    chunks = [c for c in chunks if c]
    upstream.script(Reply(chunks=chunks))

    events = await collect(make_provider(), ask())

    assert text_of(events) == "".join(chunks)
    assert sum(isinstance(e, TextDelta) for e in events) == len(chunks)
    assert events[-2:] == [Usage(2, len(chunks)), Finish("stop")]


async def test_unicode_line_separators_inside_text_do_not_split_chunks(make_provider, upstream):
    # httpx's iter_lines() splits on str.splitlines(), which cuts at these raw characters
    chunks = ["a\u2028b", "c\u2029d", "e\x85f", "g\x1ch"]
    upstream.script(Reply(chunks=chunks))

    events = await collect(make_provider(), ask())

    assert text_of(events) == "".join(chunks)


async def test_sends_history_system_and_limits(make_provider, upstream):
    request = ChatRequest(
        model="gpt-test",
        messages=[
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "How are you?"),
        ],
        max_output_tokens=50,
        temperature=0.2,
    )

    await collect(make_provider(), request)

    [sent] = upstream.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["model"] == "gpt-test"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["max_tokens"] == 50
    assert "max_completion_tokens" not in sent.body
    assert sent.body["temperature"] == 0.2


async def test_sends_exactly_the_api_body_with_the_sdk_headers(make_provider, upstream):
    await collect(make_provider(max_output_tokens=64), ask("hi"))

    [sent] = upstream.requests
    assert sent.body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
    }
    assert sent.headers["authorization"] == "Bearer sk-test"  # the SDK's auth, as create() sends
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"].startswith("AsyncOpenAI/")
    assert sent.headers["x-stainless-retry-count"] == "0"


async def test_limit_falls_back_to_the_spec_and_can_use_max_completion_tokens(
    make_provider, upstream
):
    provider = make_provider(max_output_tokens=77, max_tokens_param="max_completion_tokens")

    await collect(provider, ask())

    body = upstream.requests[0].body
    assert body["max_completion_tokens"] == 77
    assert "max_tokens" not in body
    assert "temperature" not in body


async def test_finish_length(make_provider, upstream):
    upstream.script(Reply(chunks=["cut ", "short"], finish="length"))

    events = await collect(make_provider(), ask())

    assert events[-1] == Finish("length")
    assert text_of(events) == "cut short"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "auth"),
        (403, "auth"),
        (404, "bad_request"),
        (500, "server"),
        (503, "server"),
    ],
)
async def test_status_errors_map_to_kinds(make_provider, upstream, status, kind):
    upstream.script(Reply(status=status))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(), ask())

    assert caught.value.kind == kind
    assert caught.value.status == status
    assert "fake upstream error" in caught.value.message
    assert len(upstream.requests) == 1  # max_retries=0: no retry behind our back


async def test_rate_limit_carries_retry_after(make_provider, upstream):
    upstream.script(Reply(status=429, retry_after=7))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(), ask())

    assert (caught.value.kind, caught.value.status, caught.value.retry_after) == (
        "rate_limit",
        429,
        7.0,
    )
    assert caught.value.retryable


async def test_sdk_retries_are_honoured_when_configured(make_provider, upstream):
    upstream.script(Reply(status=500, retry_after=0.01), Reply(chunks=["ok"]))

    events = await collect(make_provider(max_retries=1), ask())

    assert text_of(events) == "ok"
    assert len(upstream.requests) == 2


async def test_error_chunk_mid_stream_raises_after_the_text_so_far(make_provider, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    seen: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for event in make_provider().stream(ask()):
            seen.append(event)

    assert caught.value.kind == "upstream"
    assert "mid-stream" in caught.value.message
    assert seen == [Opened(), TextDelta("one "), TextDelta("two ")]


async def test_dropped_connection_raises_connection_error(make_provider, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "three"], drop_after=1))
    seen: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as caught:
        async for event in make_provider().stream(ask()):
            seen.append(event)

    assert caught.value.kind == "connection"
    assert caught.value.retryable
    assert seen == [Opened(), TextDelta("one ")]
    assert (upstream.open_streams, upstream.cancelled_streams) == (0, 0)  # the server cut it


async def test_read_timeout_mid_stream(make_provider, upstream):
    upstream.script(Reply(chunks=["late"], first_delay=1.0))

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(read_timeout=0.2), ask())

    assert caught.value.kind == "timeout"
    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)


async def test_unreachable_upstream_is_a_connection_error(make_provider):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(ProviderError) as caught:
        await collect(make_provider(base_url=f"http://127.0.0.1:{port}/v1"), ask())

    assert caught.value.kind == "connection"


async def test_consumer_closing_early_closes_the_upstream(make_provider, upstream):
    upstream.script(Reply(chunks=["tick "] * 100, delay=0.02))  # two seconds if read to the end
    stream = make_provider().stream(ask())

    assert await anext(stream) == Opened()
    async for event in stream:
        assert event == TextDelta("tick ")
        break
    await stream.aclose()

    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)
    assert upstream.open_streams == 0


async def test_cancelling_the_consuming_task_closes_the_upstream(make_provider, upstream):
    upstream.script(Reply(chunks=["tick "] * 100, delay=0.02))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in make_provider().stream(ask()):
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
    assert first.client_port == second.client_port  # read to the end, so kept alive
    assert upstream.cancelled_streams == 0


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


async def _body(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


async def test_a_stream_without_finish_reason_is_a_protocol_error():
    chunk = (
        b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n'
    )

    with pytest.raises(ProviderError) as caught:
        _ = [event async for event in _events(_body(chunk, b"data: [DONE]\n\n"))]

    assert caught.value.kind == "protocol"
    assert caught.value.message == "upstream stream ended early"


async def test_garbage_in_the_stream_is_a_protocol_error():
    with pytest.raises(ProviderError) as caught:
        _ = [event async for event in _events(_body(b"data: {not json\n\n"))]

    assert caught.value.kind == "protocol"


async def _then_fail(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame
    raise httpx2.ReadTimeout("idle after the end")


FINISHED = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n'
    b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
    b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\n'
)


async def test_a_failure_after_done_does_not_spoil_a_complete_answer():
    events = [event async for event in _events(_then_fail(FINISHED, b"data: [DONE]\n\n"))]

    assert events == [TextDelta("hi"), Usage(2, 1), Finish("stop")]


async def test_a_failure_before_done_is_an_error():
    with pytest.raises(httpx2.ReadTimeout):  # stream() maps it; see the timeout test above
        _ = [event async for event in _events(_then_fail(FINISHED))]


async def test_a_clean_end_without_done_is_accepted_when_finish_reason_came():
    events = [event async for event in _events(_body(FINISHED))]

    assert events == [TextDelta("hi"), Usage(2, 1), Finish("stop")]


def _text_chunk(text: str) -> bytes:
    return _chunk({"content": text})


STOP = _chunk({}, "stop")


async def test_the_text_of_one_read_after_its_first_delta_comes_as_one_text_run():
    """The first delta of each read goes alone (it is sent at once); the rest of that read's
    text is one TextRun, in order, each delta as it came; a read's end closes its run."""
    first = b"".join(_text_chunk(t) for t in ["A", "b", "c", "d"])
    second = b"".join(_text_chunk(t) for t in ["E", "f"])
    third = _text_chunk("G")
    events = [e async for e in _events(_body(first, second, third + STOP + b"data: [DONE]\n\n"))]
    assert events == [
        TextDelta("A"),
        TextRun(["b", "c", "d"]),
        TextDelta("E"),
        TextDelta("f"),  # a run of one is a TextDelta
        TextDelta("G"),
        Finish("stop"),
    ]


async def test_a_text_run_ends_before_any_other_event_and_before_an_error():
    tool = (
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1",'
        b'"type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}]}\n\n'
    )
    read = b"".join(_text_chunk(t) for t in ["a", "b", "c"]) + tool + _text_chunk("d")
    events = [e async for e in _events(_body(read + STOP + b"data: [DONE]\n\n"))]
    assert events[:3] == [
        TextDelta("a"),
        TextRun(["b", "c"]),
        ToolCallDelta(0, "call_1", "f", "{}"),
    ]
    assert events[3:] == [TextDelta("d"), Finish("stop")]

    failing = b"".join(_text_chunk(t) for t in ["x", "y", "z"]) + (
        b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    )
    got = []
    with pytest.raises(ProviderError, match="overloaded"):
        async for event in _events(_body(failing)):
            got.append(event)
    assert got == [TextDelta("x"), TextRun(["y", "z"])]  # what came before the error is kept
