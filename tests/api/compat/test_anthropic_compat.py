"""The Anthropic-compatible API through the official anthropic SDK and raw HTTP, a real
Redis and the fake upstream behind the gateway (both provider kinds behind the one endpoint)."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import asyncio
import re

import anthropic
import pytest

from gateway.api.compat import anthropic as anthropic_compat
from gateway.storage import keys
from gateway.turn import Delta, End, ErrorEvent, Start
from tests.api.compat.support import (
    GOVERNED_TOML,
    anthropic_client,
    freeze_limits_clock,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    snapshot,
    stored_messages,
    strip_pings,
    usage,
    wire_json,
)
from tests.fake_upstream import Reply
from tests.support import bearer

QUESTION = [{"role": "user", "content": "How do vector databases work?"}]


@pytest.mark.parametrize(
    "model, path", [("claude", "/v1/messages"), ("gpt", "/v1/chat/completions")]
)
async def test_sdk_streams_the_upstream_text_and_usage(
    gateway_server, client, make_key, upstream, redis, model, path
):
    key = await make_key("kim")
    upstream.script(
        Reply(
            chunks=["Vector ", "databases ", "index ", "embeddings."],
            input_tokens=17,
            output_tokens=9,
        )
    )
    sdk = anthropic_client(gateway_server, key.key)

    async with sdk.messages.stream(model=model, max_tokens=100, messages=QUESTION) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()

    assert "".join(pieces) == "Vector databases index embeddings."
    assert (
        final.content[0].type == "text"
        and final.content[0].text == "Vector databases index embeddings."
    )
    assert final.stop_reason == "end_turn" and final.model == model and final.id.startswith("msg_")
    # message_delta carries the provider's counts; the accumulated message takes them
    assert (final.usage.input_tokens, final.usage.output_tokens) == (17, 9)
    (sent,) = upstream.requests
    assert sent.path == path and sent.body["messages"] == QUESTION
    assert await usage(redis) == {
        "tokens_in": 17,
        "tokens_out": 9,
        f"tokens_in:{model}": 17,
        f"tokens_out:{model}": 9,
        "tokens_in:user:kim": 17,
        "tokens_out:user:kim": 9,
        f"tokens_in:key:{key.key_id}": 17,
        f"tokens_out:key:{key.key_id}": 9,
    }


async def test_sdk_raw_events_in_order(gateway_server, client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["a", "b"], input_tokens=5, output_tokens=2, finish="length"))
    stream = await anthropic_client(gateway_server, key.key).messages.create(
        model="claude", max_tokens=2, messages=QUESTION, stream=True
    )
    events = [e async for e in stream]
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK drops `ping` itself
    assert events[-2].delta.stop_reason == "max_tokens"
    assert (events[-2].usage.input_tokens, events[-2].usage.output_tokens) == (5, 2)


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_sdk_non_streamed_message(gateway_server, client, make_key, upstream, model):
    key = await make_key()
    upstream.script(Reply(chunks=["Paris", " is the capital."], input_tokens=12, output_tokens=5))
    message = await anthropic_client(gateway_server, key.key).messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert (message.type, message.role, message.model) == ("message", "assistant", model)
    assert message.id.startswith("msg_")
    assert [(b.type, b.text) for b in message.content] == [("text", "Paris is the capital.")]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)
    assert message._request_id  # the gateway's request id, as Anthropic's `request-id`


async def test_raw_stream_bytes_are_anthropics_wire_format(
    gateway_server, client, make_key, upstream
):
    """Byte for byte, with text that needs escaping. The first token waits past a ping,
    which the SDK, reading the same answer meanwhile, skips."""
    key = await make_key()
    pieces = ['Say "hi"', "\nnaïve ☃", "\u2028 and \\ end"]
    reply = Reply(chunks=pieces, input_tokens=7, output_tokens=3, first_delay=1.2)
    upstream.script(reply, reply)

    async def raw_stream():
        async with client.http.stream(
            "POST",
            "/v1/messages",
            headers={**bearer(key.key), "anthropic-version": "2023-06-01"},
            json={"model": "claude", "max_tokens": 50, "messages": QUESTION, "stream": True},
        ) as r:
            return r, await r.aread()

    async def sdk_text():
        sdk = anthropic_client(gateway_server, key.key)
        async with sdk.messages.stream(model="claude", max_tokens=50, messages=QUESTION) as stream:
            return "".join([t async for t in stream.text_stream])

    (r, raw), text = await asyncio.gather(raw_stream(), sdk_text())

    assert text == "".join(pieces)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert b": ping\n\n" in raw  # a comment between frames: the SDK's decoder skips it
    raw = strip_pings(raw)
    m = re.match(
        rb'event: message_start\ndata: \{"type":"message_start","message":\{"id":"(msg_[0-9a-f]{32})"',  # noqa: E501
        raw,
    )
    assert m, raw[:200]
    estimate = int(re.search(rb'"usage":\{"input_tokens":(\d+),"output_tokens":0,', raw)[1])
    assert estimate > 0
    no_cache = '"cache_creation_input_tokens":0,"cache_read_input_tokens":0'
    expected = (
        f'event: message_start\ndata: {{"type":"message_start","message":{{"id":"{m[1].decode()}",'
        '"type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,'
        f'"stop_sequence":null,"usage":{{"input_tokens":{estimate},"output_tokens":0,'
        f"{no_cache}}}}}}}\n\n"
        + 'event: ping\ndata: {"type": "ping"}\n\n'
        + 'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n'
        + "".join(
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            '"delta":{"type":"text_delta","text":' + wire_json(p) + "}}\n\n"
            for p in pieces
        )
        + 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        + 'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        '"stop_sequence":null},"usage":{"input_tokens":7,"output_tokens":3,'
        + no_cache
        + "}}\n\n"
        + 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert raw.decode() == expected


async def test_request_translation(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    upstream.script(Reply(chunks=["ok"]), Reply(chunks=["ok"]))
    sdk = anthropic_client(gateway_server, key.key)
    arguments = {
        "max_tokens": 40,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Bye?"},
        ],
        # anthropic 2.x dropped both from create()'s signature; the API still takes them
        "extra_body": {"temperature": 0.5, "top_k": 5},
    }
    await sdk.messages.create(model="claude", **arguments)
    (claude,) = upstream.requests
    assert claude.body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Be kind."},
    ]
    assert claude.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye?"},
    ]
    assert (claude.body["max_tokens"], claude.body["temperature"], claude.body["top_k"]) == (
        40,
        0.5,
        5,
    )
    # OpenAI has no top_k: refused before any upstream call, naming it
    counted = await usage(redis)
    with pytest.raises(anthropic.BadRequestError) as err:
        await sdk.messages.create(model="gpt", **arguments)
    assert err.value.body["error"]["message"].startswith("top_k: OpenAI has no top_k")
    assert err.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.requests) == 1
    assert await usage(redis) == {**counted, "tokens_in:gpt": 0, "tokens_out:gpt": 0}
    del arguments["extra_body"]["top_k"]
    await sdk.messages.create(model="gpt", **arguments)
    gpt = upstream.requests[-1]
    assert gpt.body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
    }
    assert (gpt.body["max_tokens"], gpt.body["temperature"]) == (40, 0.5)


async def test_x_api_key_header_is_accepted(client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["hi"], input_tokens=1, output_tokens=1))
    r = await client.http.post(
        "/v1/messages",
        headers={"x-api-key": key.key, "anthropic-version": "2023-06-01"},
        json={"model": "claude", "max_tokens": 5, "messages": QUESTION},
    )
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "hi"
    r = await client.http.post(
        "/v1/messages",
        headers={"x-api-key": "cgw_bad_key"},
        json={"model": "claude", "max_tokens": 5, "messages": QUESTION},
    )
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "unknown or revoked API key"},
    }


# -- X-Conversation-Id -------------------------------------------------------------------


async def test_conversation_header_appends_the_exchange(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    conv = await client.create_conversation(key.key)
    upstream.script(Reply(chunks=["Forty", "-two."], input_tokens=8, output_tokens=2))
    message = await anthropic_client(gateway_server, key.key).messages.create(
        model="gpt",
        max_tokens=20,
        messages=[{"role": "user", "content": "The answer?"}],
        extra_headers={"X-Conversation-Id": conv["id"]},
    )
    assert message.content[0].text == "Forty-two."
    user, assistant = await stored_messages(redis, conv["id"])
    assert (user["role"], user["content"]) == ("user", "The answer?")
    assert (assistant["role"], assistant["content"], assistant["status"]) == (
        "assistant",
        "Forty-two.",
        "complete",
    )
    assert (assistant["input_tokens"], assistant["output_tokens"]) == (8, 2)
    assert assistant["id"].replace("-", "") == message.id.removeprefix("msg_")
    conv_hash = await redis.hgetall(keys.conversation(conv["id"]))
    assert (conv_hash[b"tokens_in"], conv_hash[b"tokens_out"]) == (b"8", b"2")


async def test_another_users_conversation_is_404_and_stores_nothing(
    gateway_server, client, make_key, upstream, redis
):
    owner = await make_key("kim")
    other = await make_key("lou")
    conv = await client.create_conversation(owner.key)
    before = await snapshot(redis)
    with pytest.raises(anthropic.NotFoundError) as err:
        await anthropic_client(gateway_server, other.key).messages.create(
            model="claude",
            max_tokens=5,
            messages=QUESTION,
            stream=True,
            extra_headers={"X-Conversation-Id": conv["id"]},
        )
    assert err.value.body["error"]["type"] == "not_found_error"
    assert await snapshot(redis) == before
    assert upstream.requests == []


# -- errors before the stream: the SDK's own exception classes, Redis unchanged ----------


async def test_bad_key_is_authentication_error(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    before = await snapshot(redis)
    for bad in ("cgw_nope_nope", key.key + "x"):
        with pytest.raises(anthropic.AuthenticationError) as err:
            async with anthropic_client(gateway_server, bad).messages.stream(
                model="claude", max_tokens=5, messages=QUESTION
            ) as stream:
                await stream.get_final_message()
        assert err.value.status_code == 401
        assert err.value.body["type"] == "error"
        assert err.value.body["error"]["type"] == "authentication_error"
    assert await snapshot(redis) == before
    assert upstream.requests == []


async def test_unknown_model_is_not_found(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    before = await snapshot(redis)
    with pytest.raises(anthropic.NotFoundError) as err:
        await anthropic_client(gateway_server, key.key).messages.create(
            model="claude-17", max_tokens=5, messages=QUESTION
        )
    assert err.value.body["error"] == {
        "type": "not_found_error",
        "message": "model 'claude-17' is not served",
    }
    assert await snapshot(redis) == before
    assert upstream.requests == []


@pytest.mark.parametrize(
    "change",
    [
        {"messages": []},
        {"max_tokens": 0},
        {"messages": [{"role": "system", "content": "no"}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "ftp://x/y.png"}}
                    ],
                }
            ]
        },
        {"messages": [{"role": "assistant", "content": "I speak last"}]},
        {"system": [{"type": "document", "source": {}}]},
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"extra_body": {"temperature": 1.5}},
        {"extra_body": {"frequency_penalty": 1}},  # not a Messages field
        {"metadata": {"user_id": "u", "team": "t"}},
        {"thinking": {"type": "enabled"}},  # no budget
        {  # @ai-sdk/anthropic's streaming hint is a boolean or nothing
            "tools": [
                {
                    "name": "f",
                    "input_schema": {"type": "object"},
                    "eager_input_streaming": "yes",
                }
            ]
        },
    ],
)
async def test_invalid_body_is_bad_request(
    gateway_server, client, make_key, upstream, redis, change
):
    key = await make_key()
    before = await snapshot(redis)
    arguments = {"model": "claude", "max_tokens": 5, "messages": QUESTION, **change}
    with pytest.raises(anthropic.BadRequestError) as err:
        await anthropic_client(gateway_server, key.key).messages.create(**arguments)
    assert err.value.status_code == 400
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert await snapshot(redis) == before
    assert upstream.requests == []


async def test_missing_max_tokens_is_bad_request(client, make_key, redis):
    key = await make_key()
    r = await client.http.post(
        "/v1/messages", headers=bearer(key.key), json={"model": "claude", "messages": QUESTION}
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }


# -- failures once streaming ------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_mid_stream_provider_error_is_an_error_event(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key()
    upstream.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    got = []
    with pytest.raises(anthropic.APIStatusError) as err:
        async with anthropic_client(gateway_server, key.key).messages.stream(
            model=model, max_tokens=50, messages=QUESTION
        ) as stream:
            async for text in stream.text_stream:
                got.append(text)
    assert "".join(got) == "one two "
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "api_error"
    assert (await usage(redis))[f"tokens_out:key:{key.key_id}"] > 0


async def test_non_streamed_provider_error_is_a_server_error(
    gateway_server, client, make_key, upstream
):
    key = await make_key()
    upstream.script(Reply(status=500))
    with pytest.raises(anthropic.InternalServerError) as err:
        await anthropic_client(gateway_server, key.key).messages.create(
            model="claude", max_tokens=5, messages=QUESTION
        )
    assert err.value.status_code == 502 and err.value.body["error"]["type"] == "api_error"


async def test_policy_block_mid_stream_is_an_error_event():
    async def events():
        yield Start("m-1", None, None, "claude", None)
        yield Delta("fine so far")
        yield ErrorEvent("policy_blocked", "blocked by policy no-secrets")
        yield End("m-1", "policy_blocked", 5, 3, None)

    frames = [f async for f in anthropic_compat.encode(events(), input_tokens=5)]
    assert len(frames) == 3
    assert frames[-1] == (
        b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error",'
        b'"message":"blocked by policy no-secrets"}}\n\n'
    )


# -- models --------------------------------------------------------------------------------


async def test_models_list_in_anthropics_format(gateway_server, client, make_key):
    key = await make_key()
    sdk = anthropic_client(gateway_server, key.key)
    models = [m async for m in sdk.models.list()]
    assert [m.id for m in models] == [m.id for m in gateway_server.settings.served_models]
    assert {m.type for m in models} == {"model"}
    assert {m.id: m.max_input_tokens for m in models}["small"] == 60  # its context window
    assert (await sdk.models.retrieve("claude")).display_name == "claude"
    with pytest.raises(anthropic.NotFoundError):
        await sdk.models.retrieve("claude-17")


# -- policies and rate limits apply ------------------------------------------------------


async def test_policies_and_rate_limits_apply(
    gateway_factory, make_key, upstream, redis, monkeypatch
):
    freeze_limits_clock(monkeypatch)
    async with gateway_factory(extra_toml=GOVERNED_TOML) as client:
        key = await make_key()
        sdk = anthropic.AsyncAnthropic(
            base_url=str(client.http.base_url), api_key=key.key, max_retries=0
        )

        # pre: refused before the provider is called
        with pytest.raises(anthropic.BadRequestError) as err:
            await sdk.messages.create(
                model="claude",
                max_tokens=5,
                messages=[{"role": "user", "content": "What is Bluebird?"}],
            )
        assert err.value.body["error"]["type"] == "invalid_request_error"
        assert "codename" in err.value.body["error"]["message"] and upstream.requests == []

        # admitted: the answer carries the limit's headers
        upstream.script(Reply(chunks=["fine"]))
        answer = await sdk.messages.with_raw_response.create(
            model="claude", max_tokens=5, messages=QUESTION
        )
        assert (await answer.parse()).content[0].text == "fine"
        assert answer.headers["x-ratelimit-limit"] == "3"

        # during: the stream stops with `event: error` before the word goes out
        upstream.script(Reply(chunks=["The ", "bluebird ", "plan"]))
        got = []
        with pytest.raises(anthropic.APIStatusError) as err:
            async with sdk.messages.stream(
                model="claude", max_tokens=50, messages=QUESTION
            ) as stream:
                async for text in stream.text_stream:
                    got.append(text)
        assert "bluebird" not in "".join(got)
        assert err.value.body["error"]["type"] == "invalid_request_error"
        assert "codename" in err.value.body["error"]["message"]

        # the third prompt of the minute: 429, which the SDK raises as RateLimitError
        before = await snapshot(redis)
        with pytest.raises(anthropic.RateLimitError) as err:
            await sdk.messages.create(model="claude", max_tokens=5, messages=QUESTION, stream=True)
        assert err.value.response.headers["retry-after"] == "50"
        assert err.value.body["error"]["type"] == "rate_limit_error"
        assert await snapshot(redis) == before
