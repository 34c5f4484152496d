"""Token usage counters: per org, per model, per user and per API key in the org's hash, and
a turn's tokens in each rate-limit token window. Counted once per message: a write retried
after Redis came back does not count it twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.records import Message
from gateway.storage.scripts import Script

COUNTED_TTL = 3600  # a retry after a lost reply comes within seconds; an hour is ample

# The org-wide counters of one message, applied once (the marker makes a retry harmless).
_COUNT_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local tin, tout, nf = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, nf do
  redis.call('HINCRBY', KEYS[2], 'tokens_in' .. ARGV[4 + i], tin)
  redis.call('HINCRBY', KEYS[2], 'tokens_out' .. ARGV[4 + i], tout)
end
for k = 3, #KEYS do
  redis.call('INCRBY', KEYS[k], tin + tout)
  redis.call('EXPIREAT', KEYS[k], ARGV[4 + nf + k - 2])
end
return 1
"""


class Usage:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._count_once = Script(redis, _COUNT_ONCE)

    def queue(
        self,
        pipe: Any,
        msg: Message,
        org_id: str,
        key_id: str | None,
        token_windows: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Count `msg`'s tokens, in the pipeline of the write that stores it; token_windows
        are (key, EXPIREAT instant) of the rate-limit windows its tokens go to."""
        scopes = ["", f":{msg.model_id}"] if msg.model_id else [""]
        if msg.user_id:
            scopes.append(f":user:{msg.user_id}")
        if key_id:
            scopes.append(f":key:{key_id}")
        self._count_once.queue(
            pipe,
            [
                keys.counted_once(org_id, msg.id),
                keys.org_usage(org_id),
                *[k for k, _ in token_windows],
            ],
            [
                COUNTED_TTL,
                msg.input_tokens,
                msg.output_tokens,
                len(scopes),
                *scopes,
                *[expire_at for _, expire_at in token_windows],
            ],
        )

    async def record(
        self,
        msg: Message,
        org_id: str,
        key_id: str | None = None,
        *,
        token_windows: Sequence[tuple[str, int]] = (),
    ) -> None:
        """A turn outside any conversation: only its usage is kept."""
        pipe = self.redis.pipeline(transaction=False)
        self.queue(pipe, msg, org_id, key_id, token_windows)
        await pipe.execute()

    async def of_org(self, org: str) -> dict[str, int]:
        raw = cast(dict[str, str], await self.redis.hgetall(keys.org_usage(org)))
        return {k: int(v) for k, v in raw.items()}
