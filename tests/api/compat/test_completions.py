"""POST /v1/completions (legacy) through the official openai SDK and raw HTTP, a real Redis
and the fake upstream: streamed and not, usage counted like a turn's, policies on the prompt
and the answer, and refusals in OpenAI's error shape with Redis unchanged."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import json

import openai
import pytest

from gateway.api.schemas.openai_completions import TextCompletionStreamFrame
from gateway.storage import keys
from tests.api.compat.support import (
    GOVERNED_TOML,
    freeze_limits_clock,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    snapshot,
    stored_messages,
    strip_pings,
    usage,
)
from tests.fake_upstream import Reply
from tests.support import bearer


def counted(tin: int, tout: int, key_id: str, model: str = "gpt") -> dict[str, int]:
    return {
        "tokens_in": tin,
        "tokens_out": tout,
        f"tokens_in:{model}": tin,
        f"tokens_out:{model}": tout,
        "tokens_in:user:kim": tin,
        "tokens_out:user:kim": tout,
        f"tokens_in:key:{key_id}": tin,
        f"tokens_out:key:{key_id}": tout,
    }


async def test_sdk_completion_and_its_usage(gateway_server, client, make_key, upstream, redis):
    key = await make_key("kim")
    upstream.script(Reply(chunks=["there ", "was ", "a gateway"], input_tokens=4, output_tokens=3))

    done = await openai_client(gateway_server, key.key).completions.create(
        model="gpt", prompt="Once upon a time", max_tokens=30, temperature=0.2, stop=["END"]
    )

    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    assert done.model == "gpt"
    (choice,) = done.choices
    assert (choice.text, choice.index, choice.finish_reason) == ("there was a gateway", 0, "stop")
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (4, 3)
    (sent,) = upstream.requests
    assert sent.path == "/v1/completions"
    assert {k: sent.body[k] for k in ("model", "prompt", "max_tokens", "temperature", "stop")} == {
        "model": "gpt-4o-mini",
        "prompt": "Once upon a time",
        "max_tokens": 30,
        "temperature": 0.2,
        "stop": ["END"],
    }
    assert await usage(redis) == counted(4, 3, key.key_id)
    assert await redis.keys(keys.CONVERSATION_KEYS) == []


async def test_sdk_streams_the_completion(gateway_server, client, make_key, upstream, redis):
    key = await make_key("kim")
    upstream.script(Reply(chunks=["one ", "two ", "three"], input_tokens=2, output_tokens=3))

    stream = await openai_client(gateway_server, key.key).completions.create(
        model="gpt", prompt="Count:", stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]

    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 5
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("cmpl-")
    assert await usage(redis) == counted(2, 3, key.key_id)


async def test_the_stream_frames_are_as_documented(client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=['say "hi"\n', "bye"]))

    async with client.http.stream(
        "POST",
        "/v1/completions",
        json={"model": "gpt", "prompt": "p", "stream": True},
        headers=bearer(key.key),
    ) as r:
        raw = strip_pings(await r.aread())

    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in raw.decode().split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    for frame in frames:
        assert frame.startswith("data: ")
        data = frame[6:]
        TextCompletionStreamFrame.model_validate(
            {"data": data if data == "[DONE]" else json.loads(data)}
        )
    texts = [json.loads(f[6:])["choices"][0]["text"] for f in frames[:-1]]
    assert "".join(texts) == 'say "hi"\nbye'


async def test_a_conversation_header_keeps_the_exchange(client, make_key, upstream, redis, alice):
    key = await make_key("alice")
    conv = await client.create_conversation(alice)
    upstream.script(Reply(chunks=["continued"]))

    r = await client.http.post(
        "/v1/completions",
        json={"model": "gpt", "prompt": "Continue this"},
        headers={**bearer(key.key), "X-Conversation-Id": conv["id"]},
    )

    assert r.status_code == 200, r.text
    stored = await stored_messages(redis, conv["id"])
    assert [(m["role"], m["content"], m["status"]) for m in stored] == [
        ("user", "Continue this", "complete"),
        ("assistant", "continued", "complete"),
    ]


@pytest.mark.parametrize("model", ["claude", "demo"])
async def test_a_model_without_legacy_completions_is_400(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key()
    before = await snapshot(redis)

    with pytest.raises(openai.BadRequestError) as err:
        await openai_client(gateway_server, key.key).completions.create(model=model, prompt="p")

    assert err.value.code == "unsupported_parameter" and err.value.param == "model"
    assert "/v1/chat/completions" in err.value.message
    assert upstream.requests == []
    assert await snapshot(redis) == before


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"n": 2}, "n"),
        ({"best_of": 3}, "best_of"),
        ({"echo": True}, "echo"),
        ({"logprobs": 2}, "logprobs"),
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt.str"),  # token ids: the policies could not read them
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"prompt": "x" * 200_001}, None),  # longer than max_prompt_chars
    ],
)
async def test_what_one_choice_cannot_carry_is_refused(
    client, make_key, upstream, redis, extra, param
):
    key = await make_key()
    before = await snapshot(redis)

    r = await client.http.post(
        "/v1/completions", json={"model": "gpt", "prompt": "p", **extra}, headers=bearer(key.key)
    )

    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_an_upstream_refusal_before_any_text_is_an_http_error(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    upstream.script(Reply(status=429, retry_after=2))

    with pytest.raises(openai.RateLimitError) as err:
        await openai_client(gateway_server, key.key).completions.create(model="gpt", prompt="p")

    assert err.value.response.headers["retry-after"] == "2"
    assert len(upstream.requests) == 1
    assert await redis.keys(keys.CONVERSATION_KEYS) == []


async def test_policies_and_rate_limits_apply(
    gateway_factory, make_key, upstream, redis, monkeypatch
):
    freeze_limits_clock(monkeypatch)
    async with gateway_factory(extra_toml=GOVERNED_TOML) as client:
        key = await make_key("kim")
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=key.key, max_retries=0
        )

        # pre: refused before the provider is called
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.completions.create(model="gpt", prompt="All about Bluebird:")
        assert err.value.code == "policy_blocked" and upstream.requests == []

        # during: the stream ends with an error chunk before the word goes out
        upstream.script(Reply(chunks=["The ", "bluebird ", "plan"]))
        stream = await sdk.completions.create(model="gpt", prompt="The plan:", stream=True)
        got = []
        with pytest.raises(openai.APIError) as err:
            async for c in stream:
                got.append(c.choices[0].text)
        assert "bluebird" not in "".join(got)
        assert err.value.body["code"] == "policy_blocked"
        assert (await usage(redis))["tokens_in:user:kim"] > 0  # the answer so far counted

        # the fourth prompt of the minute: 429 in OpenAI's shape
        await sdk.completions.create(model="gpt", prompt="fine")
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.completions.create(model="gpt", prompt="fine")
        assert int(err.value.response.headers["retry-after"]) >= 1
