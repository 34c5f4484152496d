"""Pub/sub listeners: a cancellation at any point of subscribing ends the listener (redis-py
8.1's subscribe() swallows one that arrives while it connects, and a shutdown then waited on
a listener that kept listening)."""

from __future__ import annotations

import asyncio

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
