"""Pub/sub, and what workers tell each other through Redis: heartbeats, stop requests."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys

log = logging.getLogger("gateway.storage")

STOP_REQUEST_TTL = 600  # seconds a stop request waits for a worker that missed the message
RESUBSCRIBE_DELAY = 1.0  # seconds before subscribing again after Redis went away
# an idle subscription is asked to prove it is alive (PING) after this many seconds of
# silence, and counts as lost when the same time passes again without a word: a connection
# cut without a reset (a partition, a vanished host) would otherwise look alive forever,
# and the key cache trust a revoked key for its whole TTL
LIVENESS = 2.0


class PubSub:
    def __init__(
        self, redis: Redis | RedisCluster, *, control: Redis | RedisCluster | None = None
    ) -> None:
        self.redis = redis
        self.control = control or redis  # heartbeats: on connections no request waits for
        self.cluster = isinstance(redis, RedisCluster)
        self._turn = secrets.randbelow(1 << 16)  # workers spread their subscriptions

    async def publish(self, channel: str, message: str) -> int:
        return await self.redis.publish(channel, message)

    async def subscribe(
        self, channel: str, on_ready: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[str]:
        """Messages of `channel` until the connection fails (the caller subscribes again).
        `on_ready` runs once Redis has confirmed the subscription (from then on nothing
        published is missed): the moment to catch up on what was missed before.
        On a cluster PUBLISH reaches every node, so any node will do: each new
        subscription takes the next one, and a dead node is left behind by the retry."""
        if isinstance(self.redis, RedisCluster):
            await self.redis.initialize()
            nodes = sorted(self.redis.get_nodes(), key=lambda n: n.name)
            node = nodes[self._turn % len(nodes)]
            self._turn += 1
            pubsub: Any = self.redis.pubsub(node=node)
        else:
            pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            _cancelling()
            await _confirmed(pubsub)
            if on_ready is not None:
                await on_ready()
            async for data in _messages(pubsub):
                yield data
        finally:
            await pubsub.aclose()

    async def listen(
        self,
        channel: str,
        on_message: Callable[[str], Awaitable[None] | None],
        *,
        what: str,
        on_ready: Callable[[], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """Forever (until cancelled): on_message for each message of `channel` (awaited when
        it is a coroutine function), subscribing again whenever the subscription ends;
        on_ready runs on each new subscription, on_lost as soon as one ends (before any
        wait), and a Redis that went away is retried every RESUBSCRIBE_DELAY."""
        while True:
            try:
                async for message in self.subscribe(channel, on_ready):
                    result = on_message(message)
                    if result is not None:
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if on_lost is not None:
                    on_lost()
                log.warning("%s lost Redis (%s); retrying", what, type(exc).__name__)
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                continue
            if on_lost is not None:
                on_lost()

    # -- workers -------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, ttl_ms: int) -> None:
        await self.control.set(keys.worker(worker_id), "1", px=ttl_ms)

    async def worker_alive(self, worker_id: str) -> bool:
        return bool(await self.control.exists(keys.worker(worker_id)))

    async def request_stop(self, message_id: str) -> None:
        """A stop for a turn another worker runs: a key it finds even if it missed the
        message (its subscription was reconnecting), then the message itself."""
        await self.redis.set(keys.stop_request(message_id), "1", ex=STOP_REQUEST_TTL)
        await self.redis.publish(keys.STOP_CHANNEL, message_id)

    async def stops_requested(self, message_ids: Sequence[str]) -> list[str]:
        if not message_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for mid in message_ids:
            pipe.exists(keys.stop_request(mid))
        found = await pipe.execute()
        return [mid for mid, hit in zip(message_ids, found, strict=True) if hit]


def _cancelling() -> None:
    """Raise CancelledError when this task is being cancelled. redis-py 8.1 swallows a
    cancellation that lands inside some of its awaits (subscribe() while it connects; ping()
    on a pub/sub connection, seen at shutdown): the task still says it is being cancelled.
    Without this a listener cancelled at shutdown listened on forever, and the worker never
    exited (tests/turn/test_shutdown.py, about one run in ten). Asked after subscribe() and
    at the top of each loop over redis-py's calls."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SubscriptionSilent(ConnectionError):
    """The subscription's connection stopped answering (no reply to our PING)."""


async def _confirmed(pubsub: Any) -> None:
    """Wait for Redis to confirm the subscription: subscribe() only sends the command."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * LIVENESS
    while loop.time() < deadline:
        _cancelling()
        message = await pubsub.get_message(timeout=LIVENESS)
        if message is not None and message.get("type") == "subscribe":
            return
    raise SubscriptionSilent(f"no confirmation of SUBSCRIBE within {2 * LIVENESS:g} s")


async def _messages(pubsub: Any) -> AsyncIterator[str]:
    """The data of each message, until the connection fails or falls silent: after LIVENESS
    without a word we PING, and LIVENESS after that PING without a word it counts as lost.
    (get_message also answers None for what redis-py keeps to itself, its own health
    check's reply, so silence is measured in time.)"""
    loop = asyncio.get_running_loop()
    pinged_at: float | None = None
    while True:
        _cancelling()  # after the last round's get_message or ping
        message = await pubsub.get_message(timeout=LIVENESS)
        if message is not None:
            pinged_at = None  # any word (a message, our PONG) proves the connection
            if message.get("type") == "message":
                yield message["data"]
            continue
        now = loop.time()
        if pinged_at is None:
            await pubsub.ping()
            pinged_at = now
        elif now - pinged_at >= LIVENESS:
            raise SubscriptionSilent(f"no answer to PING within {LIVENESS:g} s")
