"""Token usage counters: per org, per model, per user and per API key in the org's hash, and
a turn's tokens in each rate-limit token window. Counted once per message: a write retried
after Redis came back does not count it twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.events import queue_violations
from gateway.storage.quotas import Reservation
from gateway.storage.records import Message
from gateway.storage.scripts import Script

COUNTED_TTL = 3600  # a retry after a lost reply comes within seconds; an hour is ample

# The org-wide counters of one message, applied once (the marker makes a retry harmless):
# KEYS: the marker, the org's usage hash, the token windows its tokens go to (ARGV[5] of
# them), then the windows that hold its admission's reservation of ARGV[6] tokens, settled
# here (a window that expired meanwhile is not brought back, none goes below zero).
# ARGV: marker TTL, tokens in, tokens out, scopes (ARGV[4] of them, from ARGV[7]), token
# windows, reservation, then one EXPIREAT instant per token window.
_COUNT_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local tin, tout = tonumber(ARGV[2]), tonumber(ARGV[3])
local nf, nt = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 1, nf do
  redis.call('HINCRBY', KEYS[2], 'tokens_in' .. ARGV[6 + i], tin)
  redis.call('HINCRBY', KEYS[2], 'tokens_out' .. ARGV[6 + i], tout)
end
for k = 3, 2 + nt do
  redis.call('INCRBY', KEYS[k], tin + tout)
  redis.call('EXPIREAT', KEYS[k], ARGV[6 + nf + k - 2])
end
for k = 3 + nt, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 and redis.call('DECRBY', KEYS[k], ARGV[6]) < 0 then
    redis.call('SET', KEYS[k], '0', 'KEEPTTL')
  end
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
        reservation: Reservation | None = None,
    ) -> None:
        """Count `msg`'s tokens, in the pipeline of the write that stores it; token_windows
        are (key, EXPIREAT instant) of the rate-limit windows its tokens go to, and the
        admission's reservation is settled in the windows that hold it."""
        scopes = ["", f":{msg.model_id}"] if msg.model_id else [""]
        if msg.user_id:
            scopes.append(f":user:{msg.user_id}")
        if key_id:
            scopes.append(f":key:{key_id}")
        held = reservation.keys if reservation is not None else ()
        self._count_once.queue(
            pipe,
            [
                keys.counted_once(org_id, msg.id),
                keys.org_usage(org_id),
                *[k for k, _ in token_windows],
                *held,
            ],
            [
                COUNTED_TTL,
                msg.input_tokens,
                msg.output_tokens,
                len(scopes),
                len(token_windows),
                reservation.tokens if reservation is not None else 0,
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
        violations: Sequence[dict[str, Any]] = (),
        reservation: Reservation | None = None,
    ) -> None:
        """A turn outside any conversation: only its usage and violations are kept, in one
        round trip (the usage counted once however often this is retried)."""
        pipe = self.redis.pipeline(transaction=False)
        self.queue(pipe, msg, org_id, key_id, token_windows, reservation)
        queue_violations(pipe, org_id, violations)
        await pipe.execute()

    async def of_org(self, org: str) -> dict[str, int]:
        raw = cast(dict[str, str], await self.redis.hgetall(keys.org_usage(org)))
        return {k: int(v) for k, v in raw.items()}
