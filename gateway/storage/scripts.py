"""Lua scripts, run alone or queued in a pipeline."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster


class Script:
    """A Lua script. Alone it runs as EVALSHA (redis-py loads it after a NOSCRIPT); in a
    pipeline it is queued as EVAL of its body: the server caches it by SHA all the same, and
    nothing has to be loaded first (redis-py's own way sends SCRIPT EXISTS before every
    pipeline holding a script: one more round trip per turn; a server that restarted, or a
    replica promoted by a failover, may lack the SHA anyway)."""

    def __init__(self, redis: Redis | RedisCluster, body: str) -> None:
        self.body = body
        self._registered = redis.register_script(body)

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        return await self._registered(keys=keys, args=args)

    def queue(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        pipe.eval(self.body, len(keys), *keys, *args)
