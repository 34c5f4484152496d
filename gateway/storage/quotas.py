"""Rate-limit windows in Redis: one script checks every window of a prompt, counts it, and
reserves an estimate of its tokens in the token windows; the turn's end settles that
reservation (storage/usage.py) against what it used. The rules (which windows, their
limits, the answer's headers, the estimate) live in gateway/access/quotas.py."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from gateway.storage.scripts import Script

# KEYS: the request windows (ARGV[1] of them), then the token windows.
# ARGV: that count, one limit per key, one EXPIREAT instant per key, the tokens to reserve.
# Returns {admitted (1|0), used per key (after counting this prompt and its reservation)}.
_ADMIT = """
local n, k = tonumber(ARGV[1]), #KEYS
local used = {}
local full = false
for i = 1, k do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used[i] >= tonumber(ARGV[i + 1]) then full = true end
end
if full then
  table.insert(used, 1, 0)
  return used
end
local reserve = tonumber(ARGV[2 + 2 * k])
for i = 1, k do
  if i <= n then
    used[i] = redis.call('INCR', KEYS[i])
  elseif reserve > 0 then
    used[i] = redis.call('INCRBY', KEYS[i], reserve)
  end
  if i > n or used[i] == 1 then redis.call('EXPIREAT', KEYS[i], ARGV[k + 1 + i]) end
end
table.insert(used, 1, 1)
return used
"""

# Give a reservation back: ARGV[1] tokens from each window still there (an expired one is
# not brought back), never below zero. The end-of-turn usage script settles the same way.
_RELEASE = """
for k = 1, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 and redis.call('DECRBY', KEYS[k], ARGV[1]) < 0 then
    redis.call('SET', KEYS[k], '0', 'KEEPTTL')
  end
end
"""


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    used: list[int]  # per window, in the order asked (after this prompt and its reservation)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The tokens an admitted prompt holds in its token windows until its end settles them."""

    keys: tuple[str, ...]
    tokens: int


class Quotas:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._admit = Script(redis, _ADMIT)
        self._release = Script(redis, _RELEASE)

    async def admit(
        self,
        request_windows: list[tuple[str, int, int]],
        token_windows: list[tuple[str, int, int]],
        *,
        reserve: int = 0,
    ) -> Admission:
        """Request windows and token windows (key, limit, EXPIREAT instant), all of one org's
        slot: when none is full, the prompt is counted and `reserve` tokens are held in each
        token window."""
        windows = [*request_windows, *token_windows]
        result = await self._admit(
            [k for k, _, _ in windows],
            [
                len(request_windows),
                *[limit for _, limit, _ in windows],
                *[at for _, _, at in windows],
                reserve,
            ],
        )
        return Admission(bool(int(result[0])), [int(u) for u in result[1:]])

    async def release(self, reservation: Reservation) -> None:
        """A prompt that goes no further (refused after admission, blocked, busy)."""
        if reservation.keys and reservation.tokens:
            await self._release(list(reservation.keys), [reservation.tokens])
