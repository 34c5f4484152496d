"""Commands sent in one write and answered in order: a turn's round trips without redis-py's
pipeline machinery.

redis-py's Pipeline costs ~25 us of CPU per execution beyond the round trip itself (its
object, the HIMPORT and observability hooks, its reset, the pure-Python packer): a Batch
queues through the same command methods, packs with hiredis, and reads the replies on one
pooled connection through the client's own retry, health check and response callbacks, so
what comes back, and what an error raises, is what the pipeline gave (bench/levers.py
measures both). On a Redis Cluster, whose pipeline splits the commands by node, `batch()`
is the cluster's own pipeline.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncDataAccessCommands, AsyncScriptCommands
from redis.exceptions import ResponseError

Queued = tuple[tuple[Any, ...], dict[str, Any]]


class Batch(AsyncDataAccessCommands, AsyncScriptCommands):
    """A pipeline (transaction=False) of a plain Redis client: queue with its command
    methods (`batch.hget(...)`, `batch.execute_command(...)`), then `await execute()`."""

    _event_dispatcher: Any = None  # in redis-py's command protocol; a Batch dispatches none

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.queued: list[Queued] = []

    def execute_command(self, *args: Any, **options: Any) -> Batch:
        self.queued.append((args, options))
        return self

    def __len__(self) -> int:
        return len(self.queued)

    async def execute(self) -> list[Any]:
        """Every reply in order; the first error reply is raised once all are read (the
        connection stays in step), like Pipeline.execute(raise_on_error=True)."""
        if not self.queued:
            return []
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies: list[Any] = await conn.retry.call_with_retry(
                lambda: self._round_trip(conn), lambda error: conn.disconnect(error=error)
            )
        finally:
            await pool.release(conn)
        for i, reply in enumerate(replies):
            if isinstance(reply, ResponseError):
                # which command, by name only: the arguments may hold a message's text
                name = self.queued[i][0][0]
                reply.args = (f"command #{i + 1} ({name}) of a batch: {reply}", *reply.args[1:])
                raise reply
        return replies

    async def _round_trip(self, conn: Any) -> list[Any]:
        await conn.send_packed_command(
            b"".join([hiredis.pack_command(args) for args, _ in self.queued])
        )
        callbacks = self.redis.response_callbacks
        replies: list[Any] = []
        for args, options in self.queued:
            try:
                reply = await conn.read_response()
            except ResponseError as exc:
                replies.append(exc)
                continue
            callback = callbacks.get(args[0])
            if callback is not None:
                options.pop("keys", None)
                reply = callback(reply, **options)
            replies.append(reply)
        return replies


def batch(redis: Redis | RedisCluster) -> Any:
    """A Batch on a plain (or Sentinel-managed) client; the cluster's own pipeline there."""
    if isinstance(redis, RedisCluster):
        return redis.pipeline(transaction=False)
    return Batch(redis)
