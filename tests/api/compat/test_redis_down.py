"""The OpenAI- and Anthropic-compatible routes with Redis away: refused with 503 in each
API's own error shape before anything goes upstream (the contract's promise), and a Redis
that vanishes mid-answer costs the client nothing (the usage is written once it is back)."""

# ruff: noqa: F811  (pytest fixtures imported from other modules are parameters here)
from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest
import redis.asyncio as aioredis

from gateway.access.auth import digest, new_api_key
from gateway.storage import keys
from gateway.storage.store import ANSWERED_LATELY, Store
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.storage.test_redis_faults import own_redis  # noqa: F401  (a fixture)
from tests.support import ADMIN_TOKEN, bearer

QUESTION = [{"role": "user", "content": "How do vector databases work?"}]


async def mint_key(url: str) -> tuple[str, str]:
    """An API key in that Redis: (key id, key)."""
    store = Store(aioredis.Redis.from_url(url, decode_responses=True))
    key_id, key = new_api_key()
    record = {"key_id": key_id, "org_id": ORG, "user_id": "kim", "role": "user"}
    await store.credentials.save_api_key(digest(key), {**record, "workspaces": ["ws-1"]})
    await store.aclose()
    return key_id, key


async def org_usage(url: str) -> dict[str, int]:
    client = aioredis.from_url(url)
    try:
        raw = await client.hgetall(keys.org_usage(ORG))
        return {k.decode(): int(v) for k, v in raw.items()}
    finally:
        await client.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_redis_down_is_503_in_openais_shape_and_the_provider_is_never_called(
    gateway_factory, own_redis, upstream, stream
):
    async with gateway_factory(env={"GATEWAY_REDIS_URL": own_redis.url}) as client:
        own_redis.stop()
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=ADMIN_TOKEN, max_retries=0
        )
        with pytest.raises(openai.APIStatusError) as err:
            await sdk.chat.completions.create(model="gpt", messages=QUESTION, stream=stream)
        assert err.value.status_code == 503
        assert err.value.code == "redis_unavailable" and err.value.type == "server_error"
        assert err.value.response.headers["retry-after"] == "1"
        assert upstream.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_redis_down_is_503_in_anthropics_shape_and_the_provider_is_never_called(
    gateway_factory, own_redis, upstream, stream
):
    async with gateway_factory(env={"GATEWAY_REDIS_URL": own_redis.url}) as client:
        own_redis.stop()
        r = await client.http.post(
            "/v1/messages",
            json={"model": "claude", "max_tokens": 50, "messages": QUESTION, "stream": stream},
            headers={"x-api-key": ADMIN_TOKEN, "anthropic-version": "2023-06-01"},
        )
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json() == {
            "type": "error",
            "error": {"type": "api_error", "message": r.json()["error"]["message"]},
        }
        assert "store" in r.json()["error"]["message"]  # ours, not redis-py's "Error 111 ..."
        sdk = anthropic.AsyncAnthropic(
            base_url=str(client.http.base_url), api_key=ADMIN_TOKEN, max_retries=0
        )
        with pytest.raises(anthropic.APIStatusError) as err:
            await sdk.messages.create(model="claude", max_tokens=50, messages=QUESTION)
        assert err.value.status_code == 503
        assert upstream.requests == []


async def test_a_key_unknown_to_the_cache_is_503_not_401_while_redis_is_away(
    gateway_factory, own_redis, upstream
):
    async with gateway_factory(env={"GATEWAY_REDIS_URL": own_redis.url}) as client:
        _, key = await mint_key(own_redis.url)
        own_redis.stop()
        r = await client.http.post(
            "/v1/chat/completions",
            json={"model": "gpt", "messages": QUESTION},
            headers=bearer(key),
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "redis_unavailable"
        assert upstream.requests == []


async def test_redis_vanishing_mid_answer_keeps_the_stream_whole_and_counts_usage_once_back(
    gateway_factory, own_redis, upstream
):
    async with gateway_factory(
        env={"GATEWAY_REDIS_URL": own_redis.url, "GATEWAY_FINAL_WRITE_TIMEOUT": "0.5"}
    ) as client:
        key_id, key = await mint_key(own_redis.url)
        upstream.script(Reply(chunks=["a ", "b ", "c"], delay=0.2, input_tokens=5, output_tokens=3))
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=key, max_retries=0, timeout=20
        )
        stream = await sdk.chat.completions.create(
            model="gpt", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
        chunks = []
        async for c in stream:
            chunks.append(c)
            if len(chunks) == 2:
                own_redis.stop()  # the answer's usage cannot be written now
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "a b c"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].usage.total_tokens == 8  # the client got its whole answer
        own_redis.start()
        for _ in range(100):
            counted = await org_usage(own_redis.url)
            if counted:
                break
            await asyncio.sleep(0.1)
        assert counted["tokens_in"] == 5 and counted["tokens_out"] == 3
        assert counted[f"tokens_out:key:{key_id}"] == 3
        await asyncio.sleep(1.2)  # a retry that landed twice would show now
        assert (await org_usage(own_redis.url))["tokens_out"] == 3


async def pings(url: str) -> int:
    """PINGs the Redis at `url` has answered (INFO commandstats)."""
    client = aioredis.from_url(url)
    try:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_ping", {}).get("calls", 0))
    finally:
        await client.aclose()


async def test_a_direct_turn_pings_redis_first_unless_redis_answered_a_moment_ago(
    gateway_factory, own_redis, upstream
):
    # The PING that makes a Redis that is away a 503 before the upstream is skipped when
    # the shared connection heard from Redis within ANSWERED_LATELY (a lost connection is
    # known at once: the 503 tests above); the turn's usage is still recorded.
    async with gateway_factory(env={"GATEWAY_REDIS_URL": own_redis.url}) as client:
        key_id, key = await mint_key(own_redis.url)
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=key, max_retries=0, timeout=20
        )
        await sdk.chat.completions.create(model="gpt", messages=QUESTION)  # the key is cached
        await asyncio.sleep(ANSWERED_LATELY + 0.2)  # Redis has been quiet since
        before, used = await pings(own_redis.url), await org_usage(own_redis.url)
        upstream.script(Reply(chunks=["quiet ", "first"], input_tokens=4, output_tokens=2))
        await sdk.chat.completions.create(model="gpt", messages=QUESTION)
        assert await pings(own_redis.url) == before + 1  # asked first: Redis was quiet
        upstream.script(Reply(chunks=["right ", "after"], input_tokens=4, output_tokens=2))
        answer = await sdk.chat.completions.create(model="gpt", messages=QUESTION)
        assert answer.choices[0].message.content == "right after"
        assert await pings(own_redis.url) == before + 1  # the record a moment ago answered
        counted, field = await org_usage(own_redis.url), f"tokens_out:key:{key_id}"
        assert counted[field] - used[field] == 4  # both turns' usage, PING or not
