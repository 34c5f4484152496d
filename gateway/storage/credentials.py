"""Who may call: the admin token's hash, API keys (stored by their hash, listed per org
through the org's set of key ids), and the shared secrets every worker and replica agrees
on (first writer wins)."""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.events import QueuedEvent, queue_event
from gateway.storage.scripts import Script

# Take a place among the org's keys: at most ARGV[2] of them.
_RESERVE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""


class Credentials:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._reserve = Script(redis, _RESERVE)

    async def admin_token_digest(self) -> str | None:
        return cast(str | None, await self.redis.get(keys.ADMIN_TOKEN))

    async def set_admin_token_digest(self, digest: str) -> bool:
        """First writer wins, so two workers starting together agree on one token."""
        return bool(await self.redis.set(keys.ADMIN_TOKEN, digest, nx=True))

    async def save_api_key(
        self,
        digest: str,
        record: dict[str, Any],
        *,
        limit: int | None = None,
        event: QueuedEvent | None = None,
    ) -> bool:
        """Store a new key; False, and nothing stored, when its org holds `limit` already."""
        org, key_id = record["org_id"], record["key_id"]
        if limit is not None and not await self._reserve([keys.org_api_keys(org)], [key_id, limit]):
            return False
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.api_key(digest), json.dumps(record))
        pipe.hset(keys.API_KEYS, key_id, json.dumps({**record, "digest": digest}))
        pipe.sadd(keys.org_api_keys(org), key_id)
        if event is not None:
            queue_event(pipe, *event)
        await pipe.execute()
        return True

    async def api_key(self, digest: str) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.api_key(digest))
        return json.loads(raw) if raw else None

    async def api_key_record(self, key_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(keys.API_KEYS, key_id)
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        record.pop("digest", None)
        return record

    async def api_keys(self, org: str | None = None) -> list[dict[str, Any]]:
        """Every key (the CLI), or one org's, oldest first; never their digests."""
        if org is None:
            raws = cast(list[str | None], await self.redis.hvals(keys.API_KEYS))
        else:
            ids = sorted(cast(set[str], await self.redis.smembers(keys.org_api_keys(org))))
            raws = cast(list[str | None], await self.redis.hmget(keys.API_KEYS, ids)) if ids else []
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:  # a create that failed half-way: give its place back
                await self.redis.srem(keys.org_api_keys(org), *gone)
        rows = [json.loads(v) for v in raws if v is not None]
        for row in rows:
            row.pop("digest", None)
        return sorted(rows, key=lambda r: (r.get("created_at", 0), r["key_id"]))

    async def org_key_count(self, org: str) -> int:
        return int(await self.redis.scard(keys.org_api_keys(org)))

    async def revoke_api_key(self, key_id: str, *, event: QueuedEvent | None = None) -> bool:
        """Deleted, then announced to every worker that keeps keys in memory."""
        raw = await self.redis.hget(keys.API_KEYS, key_id)
        if raw is None:
            return False
        record = json.loads(raw)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(keys.api_key(record["digest"]))
        pipe.hdel(keys.API_KEYS, key_id)
        pipe.srem(keys.org_api_keys(record["org_id"]), key_id)
        if event is not None:
            queue_event(pipe, *event)
        _, deleted, _, *_ = await pipe.execute()
        await self.redis.publish(keys.KEYS_REVOKED_CHANNEL, record["digest"])
        return bool(deleted)

    async def shared_secret(self, name: str) -> bytes:
        """A random secret every worker and replica agrees on (first writer wins)."""
        key = keys.shared_secret(name)
        await self.redis.set(key, secrets.token_hex(32), nx=True)
        return bytes.fromhex(cast(str, await self.redis.get(key)))
