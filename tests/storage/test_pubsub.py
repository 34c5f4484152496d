"""Pub/sub listeners: a cancellation at any point of subscribing ends the listener (redis-py
8.1's subscribe() swallows one that arrives while it connects, and a shutdown then waited on
a listener that kept listening)."""

from __future__ import annotations

import asyncio

from gateway.storage.pubsub import _messages
from gateway.storage.store import Store


async def test_a_listener_cancelled_while_it_subscribes_stops(redis_url: str, redis) -> None:
    store = Store.connect(redis_url)
    try:
        for steps in range(12):  # cancel after 0, 1, 2, ... event-loop steps of subscribing
            task = asyncio.create_task(store.pubsub.listen("gw:test", lambda m: None, what="t"))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=2)
            assert done, f"still listening after a cancel {steps} steps into subscribing"
    finally:
        await store.aclose()


class _SwallowingPubSub:
    """A silent subscription whose ping() swallows a cancellation that lands in it, as
    redis-py 8.1's pub/sub ping did at shutdown (caught there under load, one run in ten)."""

    def __init__(self) -> None:
        self.pinging = asyncio.Event()
        self.swallowed = 0

    async def get_message(self, timeout: float) -> None:
        await asyncio.sleep(0.005)  # nothing came within the timeout
        return None

    async def ping(self) -> None:
        self.pinging.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.swallowed += 1  # and returns as if the PING had gone out


async def test_a_listener_whose_redis_call_swallows_its_cancellation_still_ends():
    pubsub = _SwallowingPubSub()

    async def listen() -> None:
        async for _ in _messages(pubsub):
            pass

    task = asyncio.create_task(listen())
    await asyncio.wait_for(pubsub.pinging.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done and task.cancelled()  # ended, as cancelled: the worker's shutdown goes on
    assert pubsub.swallowed == 1  # the call did swallow it
