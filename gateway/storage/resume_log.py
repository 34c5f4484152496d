"""The resume log's Redis commands: one stream per answer, in its conversation's slot.
What an entry holds is gateway/turn/resume_log.py's business; here entries are field maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.batch import batch

Entry = tuple[str, dict[str, str]]  # (stream id, fields)


class ResumeLogs:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    async def append_many(self, batches: Sequence[tuple[str, str, dict[str, str]]]) -> None:
        """(conversation id, message id, fields) per entry, in one round trip."""
        pipe = batch(self.redis)
        for cid, message_id, fields in batches:
            pipe.xadd(keys.resume_log(cid, message_id), fields)
        await pipe.execute()

    async def read(self, cid: str, message_id: str, after: str = "-") -> list[Entry]:
        start = "-" if after == "-" else f"({after}"
        return cast(
            list[Entry], await self.redis.xrange(keys.resume_log(cid, message_id), start, "+")
        )

    async def last(self, cid: str, message_id: str) -> dict[str, str] | None:
        rows = await self.redis.xrevrange(keys.resume_log(cid, message_id), "+", "-", count=1)
        return cast(dict[str, str], rows[0][1]) if rows else None

    async def follow(self, cid: str, message_id: str, after: str, block_ms: int) -> list[Entry]:
        """Entries after `after`, waiting up to block_ms for the first one."""
        key = keys.resume_log(cid, message_id)
        reply = cast(
            list[tuple[str, list[Entry]]],
            await self.redis.xread({key: after}, block=block_ms, count=1000),
        )
        return reply[0][1] if reply else []
