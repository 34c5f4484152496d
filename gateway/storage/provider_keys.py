"""Repositories' own provider keys, as sealed envelopes: one hash per org,
"<provider>:<repository id>" -> envelope JSON (gateway/models/vault.py seals and opens them;
nothing here ever sees a key in clear), and the KEKs' check values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.models import BOUNDED_HSET
from gateway.storage.scripts import Script

# Replace a field only if it still holds what was read (a rotation never clobbers a key
# set in the meantime).
_REPLACE_IF = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def field(provider: str, repo_id: str) -> str:
    return f"{provider}:{repo_id}"


def split_field(name: str) -> tuple[str, str]:
    """(provider, repository id); providers have no ':' while repository ids may."""
    provider, _, repo_id = name.partition(":")
    return provider, repo_id


class ProviderKeys:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._put = Script(redis, BOUNDED_HSET)
        self._replace_if = Script(redis, _REPLACE_IF)

    async def of_org(self, org: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(keys.provider_keys(org)))

    async def repositories(self, orgs: list[str]) -> set[tuple[str, str]]:
        """(org, repository id) of every repository with a key, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for org in orgs:
            pipe.hkeys(keys.provider_keys(org))
        found = await pipe.execute() if orgs else []
        return {(o, split_field(f)[1]) for o, names in zip(orgs, found, strict=True) for f in names}

    async def get(self, org: str, provider: str, repo_id: str) -> str | None:
        raw = await self.redis.hget(keys.provider_keys(org), field(provider, repo_id))
        return cast(str | None, raw)

    async def put(
        self,
        org: str,
        provider: str,
        repo_id: str,
        envelope: str,
        *,
        limit: int,
        kek: str,
        canary: str,
    ) -> int:
        """1 created, 0 replaced, -1 refused (the org holds `limit` keys already). The KEK's
        check value rides along (kept if present), so Redis knows every KEK in use."""
        pipe = self.redis.pipeline(transaction=False)
        self._put.queue(
            pipe, [keys.provider_keys(org)], [field(provider, repo_id), envelope, limit]
        )
        pipe.hsetnx(keys.KEKS, kek, canary)
        result, _ = await pipe.execute()
        return int(result)

    async def delete(self, org: str, providers: list[str], repo_id: str) -> list[str]:
        """The providers whose key was there and is gone now."""
        pipe = self.redis.pipeline(transaction=False)
        for provider in providers:
            pipe.hdel(keys.provider_keys(org), field(provider, repo_id))
        deleted = await pipe.execute()
        return [p for p, n in zip(providers, deleted, strict=True) if n]

    async def replace_if(self, org: str, name: str, old: str, new: str) -> bool:
        return bool(await self._replace_if([keys.provider_keys(org)], [name, old, new]))

    async def orgs(self) -> AsyncIterator[str]:
        """Every org holding provider keys (a SCAN: for `keys rotate-kek`, not requests)."""
        prefix, suffix = f"{keys.P}{{o:", "}:provider_keys"
        async for key in self.redis.scan_iter(match=keys.provider_keys_pattern(), count=500):
            name = key if isinstance(key, str) else key.decode()
            if name.startswith(prefix) and name.endswith(suffix):
                yield keys.unpart(name[len(prefix) : -len(suffix)])

    # -- the KEKs' check values --------------------------------------------------------------

    async def canaries(self) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(keys.KEKS))

    async def add_canary(self, kek: str, canary: str) -> None:
        await self.redis.hsetnx(keys.KEKS, kek, canary)

    async def forget_canaries(self, keks: list[str]) -> None:
        if keks:
            await self.redis.hdel(keys.KEKS, *keks)
