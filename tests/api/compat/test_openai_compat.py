"""The OpenAI-compatible API through the official openai SDK and raw HTTP, a real Redis and
the fake upstream behind the gateway (both provider kinds behind the one endpoint)."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import asyncio
import json
import re

import openai
import pytest

from gateway.api.compat import openai as openai_compat
from gateway.errors import BadRequest
from gateway.storage import keys
from gateway.turn import Delta, End, ErrorEvent, Start
from tests.api.compat.support import (
    GOVERNED_TOML,
    freeze_limits_clock,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    snapshot,
    stored_messages,
    strip_pings,
    usage,
    wire_json,
)
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer

QUESTION = [{"role": "user", "content": "How do vector databases work?"}]


@pytest.mark.parametrize(
    "model, path", [("gpt", "/v1/chat/completions"), ("claude", "/v1/messages")]
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
    sdk = openai_client(gateway_server, key.key)

    stream = await sdk.chat.completions.create(
        model=model, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Vector databases index embeddings."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        17,
        9,
        26,
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {model}
    (sent,) = upstream.requests
    assert sent.path == path
    assert sent.body["messages"] == QUESTION
    # usage per org, model, user and key; no conversation was touched
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
    assert await redis.keys(keys.CONVERSATION_KEYS) == []


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_sdk_non_streamed_completion(gateway_server, client, make_key, upstream, model):
    key = await make_key()
    upstream.script(Reply(chunks=["Paris", " is the capital."], input_tokens=12, output_tokens=5))
    done = await openai_client(gateway_server, key.key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert done.object == "chat.completion" and done.id.startswith("chatcmpl-")
    assert done.model == model
    (choice,) = done.choices
    assert (choice.index, choice.message.role, choice.message.content, choice.finish_reason) == (
        0,
        "assistant",
        "Paris is the capital.",
        "stop",
    )
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (
        12,
        5,
        17,
    )


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_an_answer_handed_back_as_the_sdk_parsed_it(
    gateway_server, client, make_key, upstream, model
):
    """Clients hand an answer back as the SDK parsed it (the Node SDK's stream helper adds
    parsed: null, the API says annotations and audio): nulls are "not set", citations are
    not the model's to read, and the upstream gets the text."""
    key = await make_key()
    upstream.script(Reply(chunks=["They compare vectors."]))
    answer = {
        "role": "assistant",
        "content": "They index embeddings.",
        "annotations": [],
        "audio": None,
        "parsed": None,
        "refusal": None,
    }
    done = await openai_client(gateway_server, key.key).chat.completions.create(
        model=model, messages=[*QUESTION, answer, {"role": "user", "content": "And search?"}]
    )
    assert done.choices[0].message.content == "They compare vectors."
    (sent,) = upstream.requests
    handed = sent.body["messages"][-2]
    assert handed["role"] == "assistant"
    assert "annotations" not in handed and "parsed" not in handed
    assert "They index embeddings." in json.dumps(handed["content"])


async def test_sdk_stream_helper_accumulates_the_completion(
    gateway_server, client, make_key, upstream
):
    key = await make_key()
    upstream.script(Reply(chunks=["one ", "two ", "three"], input_tokens=4, output_tokens=3))
    sdk = openai_client(gateway_server, key.key)
    async with sdk.chat.completions.stream(
        model="claude",
        messages=[{"role": "user", "content": "count"}],
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert deltas == ["", "one ", "two ", "three"]  # "" from the role chunk, as with OpenAI's own
    assert final.choices[0].message.content == "one two three"
    assert final.choices[0].finish_reason == "stop"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (4, 3)

    upstream.script(Reply(chunks=["cut"], finish="length"))
    with pytest.raises(openai.LengthFinishReasonError):  # the helper's reading of "length"
        async with sdk.chat.completions.stream(model="gpt", messages=QUESTION) as stream:
            await stream.get_final_completion()


async def test_without_include_usage_no_chunk_carries_usage(client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["a", "b"], input_tokens=3, output_tokens=2))
    async with client.http.stream(
        "POST",
        "/v1/chat/completions",
        headers=bearer(key.key),
        json={"model": "gpt", "messages": QUESTION, "stream": True},
    ) as r:
        raw = await r.aread()
    assert r.status_code == 200
    frames = [f for f in strip_pings(raw).split(b"\n\n") if f]
    assert frames[-1] == b"data: [DONE]"
    chunks = [json.loads(f[len(b"data: ") :]) for f in frames[:-1]]
    assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_raw_stream_bytes_are_openais_wire_format(gateway_server, client, make_key, upstream):
    """Byte for byte, with text that needs escaping. The first chunk waits past a ping,
    which the SDK, reading the same answer meanwhile, skips."""
    key = await make_key()
    pieces = ['Say "hi"', "\nnaïve ☃", "\u2028 and \\ end"]
    reply = Reply(chunks=pieces, input_tokens=7, output_tokens=3, first_delay=1.2)
    upstream.script(reply, reply)

    async def raw_stream():
        async with client.http.stream(
            "POST",
            "/v1/chat/completions",
            headers=bearer(key.key),
            json={
                "model": "gpt",
                "messages": QUESTION,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as r:
            return r, await r.aread()

    async def sdk_text():
        stream = await openai_client(gateway_server, key.key).chat.completions.create(
            model="gpt", messages=QUESTION, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    (r, raw), text = await asyncio.gather(raw_stream(), sdk_text())

    assert text == "".join(pieces)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert b": ping\n\n" in raw  # a comment: both SDKs' SSE decoders skip it
    raw = strip_pings(raw)
    m = re.match(
        rb'data: \{"id":"(chatcmpl-[0-9a-f]{32})","object":"chat.completion.chunk","created":(\d+),',  # noqa: E501
        raw,
    )
    assert m, raw[:200]
    head = (
        f'data: {{"id":"{m[1].decode()}","object":"chat.completion.chunk","created":{m[2].decode()},'  # noqa: E501
        '"model":"gpt","system_fingerprint":null,"choices":'
    )

    def chunk(delta: str, finish: str = "null") -> str:
        choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}'
        return f'{head}[{choice}],"usage":null}}\n\n'

    expected = (
        chunk('{"role":"assistant","content":"","refusal":null}')
        + "".join(chunk('{"content":' + wire_json(p) + "}") for p in pieces)
        + chunk("{}", '"stop"')
        + head
        + '[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10,'
        + '"prompt_tokens_details":{"cached_tokens":0},'
        + '"completion_tokens_details":{"reasoning_tokens":0}}}\n\n'
        + "data: [DONE]\n\n"
    )
    assert raw.decode() == expected


async def test_request_translation(gateway_server, client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["ok"]), Reply(chunks=["ok"]))
    sdk = openai_client(gateway_server, key.key)
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
        },
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye?"},
    ]
    await sdk.chat.completions.create(
        model="gpt",
        messages=messages,
        max_completion_tokens=50,
        temperature=0.3,
        top_p=0.9,
        user="someone",
    )
    await sdk.chat.completions.create(model="claude", messages=messages, max_tokens=40)
    gpt, claude = upstream.requests
    assert gpt.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
        },
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye?"},
    ]
    assert (gpt.body["max_tokens"], gpt.body["temperature"]) == (50, 0.3)
    assert (gpt.body["top_p"], gpt.body["user"]) == (0.9, "someone")
    assert claude.body["system"] == "Be brief." and claude.body["max_tokens"] == 40
    assert claude.body["messages"][0] == {
        "role": "user",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
    }


async def test_length_finish_reason_non_stream(gateway_server, client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["cut"], finish="length"))
    done = await openai_client(gateway_server, key.key).chat.completions.create(
        model="gpt", messages=QUESTION
    )
    assert done.choices[0].finish_reason == "length"


# -- X-Conversation-Id -------------------------------------------------------------------


async def test_conversation_header_appends_the_exchange(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    conv = await client.create_conversation(key.key)
    upstream.script(Reply(chunks=["Forty", "-two."], input_tokens=8, output_tokens=2))
    sdk = openai_client(gateway_server, key.key)
    stream = await sdk.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "The answer?"}],
        stream=True,
        extra_headers={"X-Conversation-Id": conv["id"]},
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "Forty-two."

    user, assistant = await stored_messages(redis, conv["id"])
    assert (user["role"], user["content"], user["status"]) == ("user", "The answer?", "complete")
    assert (assistant["role"], assistant["content"], assistant["status"]) == (
        "assistant",
        "Forty-two.",
        "complete",
    )
    assert (assistant["input_tokens"], assistant["output_tokens"], assistant["model_id"]) == (
        8,
        2,
        "claude",
    )
    conv_hash = await redis.hgetall(keys.conversation(conv["id"]))
    assert (conv_hash[b"tokens_in"], conv_hash[b"tokens_out"]) == (b"8", b"2")
    assert (await usage(redis))[f"tokens_out:key:{key.key_id}"] == 2


async def test_another_users_conversation_is_404_and_stores_nothing(
    gateway_server, client, make_key, upstream, redis
):
    owner = await make_key("kim")
    other = await make_key("lou")
    conv = await client.create_conversation(owner.key)
    before = await snapshot(redis)
    sdk = openai_client(gateway_server, other.key)
    for cid in (conv["id"], "no-such-conversation"):
        with pytest.raises(openai.NotFoundError) as err:
            await sdk.chat.completions.create(
                model="gpt",
                messages=QUESTION,
                stream=True,
                extra_headers={"X-Conversation-Id": cid},
            )
        assert err.value.code == "conversation_not_found"
    assert await snapshot(redis) == before
    assert upstream.requests == []


# -- errors before the stream: the SDK's own exception classes, Redis unchanged ----------


async def test_bad_key_is_authentication_error(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    before = await snapshot(redis)
    for bad in ("cgw_nope_nope", key.key + "x", "not-a-key"):
        with pytest.raises(openai.AuthenticationError) as err:
            await openai_client(gateway_server, bad).chat.completions.create(
                model="gpt", messages=QUESTION, stream=True
            )
        assert err.value.status_code == 401
        assert err.value.type == "invalid_request_error" and err.value.message
    r = await client.http.post("/v1/chat/completions", json={"model": "gpt", "messages": QUESTION})
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert await snapshot(redis) == before
    assert upstream.requests == []


async def test_unknown_model_is_not_found(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    before = await snapshot(redis)
    with pytest.raises(openai.NotFoundError) as err:
        await openai_client(gateway_server, key.key).chat.completions.create(
            model="gpt-17", messages=QUESTION
        )
    assert err.value.code == "model_not_found" and "gpt-17" in err.value.message
    assert await snapshot(redis) == before
    assert upstream.requests == []


@pytest.mark.parametrize(
    "change, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "function", "content": "42", "name": "f"}]}, "messages.0.role"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
                    }
                ]
            },
            "messages.0.content.0.image_url.url",
        ),
        ({"messages": [{"role": "assistant", "content": "I speak last"}]}, None),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools.0.type"),
        (
            {"tools": [{"type": "function", "function": {"name": "no spaces"}}]},
            "tools.0.function.name",
        ),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"top_logprobs": 2}, "top_logprobs"),  # needs logprobs
        ({"logit_bias": {"50256": 101}}, "logit_bias.0"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": ""}, "model"),
        (  # an answer handed back: its citations a list (the model reads its text alone)
            {
                "messages": [
                    *QUESTION,
                    {"role": "assistant", "content": "They index.", "annotations": "cite"},
                    {"role": "user", "content": "More?"},
                ]
            },
            "messages.1.annotations",
        ),
        (  # null is "not set"; a value is refused
            {
                "messages": [
                    *QUESTION,
                    {"role": "assistant", "content": "They index.", "audio": {"id": "a"}},
                    {"role": "user", "content": "More?"},
                ]
            },
            "messages.1.audio",
        ),
    ],
)
async def test_invalid_body_is_bad_request(
    gateway_server, client, make_key, upstream, redis, change, param
):
    key = await make_key()
    before = await snapshot(redis)
    body = {"model": "gpt", "messages": QUESTION, **change}
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client(gateway_server, key.key).chat.completions.create(**body)
    assert err.value.status_code == 400 and err.value.type == "invalid_request_error"
    assert err.value.param == param
    assert await snapshot(redis) == before
    assert upstream.requests == []


@pytest.mark.parametrize(
    "body, headers, param, code",
    [
        (  # refused while the JSON is read, before any model sees it
            {"messages": [{"role": "user", "content": "ls\x00 -la"}]},
            {},
            "messages.0.content",
            "invalid_characters",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            {},
            "messages.0.content.0",
            "unsupported_value",
        ),
        ({}, {"X-Conversation-Id": "c" * 201}, "X-Conversation-Id", "validation_error"),
        ({"max_tokens": "5"}, {}, "max_tokens", "validation_error"),  # strict: no "5" for 5
    ],
    ids=["control-character", "text-part-without-text", "conversation-header", "strict-type"],
)
async def test_the_param_is_where_the_refusal_was_raised(
    client, make_key, upstream, redis, body, headers, param, code
):
    key = await make_key()
    before = await snapshot(redis)
    r = await client.http.post(
        "/v1/chat/completions",
        json={"model": "gpt", "messages": QUESTION, **body},
        headers={**bearer(key.key), **headers},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"].startswith(f"{param}: ")  # the text as before
    assert await snapshot(redis) == before
    assert upstream.requests == []


def test_a_message_that_merely_looks_like_a_field_has_no_param():
    """The param comes from where the error was raised, never from its text."""
    r = openai_compat.error_response(None, BadRequest("messages.0.content: a sentence"))
    assert json.loads(r.body)["error"]["param"] is None
    r = openai_compat.error_response(
        None, BadRequest("a sentence", param=("messages", 0, "content"))
    )
    assert json.loads(r.body)["error"]["param"] == "messages.0.content"


async def test_malformed_json_is_bad_request_in_openais_shape(client, make_key):
    key = await make_key()
    r = await client.http.post(
        "/v1/chat/completions",
        content=b"{nope",
        headers={**bearer(key.key), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["code"] == "invalid_json"


# -- failures once streaming ------------------------------------------------------------


async def test_mid_stream_provider_error_is_an_error_chunk(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key()
    upstream.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    stream = await openai_client(gateway_server, key.key).chat.completions.create(
        model="gpt", messages=QUESTION, stream=True
    )
    got = []
    with pytest.raises(openai.APIError) as err:
        async for c in stream:
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "one two "
    assert err.value.body["type"] == "server_error" and err.value.body["code"] == "provider_error"
    # the partial answer's usage still counts
    assert (await usage(redis))[f"tokens_out:key:{key.key_id}"] > 0

    # an upstream that refuses before any byte: still an HTTP error, which the SDK raises
    upstream.script(Reply(status=500))
    with pytest.raises(openai.InternalServerError) as err:
        await openai_client(gateway_server, key.key).chat.completions.create(
            model="claude", messages=QUESTION, stream=True
        )
    assert err.value.status_code == 502 and err.value.type == "server_error"
    assert err.value.code == "provider_error"


async def test_mid_stream_error_chunk_ends_the_stream_without_done(client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["one ", "two"], error_after=1))
    async with client.http.stream(
        "POST",
        "/v1/chat/completions",
        headers=bearer(key.key),
        json={"model": "claude", "messages": QUESTION, "stream": True},
    ) as r:
        raw = strip_pings(await r.aread())
    frames = [f for f in raw.split(b"\n\n") if f]
    assert len(frames) == 3  # the role chunk, one content chunk, the error; no [DONE]
    error = json.loads(frames[-1][len(b"data: ") :])
    assert set(error) == {"error"} and error["error"]["code"] == "provider_error"
    assert error["error"]["type"] == "server_error" and error["error"]["param"] is None


async def test_non_streamed_provider_error_is_a_server_error(
    gateway_server, client, make_key, upstream
):
    key = await make_key()
    upstream.script(Reply(status=500))
    with pytest.raises(openai.InternalServerError) as err:
        await openai_client(gateway_server, key.key).chat.completions.create(
            model="gpt", messages=QUESTION
        )
    assert err.value.status_code == 502 and err.value.code == "provider_error"


async def test_policy_block_mid_stream_is_an_error_chunk():
    async def events():
        yield Start("m-1", None, None, "gpt", None)
        yield Delta("fine so far")
        yield ErrorEvent("policy_blocked", "blocked by policy no-secrets")
        yield End("m-1", "policy_blocked", 5, 3, None)

    frames = [f async for f in openai_compat.encode(events(), include_usage=True)]
    assert len(frames) == 3
    assert frames[-1] == (
        b'data: {"error":{"message":"blocked by policy no-secrets","type":"invalid_request_error",'
        b'"param":null,"code":"policy_blocked"}}\n\n'
    )


# -- models --------------------------------------------------------------------------------


async def test_models_list_and_retrieve(gateway_server, client, make_key, redis):
    key = await make_key()
    sdk = openai_client(gateway_server, key.key)
    models = [m async for m in await sdk.models.list()]
    assert [m.id for m in models] == [m.id for m in gateway_server.settings.served_models]
    assert {m.object for m in models} == {"model"} and {m.id: m.owned_by for m in models}[
        "claude"
    ] == "anthropic"
    assert (await sdk.models.retrieve("claude")).id == "claude"
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("gpt-17")
    r = await client.http.get("/v1/models", headers=bearer(key.key))
    assert r.json()["object"] == "list"
    assert set(r.json()["data"][0]) == {"id", "object", "created", "owned_by"}
    with pytest.raises(openai.AuthenticationError):
        await openai_client(gateway_server, "bad").models.list()


async def test_org_admin_key_and_usage_in_its_org(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("boss", org="org-7", role="org_admin")
    upstream.script(Reply(chunks=["x"], input_tokens=2, output_tokens=1))
    await openai_client(gateway_server, key.key).chat.completions.create(
        model="demo", messages=QUESTION
    )
    assert (await usage(redis, "org-7"))["tokens_in:user:boss"] > 0
    assert await usage(redis, ORG) == {}


# -- policies and rate limits apply ------------------------------------------------------


async def test_policies_and_rate_limits_apply(
    gateway_factory, make_key, upstream, redis, monkeypatch
):
    freeze_limits_clock(monkeypatch)
    async with gateway_factory(extra_toml=GOVERNED_TOML) as client:
        key = await make_key()
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=key.key, max_retries=0
        )

        # pre: refused before the provider is called
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": "What is Bluebird?"}]
            )
        assert err.value.code == "policy_blocked" and upstream.requests == []

        # admitted: the answer carries the limit's headers
        upstream.script(Reply(chunks=["fine"]))
        answer = await sdk.chat.completions.with_raw_response.create(model="gpt", messages=QUESTION)
        assert answer.parse().choices[0].message.content == "fine"
        assert answer.headers["x-ratelimit-limit"] == "3"

        # during: the stream stops with an error chunk before the word goes out
        upstream.script(Reply(chunks=["The ", "bluebird ", "plan"]))
        stream = await sdk.chat.completions.create(model="gpt", messages=QUESTION, stream=True)
        got = []
        with pytest.raises(openai.APIError) as err:
            async for c in stream:
                got.append(c.choices[0].delta.content or "")
        assert "bluebird" not in "".join(got)
        assert err.value.body["code"] == "policy_blocked"
        assert err.value.body["type"] == "invalid_request_error"

        # the third prompt of the minute: 429, which the SDK raises as RateLimitError
        before = await snapshot(redis)
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.chat.completions.create(model="gpt", messages=QUESTION, stream=True)
        assert err.value.response.headers["retry-after"] == "50"
        assert err.value.body["type"] == "requests" and err.value.body["code"] == "rate_limited"
        assert await snapshot(redis) == before
