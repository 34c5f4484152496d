"""Rate-limit windows in Redis: one script checks every window of a prompt and counts it.
The rules (which windows, their limits, the answer's headers) live in gateway/access/quotas.py;
a turn's tokens reach the token windows with its usage (storage/usage.py)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from gateway.storage.scripts import Script

# KEYS: the request windows (ARGV[1] of them), then the token windows.
# ARGV: that count, one limit per key, then one EXPIREAT instant per request window.
# Returns {admitted (1|0), used per key (request windows: after counting this prompt)}.
_ADMIT = """
local n = tonumber(ARGV[1])
local used = {}
local full = false
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used[i] >= tonumber(ARGV[i + 1]) then full = true end
end
if full then
  table.insert(used, 1, 0)
  return used
end
for i = 1, n do
  used[i] = redis.call('INCR', KEYS[i])
  if used[i] == 1 then redis.call('EXPIREAT', KEYS[i], ARGV[#KEYS + 1 + i]) end
end
table.insert(used, 1, 1)
return used
"""


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    used: list[int]  # per window, in the order asked (request windows: after this prompt)


class Quotas:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._admit = Script(redis, _ADMIT)

    async def admit(
        self,
        request_windows: list[tuple[str, int, int]],
        token_windows: list[tuple[str, int]],
    ) -> Admission:
        """Request windows (key, limit, EXPIREAT instant) and token windows (key, limit),
        all of one org's slot: counted only when none is full."""
        keys_ = [k for k, _, _ in request_windows] + [k for k, _ in token_windows]
        limits = [limit for _, limit, _ in request_windows] + [limit for _, limit in token_windows]
        result = await self._admit(
            keys_, [len(request_windows), *limits, *[at for _, _, at in request_windows]]
        )
        return Admission(bool(int(result[0])), [int(u) for u in result[1:]])
