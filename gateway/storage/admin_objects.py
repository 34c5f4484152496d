"""What the admin API manages: policies (with a version every worker polls) and
repositories."""

from __future__ import annotations

import json
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys


class Policies:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    async def load(self) -> tuple[str | None, dict[str, str]]:
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(keys.POLICIES_VERSION)
        pipe.hgetall(keys.POLICIES)
        version, raw = await pipe.execute()
        return version, raw

    async def version(self) -> str | None:
        return cast(str | None, await self.redis.get(keys.POLICIES_VERSION))

    async def put(self, policy_id: str, spec_json: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.POLICIES, policy_id, spec_json)
        pipe.incr(keys.POLICIES_VERSION)
        await pipe.execute()

    async def delete(self, policy_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(keys.POLICIES, policy_id)
        pipe.incr(keys.POLICIES_VERSION)
        deleted, _ = await pipe.execute()
        return bool(deleted)


class Repositories:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    async def get(self, rid: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(keys.REPOSITORIES, rid)
        return json.loads(raw) if raw else None

    async def all(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in await self.redis.hvals(keys.REPOSITORIES)]

    async def put(self, record: dict[str, Any]) -> bool:
        """Create or replace; True when it was created."""
        return bool(await self.redis.hset(keys.REPOSITORIES, record["id"], json.dumps(record)))

    async def delete(self, rid: str) -> bool:
        return bool(await self.redis.hdel(keys.REPOSITORIES, rid))
