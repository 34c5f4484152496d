"""Redis faults: not ready, refused before anything goes upstream, vanishing mid-stream."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from gateway.storage import keys
from gateway.storage.embedded import EmbeddedRedis, free_port
from tests.fake_upstream import Reply
from tests.support import parse_sse
from tests.turn.test_stream_faults import open_stream, read_until


@pytest.fixture
def own_redis(tmp_path):
    """A Redis this test may stop and restart (same port, append-only file on)."""
    server = EmbeddedRedis(tmp_path / "r", port=free_port(), appendonly=True).start()
    yield server
    server.stop()


async def messages(url: str, cid: str) -> list[dict]:
    client = aioredis.from_url(url)
    try:
        return [json.loads(m) for m in await client.lrange(keys.messages(cid), 0, -1)]
    finally:
        await client.aclose()


async def test_redis_down_means_not_ready_and_prompts_refused_before_upstream(
    gateway_factory, own_redis, alice, upstream
):
    async with gateway_factory(env={"GATEWAY_REDIS_URL": own_redis.url}) as client:
        conv = await client.create_conversation(alice)
        session = await client.create_session(alice, conv["id"], "gpt")
        own_redis.stop()
        r = await client.http.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "redis_unavailable"
        assert (await client.http.get("/healthz")).status_code == 200
        r, raw = await client.stream_chat(alice, session["id"], "hello")
        assert r.status_code == 503 and json.loads(raw)["code"] == "redis_unavailable"
        assert upstream.requests == []
        own_redis.start()
        assert (await client.http.get("/readyz")).status_code == 200
        assert await messages(own_redis.url, conv["id"]) == []  # the refused prompt left nothing
        upstream.script(Reply(chunks=["back"]))
        assert (await client.chat(alice, session["id"], "hello again")).text == "back"


async def test_redis_vanishing_mid_stream_loses_nothing(
    gateway_factory, own_redis, alice, upstream
):
    async with gateway_factory(env={"GATEWAY_REDIS_URL": own_redis.url}) as client:
        conv = await client.create_conversation(alice)
        session = await client.create_session(alice, conv["id"], "gpt")
        words = [f"w{i} " for i in range(20)]
        upstream.script(Reply(chunks=words, delay=0.05, input_tokens=6, output_tokens=20))
        ctx, r, chunks = await open_stream(client, alice, session["id"], "keep going")
        got = await read_until(chunks, b"event: content", 3)
        own_redis.stop()
        await asyncio.sleep(0.3)
        own_redis.start()
        async for chunk in chunks:
            got += chunk
        await ctx.__aexit__(None, None, None)
        stream = parse_sse(got)
        assert stream.text == "".join(words)  # the client got its whole answer
        end = stream.events[-1].json
        assert end["finish_reason"] == "stop" and "stored" not in end
        user, assistant = await messages(own_redis.url, conv["id"])
        assert user["content"] == "keep going"
        assert assistant["content"] == "".join(words) and assistant["output_tokens"] == 20


async def test_a_write_that_outlasts_the_bound_is_stored_once_redis_is_back(
    gateway_factory, own_redis, alice, upstream
):
    async with gateway_factory(
        env={"GATEWAY_REDIS_URL": own_redis.url, "GATEWAY_FINAL_WRITE_TIMEOUT": "0.5"}
    ) as client:
        conv = await client.create_conversation(alice)
        session = await client.create_session(alice, conv["id"], "gpt")
        upstream.script(Reply(chunks=["a ", "b ", "c"], delay=0.1))
        ctx, r, chunks = await open_stream(client, alice, session["id"], "q")
        got = await read_until(chunks, b"event: content")
        own_redis.stop()
        async for chunk in chunks:
            got += chunk
        await ctx.__aexit__(None, None, None)
        stream = parse_sse(got)
        assert stream.text == "a b c"
        assert stream.events[-1].json["stored"] is False  # told honestly: not stored yet
        own_redis.start()
        for _ in range(100):
            stored = await messages(own_redis.url, conv["id"])
            if len(stored) == 2:
                break
            await asyncio.sleep(0.1)
        assert [m["content"] for m in stored] == ["q", "a b c"]
