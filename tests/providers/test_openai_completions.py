"""OpenAIProvider.complete(): a legacy completion (POST /completions) against the fake
upstream over real HTTP: what it yields, what it sends, what it raises, and that it lets go
of the upstream however the stream ends."""

from __future__ import annotations

import pytest

from providers.base import (
    Finish,
    Opened,
    ProviderError,
    ProviderEvent,
    TextCompleter,
    TextCompletionRequest,
    TextDelta,
    Usage,
)
from providers.openai import OpenAIProvider
from tests.fake_upstream import Reply


def prompt(text: str = "Once upon a time", **kwargs) -> TextCompletionRequest:
    return TextCompletionRequest(model="gpt-test", prompt=text, **kwargs)


async def collect(provider: OpenAIProvider, request: TextCompletionRequest) -> list[ProviderEvent]:
    return [event async for event in provider.complete(request)]


async def test_streams_the_text_then_usage_then_finish(make_openai, upstream):
    upstream.script(Reply(chunks=["there ", "was ", "a gateway"], input_tokens=4, output_tokens=3))

    events = await collect(make_openai(), prompt())

    assert events == [
        Opened(),
        TextDelta("there "),
        TextDelta("was "),
        TextDelta("a gateway"),
        Usage(4, 3),
        Finish("stop"),
    ]
    (sent,) = upstream.requests
    assert sent.path == "/v1/completions"
    assert sent.body == {
        "model": "gpt-test",
        "prompt": "Once upon a time",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert sent.headers["authorization"] == "Bearer sk-test"


async def test_the_openai_adapter_is_a_text_completer(make_openai, make_anthropic):
    assert isinstance(make_openai(), TextCompleter)
    assert not isinstance(make_anthropic(), TextCompleter)  # Anthropic has no legacy API


async def test_every_sampling_option_is_forwarded(make_openai, upstream):
    request = prompt(
        "Say it",
        max_output_tokens=20,
        temperature=0.5,
        top_p=0.9,
        stop=("END",),
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logit_bias={"50256": -100},
        suffix=" the end.",
        user="u-1",
    )

    await collect(make_openai(), request)

    (sent,) = upstream.requests
    assert {k: v for k, v in sent.body.items() if k not in ("model", "prompt", "stream")} == {
        "stream_options": {"include_usage": True},
        "max_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100},
        "suffix": " the end.",
        "user": "u-1",
    }


async def test_a_stop_sequence_ends_the_text(make_openai, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "END", " three"]))

    events = await collect(make_openai(), prompt(stop=("END",)))

    assert "".join(e.text for e in events if type(e) is TextDelta) == "one two "
    assert events[-1] == Finish("stop")


async def test_the_token_limit_is_finish_length(make_openai, upstream):
    upstream.script(Reply(chunks=["a ", "b"], finish="length"))

    events = await collect(make_openai(), prompt(max_output_tokens=2))

    assert events[-1] == Finish("length")


async def test_without_include_usage_no_usage_is_asked_or_yielded(make_openai, upstream):
    upstream.script(Reply(chunks=["hi"]))

    events = await collect(make_openai(include_usage=False), prompt())

    assert events == [Opened(), TextDelta("hi"), Finish("stop")]
    assert "stream_options" not in upstream.requests[0].body


async def test_an_upstream_400_keeps_its_status_and_message(make_openai, upstream):
    upstream.script(Reply(status=400, error_message="This model does not support completions."))

    with pytest.raises(ProviderError) as raised:
        await collect(make_openai(), prompt())

    assert (raised.value.kind, raised.value.status) == ("bad_request", 400)
    assert raised.value.message == "This model does not support completions."
    assert len(upstream.requests) == 1


async def test_an_upstream_429_carries_its_retry_after(make_openai, upstream):
    upstream.script(Reply(status=429, retry_after=3))

    with pytest.raises(ProviderError) as raised:
        await collect(make_openai(), prompt())

    assert (raised.value.kind, raised.value.retry_after) == ("rate_limit", 3.0)


async def test_an_error_mid_stream_raises_after_the_text_so_far(make_openai, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    seen: list[ProviderEvent] = []

    with pytest.raises(ProviderError) as raised:
        async for event in make_openai().complete(prompt()):
            seen.append(event)

    assert seen == [Opened(), TextDelta("one "), TextDelta("two ")]
    assert raised.value.kind == "upstream"


async def test_a_dropped_connection_is_a_connection_error(make_openai, upstream):
    upstream.script(Reply(chunks=["one ", "two "], drop_after=1))

    with pytest.raises(ProviderError) as raised:
        await collect(make_openai(), prompt())

    assert raised.value.kind == "connection"


async def test_consumer_closing_early_closes_the_upstream(make_openai, upstream):
    upstream.script(Reply(chunks=["tick "] * 100, delay=0.02))  # two seconds if read whole
    stream = make_openai().complete(prompt())

    assert await anext(stream) == Opened()
    assert await anext(stream) == TextDelta("tick ")
    await stream.aclose()

    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)
    assert upstream.open_streams == 0
