"""A revoked API key stops working at once on a worker that keeps keys in memory, even when
its revocation listener is not listening at that moment: right after its subscription was
killed (CLIENT KILL TYPE pubsub), when the key's lookup was in flight as the revocation went
by, or when the subscription's connection falls silent without being closed (the revocation
never arrives). Every answer goes through real HTTP; the key is gone from Redis each time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from gateway.access.auth import digest, new_api_key
from gateway.storage import keys
from gateway.storage.pubsub import LIVENESS, RESUBSCRIBE_DELAY
from tests.gateway_fixtures import ORG
from tests.redis_proxy import RedisProxy
from tests.support import bearer

pytestmark = pytest.mark.serial  # revocations refused within seconds

LIST = f"/api/conversation/list?org_id={ORG}"


async def mint(store) -> tuple[str, str]:
    key_id, key = new_api_key()
    await store.credentials.save_api_key(
        digest(key),
        {"key_id": key_id, "org_id": ORG, "user_id": "kim", "role": "user", "workspaces": []},
    )
    return key_id, key


async def status(gw, key: str) -> int:
    return (await gw.http.get(LIST, headers=bearer(key))).status_code


async def subscribers(redis) -> int:
    listed = (await redis.execute_command("CLIENT", "LIST", "TYPE", "pubsub")).decode()
    return len(listed.splitlines())


@contextlib.asynccontextmanager
async def through_proxy(
    gateway_factory, redis_url: str
) -> AsyncIterator[tuple[object, RedisProxy]]:
    proxy = await RedisProxy(redis_url).start()
    try:
        async with gateway_factory(env={"GATEWAY_REDIS_URL": proxy.url}) as gw:
            yield gw, proxy
    finally:
        await proxy.stop()


async def until_subscribed(proxy: RedisProxy, timeout: float = 10) -> None:
    """The gateway's three listeners (stops, policies, keys) subscribed through the proxy."""
    deadline = time.monotonic() + timeout
    while sum(link.subscriber for link in proxy.links) < 3:
        assert time.monotonic() < deadline, "the gateway never subscribed"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # and Redis has confirmed


async def test_a_key_revoked_while_the_listener_reconnects_is_refused_at_once(
    gateway_factory, store, redis
):
    async with gateway_factory() as gw:
        key_id, key = await mint(store)
        assert await status(gw, key) == 200  # now in the gateway's key cache
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await asyncio.sleep(0.1)  # the gateway has seen its subscriptions end...
        assert await subscribers(redis) == 0  # ...and waits RESUBSCRIBE_DELAY to subscribe again
        await store.credentials.revoke_api_key(key_id)  # published to nobody
        started = time.monotonic()
        assert await status(gw, key) == 401
        assert time.monotonic() - started < RESUBSCRIBE_DELAY / 2
        assert await subscribers(redis) == 0  # refused inside the gap, not after it
        assert await redis.get(keys.api_key(digest(key))) is None


async def test_a_lookup_in_flight_across_the_revocation_does_not_refill_the_cache(
    gateway_factory, store, redis, redis_url
):
    async with through_proxy(gateway_factory, redis_url) as (gw, proxy):
        await until_subscribed(proxy)
        key_id, key = await mint(store)
        proxy.hold_replies = 0.6  # the gateway's GET of the key comes back late...
        in_flight = asyncio.ensure_future(status(gw, key))
        await asyncio.sleep(0.2)
        await store.credentials.revoke_api_key(key_id)  # ...after the revocation was heard
        assert await in_flight == 200  # it read the key before it was revoked
        proxy.hold_replies = 0
        assert await status(gw, key) == 401  # and did not put it in the cache for a minute
        assert await redis.get(keys.api_key(digest(key))) is None


@pytest.mark.parametrize("cached", [True, False], ids=["cached-key", "key-first-seen-later"])
async def test_a_key_revoked_while_the_subscription_is_silently_cut_is_refused_within_seconds(
    gateway_factory, store, redis, redis_url, cached
):
    async with through_proxy(gateway_factory, redis_url) as (gw, proxy):
        await until_subscribed(proxy)
        key_id, key = await mint(store)
        if cached:
            assert await status(gw, key) == 200
        proxy.silence_subscribers = True  # no reset, no EOF: the connection just says nothing
        await asyncio.sleep(0.1)
        if not cached:
            assert await status(gw, key) == 200  # cached while the listener still looks alive
        await store.credentials.revoke_api_key(key_id)  # the proxy swallows the message
        revoked = time.monotonic()
        while (got := await status(gw, key)) == 200:
            assert time.monotonic() - revoked < 3 * LIVENESS + 1, "the revoked key still works"
            await asyncio.sleep(0.1)
        assert got == 401  # within ~2 x LIVENESS, never the cache's minute
        assert await redis.get(keys.api_key(digest(key))) is None
