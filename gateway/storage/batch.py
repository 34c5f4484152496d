"""Commands sent in one write and answered in order: a turn's round trips without redis-py's
pipeline machinery.

redis-py's Pipeline costs ~25 us of CPU per execution beyond the round trip itself (its
object, the HIMPORT and observability hooks, its reset, the pure-Python packer): a Batch
queues through the same command methods, packs with hiredis, and sends them on the client's
Lane (lane.py), the connection all batches share, through the client's own retry and
response callbacks, so what comes back, and what an error raises, is what the pipeline gave
(bench/levers.py measures them). A batch holding a command that blocks its connection or
keeps state on it (WAIT, XREAD BLOCK, WATCH...) takes a pooled connection of its own, as
does any batch of a Sentinel-managed client. On a Redis Cluster, whose pipeline splits the
commands by node, `batch()` is the cluster's own pipeline.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncDataAccessCommands, AsyncScriptCommands
from redis.exceptions import ResponseError

from gateway.storage.lane import lane

Queued = tuple[tuple[Any, ...], dict[str, Any]]

# Commands that must not share the Lane: they block the connection (every batch behind them
# would wait), keep state on it across round trips, or change what it is.
_OWN_CONNECTION = frozenset(
    {
        "WAIT", "WAITAOF", "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN",
        "BZPOPMAX", "BZMPOP", "XREAD", "XREADGROUP", "WATCH", "UNWATCH", "SELECT", "CLIENT",
        "AUTH", "HELLO", "RESET", "QUIT", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR",
    }
)  # fmt: skip


class Batch(AsyncDataAccessCommands, AsyncScriptCommands):
    """A pipeline (transaction=False) of a plain Redis client: queue with its command
    methods (`batch.hget(...)`, `batch.execute_command(...)`), then `await execute()`."""

    _event_dispatcher: Any = None  # in redis-py's command protocol; a Batch dispatches none

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.queued: list[Queued] = []
        self.own_connection = False

    def execute_command(self, *args: Any, **options: Any) -> Batch:
        self.queued.append((args, options))
        if str(args[0]).upper() in _OWN_CONNECTION:
            self.own_connection = True
        return self

    def __len__(self) -> int:
        return len(self.queued)

    async def execute(self) -> list[Any]:
        """Every reply in order; the first error reply is raised once all are read (the
        connection stays in step), like Pipeline.execute(raise_on_error=True)."""
        if not self.queued:
            return []
        packed = b"".join([hiredis.pack_command(args) for args, _ in self.queued])
        shared = None if self.own_connection else lane(self.redis)
        if shared is not None:
            raw = await shared.call(packed, len(self.queued))
        else:
            raw = await self._pooled(packed)
        replies = self._answers(raw)
        for i, reply in enumerate(replies):
            if isinstance(reply, ResponseError):
                # which command, by name only: the arguments may hold a message's text
                name = self.queued[i][0][0]
                reply.args = (f"command #{i + 1} ({name}) of a batch: {reply}", *reply.args[1:])
                raise reply
        return replies

    def _answers(self, raw: list[Any]) -> list[Any]:
        """The replies through the client's response callbacks (errors as they are)."""
        callbacks = self.redis.response_callbacks
        replies: list[Any] = []
        for (args, options), reply in zip(self.queued, raw, strict=True):
            if not isinstance(reply, ResponseError):
                callback = callbacks.get(args[0])
                if callback is not None:
                    options.pop("keys", None)
                    reply = callback(reply, **options)
            replies.append(reply)
        return replies

    async def _pooled(self, packed: bytes) -> list[Any]:
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: self._round_trip(conn, packed), lambda error: conn.disconnect(error=error)
            )
        finally:
            await pool.release(conn)
        return replies

    async def _round_trip(self, conn: Any, packed: bytes) -> list[Any]:
        """The raw replies on a pooled connection, an error reply as its exception."""
        await conn.send_packed_command(packed)
        replies: list[Any] = []
        for _ in self.queued:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies


def batch(redis: Redis | RedisCluster) -> Any:
    """A Batch on a plain (or Sentinel-managed) client; the cluster's own pipeline there."""
    kind = type(redis)
    cluster = _CLUSTER_CLASSES.get(kind)
    if cluster is None:
        cluster = _CLUSTER_CLASSES[kind] = isinstance(redis, RedisCluster)
    if cluster:
        return redis.pipeline(transaction=False)
    return Batch(redis)  # type: ignore[arg-type]  # not a cluster: asked above


# whether a client class is a cluster's, asked once: RedisCluster's metaclass is typing's
# _ProtocolMeta, whose isinstance runs Python code (~0.5 us), and a turn makes 3-4 batches
_CLUSTER_CLASSES: dict[type, bool] = {}
