"""POST /v1/messages/count_tokens through the official anthropic SDK: the upstream's count
on an Anthropic model, the gateway's estimate (marked) on the others, the pre-stage policies
before anything leaves, and refusals in Anthropic's error shape with Redis unchanged."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import json

import anthropic
import pytest

from providers.base import ChatMessage, ChatRequest, estimate_request_tokens
from tests.api.compat.support import (
    GOVERNED_TOML,
    anthropic_client,
    freeze_limits_clock,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    snapshot,
)
from tests.fake_upstream import Reply
from tests.support import bearer

MESSAGES = [{"role": "user", "content": "How many tokens is this question?"}]


async def test_an_anthropic_model_gets_the_upstreams_count(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key()
    upstream.script(Reply(input_tokens=21))
    before = await snapshot(redis)

    counted = await anthropic_client(gateway_server, key.key).messages.count_tokens(
        model="claude", system="Be brief.", messages=MESSAGES
    )

    assert counted.input_tokens == 21
    assert getattr(counted, "estimated", None) is None  # the provider's own count
    (sent,) = upstream.requests
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {"model": "claude-test-model", "system": "Be brief.", "messages": MESSAGES}
    assert await snapshot(redis) == before  # nothing generated, nothing counted in usage


@pytest.mark.parametrize("model", ["gpt", "demo"])
async def test_other_models_get_the_estimate_marked_as_such(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key()

    counted = await anthropic_client(gateway_server, key.key).messages.count_tokens(
        model=model, messages=MESSAGES
    )

    expected = estimate_request_tokens(
        ChatRequest(model="m", messages=[ChatMessage("user", MESSAGES[0]["content"])])
    )
    assert counted.input_tokens == expected
    assert counted.estimated is True  # type: ignore[attr-defined]  # our field beside Anthropic's
    assert upstream.requests == []


async def test_an_unknown_model_is_not_found_in_anthropics_shape(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key()
    before = await snapshot(redis)

    with pytest.raises(anthropic.NotFoundError) as err:
        await anthropic_client(gateway_server, key.key).messages.count_tokens(
            model="nope", messages=MESSAGES
        )

    assert err.value.body["error"]["type"] == "not_found_error"
    assert "nope" in err.value.body["error"]["message"]
    assert await snapshot(redis) == before


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"max_tokens": 10}, "max_tokens"),
        ({"stream": True}, "stream"),
        ({"messages": []}, "messages"),
    ],
)
async def test_what_does_not_shape_the_input_is_refused(
    client, make_key, upstream, redis, extra, field
):
    key = await make_key()
    before = await snapshot(redis)

    r = await client.http.post(
        "/v1/messages/count_tokens",
        json={"model": "claude", "messages": MESSAGES, **extra},
        headers={**bearer(key.key), "anthropic-version": "2023-06-01"},
    )

    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(field)
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_an_upstream_400_stays_a_400_with_its_message(
    gateway_server, client, make_key, upstream
):
    key = await make_key()
    upstream.script(Reply(status=400, error_message="messages: roles must alternate"))

    with pytest.raises(anthropic.BadRequestError) as err:
        await anthropic_client(gateway_server, key.key).messages.count_tokens(
            model="claude", messages=MESSAGES
        )

    assert err.value.body["error"]["message"] == "messages: roles must alternate"


async def test_policies_and_rate_limits_apply(
    gateway_factory, make_key, upstream, redis, monkeypatch
):
    freeze_limits_clock(monkeypatch)
    async with gateway_factory(extra_toml=GOVERNED_TOML) as client:
        key = await make_key()
        sdk = anthropic.AsyncAnthropic(
            base_url=str(client.http.base_url), api_key=key.key, max_retries=0
        )

        # pre: the text would leave for the provider's counter: refused, nothing sent
        with pytest.raises(anthropic.BadRequestError) as err:
            await sdk.messages.count_tokens(
                model="claude", messages=[{"role": "user", "content": "What is Bluebird?"}]
            )
        assert "codename" in err.value.body["error"]["message"]
        assert upstream.requests == []

        # a secret is redacted by the built-in policy before it is counted upstream
        upstream.script(Reply(input_tokens=9))
        secret = "sk-proj-" + "A1b2C3d4E5f6G7h8" * 3
        await sdk.messages.count_tokens(
            model="claude", messages=[{"role": "user", "content": f"My key is {secret}"}]
        )
        (sent,) = upstream.requests
        assert secret not in str(sent.body) and "[REDACTED" in str(sent.body)

        # the fourth request of the minute: 429 with Retry-After, in Anthropic's shape
        await sdk.messages.count_tokens(model="claude", messages=MESSAGES)
        with pytest.raises(anthropic.RateLimitError) as err:
            await sdk.messages.count_tokens(model="claude", messages=MESSAGES)
        assert err.value.body["error"]["type"] == "rate_limit_error"
        assert int(err.value.response.headers["retry-after"]) >= 1


async def test_tools_and_thinking_are_counted_as_the_messages_route_reads_them(
    gateway_server, client, make_key, upstream
):
    key = await make_key()
    tool = {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    upstream.script(Reply(input_tokens=40))

    counted = await anthropic_client(gateway_server, key.key).messages.count_tokens(
        model="claude",
        messages=MESSAGES,
        tools=[tool],
        thinking={"type": "enabled", "budget_tokens": 2048},
    )

    (sent,) = upstream.requests
    assert sent.body["tools"] == [tool]
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "max_tokens" not in sent.body
    # the fake counts the tools' words beside the messages'
    assert counted.input_tokens == 40 + len(json.dumps(tool).split())
