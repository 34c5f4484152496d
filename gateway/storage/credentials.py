"""Who may call: the admin token's hash, API keys (stored by their hash), and the shared
secrets every worker and replica agrees on (first writer wins)."""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys


class Credentials:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    async def admin_token_digest(self) -> str | None:
        return cast(str | None, await self.redis.get(keys.ADMIN_TOKEN))

    async def set_admin_token_digest(self, digest: str) -> bool:
        """First writer wins, so two workers starting together agree on one token."""
        return bool(await self.redis.set(keys.ADMIN_TOKEN, digest, nx=True))

    async def save_api_key(self, digest: str, record: dict[str, Any]) -> None:
        await self.redis.set(keys.api_key(digest), json.dumps(record))
        await self.redis.hset(
            keys.API_KEYS, record["key_id"], json.dumps({**record, "digest": digest})
        )

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

    async def api_keys(self) -> list[dict[str, Any]]:
        rows = [json.loads(v) for v in (await self.redis.hvals(keys.API_KEYS))]
        for row in rows:
            row.pop("digest", None)
        return sorted(rows, key=lambda r: r.get("created_at", 0))

    async def revoke_api_key(self, key_id: str) -> bool:
        """Deleted, then announced to every worker that keeps keys in memory."""
        raw = await self.redis.hget(keys.API_KEYS, key_id)
        if raw is None:
            return False
        record = json.loads(raw)
        await self.redis.delete(keys.api_key(record["digest"]))
        await self.redis.hdel(keys.API_KEYS, key_id)
        await self.redis.publish(keys.KEYS_REVOKED_CHANNEL, record["digest"])
        return True

    async def shared_secret(self, name: str) -> bytes:
        """A random secret every worker and replica agrees on (first writer wins)."""
        key = keys.shared_secret(name)
        await self.redis.set(key, secrets.token_hex(32), nx=True)
        return bytes.fromhex(cast(str, await self.redis.get(key)))
