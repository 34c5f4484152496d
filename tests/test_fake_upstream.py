"""The fake upstream checked against the official SDKs' own parsers: if the SDK's typed models
accept what it serves, the adapters' tests run against the real wire formats.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.fake_upstream import FakeUpstream, Reply


@pytest.fixture
async def openai_client(upstream: FakeUpstream):
    client = openai.AsyncOpenAI(api_key="k", base_url=upstream.openai_base_url, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def anthropic_client(upstream: FakeUpstream):
    client = anthropic.AsyncAnthropic(
        api_key="k", base_url=upstream.anthropic_base_url, max_retries=0
    )
    yield client
    await client.close()


USER = [{"role": "user", "content": "two words"}]


async def test_openai_completion_parses(openai_client, upstream):
    upstream.script(Reply(chunks=["a", "b"], input_tokens=4, finish="length"))

    completion = await openai_client.chat.completions.create(model="m", messages=USER)

    assert completion.choices[0].message.content == "ab"
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 2)


async def test_openai_chunks_parse(openai_client, upstream):
    stream = await openai_client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: two words"
    )
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert upstream.open_streams == 0 and upstream.cancelled_streams == 0


async def test_openai_error_body(openai_client, upstream):
    upstream.script(Reply(status=429, retry_after=3))

    with pytest.raises(openai.RateLimitError) as caught:
        await openai_client.chat.completions.create(model="m", messages=USER)

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "3"


async def test_anthropic_message_parses(anthropic_client, upstream):
    upstream.script(Reply(chunks=["a", "b"], finish="length"))

    message = await anthropic_client.messages.create(model="c", max_tokens=5, messages=USER)

    assert message.content[0].text == "ab"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 2)


async def test_anthropic_events_parse(anthropic_client, upstream):
    upstream.script(Reply(chunks=["x", "y", "z"], output_tokens=7))

    stream = await anthropic_client.messages.create(
        model="c", max_tokens=5, messages=USER, stream=True
    )
    events = [event async for event in stream]

    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK's decoder drops the ping
    assert events[-2].usage.output_tokens == 7


async def test_anthropic_error_body(anthropic_client, upstream):
    upstream.script(Reply(status=529))

    with pytest.raises(anthropic.OverloadedError) as caught:
        await anthropic_client.messages.create(model="c", max_tokens=5, messages=USER)

    assert caught.value.type == "overloaded_error"
