"""Batch: the turn's commands in one write, answered as redis-py's pipeline answers them."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from gateway.storage.batch import Batch, batch


def queue(p):
    p.hset("h", mapping={"a": "1"})
    p.hgetall("h")
    p.hget("h", "missing")
    p.lrange("l", -1000, -1)
    p.set("s", 1, ex=100)
    p.eval("return {1, 'x'}", 0)
    p.hgetall("nothing")
    return p


async def test_a_batch_answers_what_a_pipeline_answers(store, redis):
    if not isinstance(batch(store.redis), Batch):
        pytest.skip("a cluster keeps its own pipeline")
    piped = await queue(store.redis.pipeline(transaction=False)).execute()
    await redis.flushall()
    assert await queue(Batch(store.redis)).execute() == piped


async def test_an_error_reply_is_raised_after_every_reply_is_read(store, redis):
    if not isinstance(batch(store.redis), Batch):
        pytest.skip("a cluster keeps its own pipeline")
    await redis.rpush("l", "x")
    p = Batch(store.redis)
    p.hget("l", "x")  # WRONGTYPE
    p.set("after", "1")
    with pytest.raises(ResponseError, match=r"command #1 \(HGET\)"):
        await p.execute()
    assert await redis.get("after") == b"1"  # the rest ran, and the connection is in step
    assert await store.redis.get("after") == "1"
