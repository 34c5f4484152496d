"""Model entries set through the admin API: those every org may use (gw:{models}) and each
org's own (gw:{o:<org>}:models), a version every worker polls, and the connection tests'
last results. The rules (who may change what, the reloads) live in gateway/models/."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.scripts import Script

# Create or replace one field of a hash that holds at most ARGV[3] fields.
# Returns 1 created, 0 replaced, -1 refused (full).
BOUNDED_HSET = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def entries_key(org: str | None) -> str:
    return keys.MODELS if org is None else keys.org_models(org)


def health_key(org: str | None) -> str:
    return keys.MODEL_HEALTH if org is None else keys.org_model_health(org)


class Models:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._put = Script(redis, BOUNDED_HSET)
        self._release = Script(redis, _RELEASE)

    async def load(self) -> tuple[str | None, dict[str, str]]:
        """The version and the entries every org may use, read together (one slot)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(keys.MODELS_VERSION)
        pipe.hgetall(keys.MODELS)
        version, raw = await pipe.execute()
        return version, raw

    async def shared(self) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(keys.MODELS))

    async def version(self) -> str | None:
        return cast(str | None, await self.redis.get(keys.MODELS_VERSION))

    async def of_org(self, org: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(keys.org_models(org)))

    async def lookup(self, org: str | None, model_id: str) -> tuple[str | None, str | None]:
        """(the org's own entry, the entry every org may use) of one id, in one round trip:
        what a worker that has not heard of a new model yet reads before saying 404."""
        if org is None:
            return None, cast(str | None, await self.redis.hget(keys.MODELS, model_id))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.org_models(org), model_id)
        pipe.hget(keys.MODELS, model_id)
        own, shared = await pipe.execute()
        return own, shared

    async def get(self, org: str | None, model_id: str) -> str | None:
        return cast(str | None, await self.redis.hget(entries_key(org), model_id))

    async def put(self, org: str | None, model_id: str, record: str, *, limit: int) -> int:
        """1 created, 0 replaced, -1 refused: the hash already holds `limit` entries."""
        return int(await self._put([entries_key(org)], [model_id, record, limit]))

    async def delete(self, org: str | None, model_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(entries_key(org), model_id)
        pipe.hdel(health_key(org), model_id)
        deleted, _ = await pipe.execute()
        return bool(deleted)

    async def bump(self) -> str:
        """The version every worker polls, after a change of a model entry or a provider key
        (a worker that misses the message on MODELS_CHANNEL still sees it move)."""
        return str(await self.redis.incr(keys.MODELS_VERSION))

    # -- the connection tests ----------------------------------------------------------------

    async def begin_test(self, org: str | None, model_id: str, token: str, ttl_ms: int) -> bool:
        """One test of a model at a time, across workers; False while another runs."""
        key = keys.model_test_lock(org or "*", model_id)
        return bool(await self.redis.set(key, token, nx=True, px=ttl_ms))

    async def end_test(self, org: str | None, model_id: str, token: str) -> None:
        await self._release([keys.model_test_lock(org or "*", model_id)], [token])

    async def save_health(self, org: str | None, model_id: str, result: str) -> None:
        await self.redis.hset(health_key(org), model_id, result)

    async def health(self, org: str | None) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(health_key(org)))
