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
    """One hash for every org's admin-managed repositories. A repository's id is its org's
    own: the field is `<org>/<id>` (neither id holds a `/`), so another org's ids neither
    answer for nor block this org's. A field that is a bare id was written before ids were
    per org: it is read as its record's org's, and moved on its next write."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    async def get(self, org_id: str, rid: str) -> dict[str, Any] | None:
        return (await self._lookup(org_id, rid))[0]

    async def _lookup(self, org_id: str, rid: str) -> tuple[dict[str, Any] | None, bool]:
        """(the record, whether it sits under its bare id: written by an older gateway)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.REPOSITORIES, keys.repository_field(org_id, rid))
        pipe.hget(keys.REPOSITORIES, rid)
        raw, legacy = await pipe.execute()
        if raw:
            return cast(dict[str, Any], json.loads(raw)), False
        found = json.loads(legacy) if legacy else None
        if found is not None and found.get("org_id") == org_id:
            return cast(dict[str, Any], found), True
        return None, False

    async def find(self, rid: str) -> list[dict[str, Any]]:
        """Every org's repository of that id (for the platform admin, who names no org)."""
        return [r for r in await self.all() if r.get("id") == rid]

    async def all(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in await self.redis.hvals(keys.REPOSITORIES)]

    async def put(self, record: dict[str, Any]) -> bool:
        """Create or replace; True when it was created."""
        org, rid = record["org_id"], record["id"]
        before, legacy = await self._lookup(org, rid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.REPOSITORIES, keys.repository_field(org, rid), json.dumps(record))
        if legacy:
            pipe.hdel(keys.REPOSITORIES, rid)  # moved under its org
        await pipe.execute()
        return before is None

    async def delete(self, org_id: str, rid: str) -> bool:
        before, legacy = await self._lookup(org_id, rid)
        if before is None:
            return False
        field = rid if legacy else keys.repository_field(org_id, rid)
        return bool(await self.redis.hdel(keys.REPOSITORIES, field))
