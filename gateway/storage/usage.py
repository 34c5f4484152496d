"""Token usage and cost: the org's running counters (per org, model, user and API key), the
usage buckets that GET /usage reads, and a turn's tokens in each rate-limit token window.
Counted once per message: a write retried after Redis came back does not count it twice.

Buckets. Each turn adds its tokens, cost and one request to three hashes of its org, the
UTC hour, day and month it ended in, under one field per (user, workspace, repository, API
key, model): `gw:{o:<org>}:usage:<h|d|m>:<YYYYMMDDHH|YYYYMMDD|YYYYMM>`, field the JSON array
of those five ids, value "<input tokens>,<output tokens>,<cost in nano-USD>,<requests>".
Any grouping of the five (and of the org) is summed from the fields when read, so one write
serves every group_by; the user comes first so that one user's fields are found by an
HSCAN MATCH on the prefix (a user's own usage is never read into the gateway whole). A
bucket expires RETENTION after it ends, so an org holds at most 8 x 24 hour, 400 day and 25
month buckets, each with one field per combination that was active in it
(bench/usage_buckets.py measures the bytes). All of it happens inside the end-of-turn
script that counted tokens already: no round trip is added.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.batch import batch
from gateway.storage.events import queue_violations
from gateway.storage.quotas import Reservation
from gateway.storage.records import Conversation, Message
from gateway.storage.scripts import Script

SCAN_COUNT = 5000  # fields Redis walks per HSCAN step of a user's own usage
COUNTED_TTL = 3600  # a retry after a lost reply comes within seconds; an hour is ample
GRAINS = ("h", "d", "m")
RETENTION = {"h": 8 * 86_400, "d": 400 * 86_400, "m": 762 * 86_400}  # after the bucket ends
MAX_BUCKETS = {"h": 8 * 24 + 1, "d": 401, "m": 26}  # what a window can span within RETENTION

# The org-wide counters of one message, applied once (the marker makes a retry harmless).
# KEYS: marker, the org's counters, NB bucket hashes, NT token windows its tokens go to, then
# the windows that hold its admission's reservation, settled here (a window that expired
# meanwhile is not brought back, none goes below zero).
# ARGV: marker TTL, input, output, cost, the bucket field, NB, one EXPIREAT per bucket, the
# number of counter scopes NF, NT, the reservation, the scopes, then one EXPIREAT per token
# window. Bucket values are "in,out,cost,requests"; %d keeps integers exact up to 2^53.
_COUNT_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local tin, tout, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local nb = tonumber(ARGV[6])
for b = 1, nb do
  local key = KEYS[2 + b]
  local v = redis.call('HGET', key, ARGV[5])
  local i, o, c, n = 0, 0, 0, 0
  if v then
    local a, bb, cc, d = string.match(v, '^(%d+),(%d+),(%d+),(%d+)$')
    i, o, c, n = tonumber(a), tonumber(bb), tonumber(cc), tonumber(d)
  end
  redis.call('HSET', key, ARGV[5], string.format('%d,%d,%d,%d', i + tin, o + tout, c + cost, n + 1))
  -- a field that existed lives in a bucket whose expiry its first write set
  if not v then redis.call('EXPIREAT', key, ARGV[6 + b]) end
end
local at = 7 + nb
local nf, nt, reserved = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), ARGV[at + 2]
for i = 1, nf do
  redis.call('HINCRBY', KEYS[2], 'tokens_in' .. ARGV[at + 2 + i], tin)
  redis.call('HINCRBY', KEYS[2], 'tokens_out' .. ARGV[at + 2 + i], tout)
end
for k = 3 + nb, 2 + nb + nt do
  redis.call('INCRBY', KEYS[k], tin + tout)
  redis.call('EXPIREAT', KEYS[k], ARGV[at + 2 + nf + k - 2 - nb])
end
for k = 3 + nb + nt, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 and redis.call('DECRBY', KEYS[k], reserved) < 0 then
    redis.call('SET', KEYS[k], '0', 'KEEPTTL')
  end
end
return 1
"""


# -- buckets ----------------------------------------------------------------------------------


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def bucket_of(grain: str, ms: int) -> str:
    t = _utc(ms)
    return {"h": f"{t:%Y%m%d%H}", "d": f"{t:%Y%m%d}", "m": f"{t:%Y%m}"}[grain]


def bucket_start(grain: str, bucket: str) -> datetime:
    fmt = {"h": "%Y%m%d%H", "d": "%Y%m%d", "m": "%Y%m"}[grain]
    return datetime.strptime(bucket, fmt).replace(tzinfo=UTC)


def _next(grain: str, t: datetime) -> datetime:
    if grain == "h":
        return t + timedelta(hours=1)
    if grain == "d":
        return t + timedelta(days=1)
    return datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=UTC)


def bucket_end(grain: str, bucket: str) -> datetime:
    return _next(grain, bucket_start(grain, bucket))


def buckets_between(grain: str, since_ms: int, until_ms: int) -> Iterator[str]:
    """The buckets that hold instants from since_ms to until_ms (both included), oldest
    first; the caller bounds the window (MAX_BUCKETS)."""
    t = bucket_start(grain, bucket_of(grain, since_ms))
    end = _utc(until_ms)
    while t <= end:
        yield bucket_of(grain, int(t.timestamp() * 1000))
        t = _next(grain, t)


def _buckets_of(ms: int) -> list[tuple[str, str, int]]:
    """(grain, bucket, EXPIREAT instant) of the hour, day and month holding `ms`, computed
    from the instant itself (no string parsing: this runs once per turn)."""
    t = _utc(ms)
    day = f"{t.year:04d}{t.month:02d}{t.day:02d}"
    month = day[:6]
    return [
        ("h", f"{day}{t.hour:02d}", (ms // 3_600_000 + 1) * 3600 + RETENTION["h"]),
        ("d", day, (ms // 86_400_000 + 1) * 86_400 + RETENTION["d"]),
        ("m", month, _month_end(t.year, t.month) + RETENTION["m"]),
    ]


@functools.lru_cache(maxsize=64)
def _month_end(year: int, month: int) -> int:
    return int(datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp())


@dataclass(frozen=True, slots=True)
class Tally:
    """Whose usage a message is: the org's counters and the bucket field it goes to."""

    org_id: str
    key_id: str | None = None
    workspace_id: str | None = None
    repo_id: str | None = None

    @classmethod
    def of(cls, org_id: str, key_id: str | None, conv: Conversation | None) -> Tally:
        """A turn's: in a conversation, also its workspace and repository."""
        if conv is None:
            return cls(org_id, key_id)
        return cls(org_id, key_id, conv.workspace_id, conv.repo_id)


def group_field(tally: Tally, msg: Message) -> str:
    """JSON [user, workspace, repository, key, model]: any id survives, whatever it holds."""
    return json.dumps(
        [
            msg.user_id or "",
            tally.workspace_id or "",
            tally.repo_id or "",
            tally.key_id or "",
            msg.model_id or "",
        ],
        separators=(",", ":"),
    )


_GLOB = {c: "\\" + c for c in "*?[]\\"}


def user_fields_pattern(user_id: str) -> str:
    """The HSCAN MATCH pattern of one user's fields: the JSON prefix, glob-escaped."""
    prefix = "[" + json.dumps(user_id) + ","
    return "".join(_GLOB.get(c, c) for c in prefix) + "*"


@dataclass(frozen=True, slots=True)
class Row:
    """One bucket field as read: the five ids and their sums."""

    workspace_id: str
    repo_id: str
    user_id: str
    key_id: str
    model_id: str
    input_tokens: int
    output_tokens: int
    cost_nusd: int
    requests: int


Ids = tuple[str, str, str, str, str]  # workspace, repository, user, key, model (Row's order)


def parse_ids(name: str) -> Ids | None:
    try:
        ids = json.loads(name)
    except ValueError:
        return None
    if not isinstance(ids, list) or len(ids) != 5:
        return None
    user, ws, repo, key, model = (str(i) for i in ids)
    return ws, repo, user, key, model


def parse_row(name: str, value: str, ids: Ids | None = None) -> Row | None:
    """A bucket field as a Row; `ids`: its name already parsed (names repeat across buckets)."""
    if ids is None:
        ids = parse_ids(name)
    try:
        tin, tout, cost, n = (int(x) for x in value.split(","))
    except ValueError:
        return None
    if ids is None:
        return None
    return Row(*ids, tin, tout, cost, n)


class Usage:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._count_once = Script(redis, _COUNT_ONCE)

    def queue(
        self,
        pipe: Any,
        msg: Message,
        tally: Tally,
        token_windows: Sequence[tuple[str, int]] = (),
        reservation: Reservation | None = None,
    ) -> None:
        """Count `msg`'s tokens and cost, in the pipeline of the write that stores it;
        token_windows are (key, EXPIREAT instant) of the rate-limit windows its tokens go to,
        and the admission's reservation is settled in the windows that hold it."""
        org_id = tally.org_id
        scopes = ["", f":{msg.model_id}"] if msg.model_id else [""]
        if msg.user_id:
            scopes.append(f":user:{msg.user_id}")
        if tally.key_id:
            scopes.append(f":key:{tally.key_id}")
        buckets = _buckets_of(msg.created_at)
        bucket_keys = [keys.usage_bucket(org_id, g, b) for g, b, _ in buckets]
        expiries = [at for _, _, at in buckets]
        held = reservation.keys if reservation is not None else ()
        self._count_once.queue(
            pipe,
            [
                keys.counted_once(org_id, msg.id),
                keys.org_usage(org_id),
                *bucket_keys,
                *[k for k, _ in token_windows],
                *held,
            ],
            [
                COUNTED_TTL,
                msg.input_tokens,
                msg.output_tokens,
                msg.cost_nusd,
                group_field(tally, msg),
                len(bucket_keys),
                *expiries,
                len(scopes),
                len(token_windows),
                reservation.tokens if reservation is not None else 0,
                *scopes,
                *[expire_at for _, expire_at in token_windows],
            ],
        )
        pipe.sadd(keys.USAGE_ORGS, org_id)

    async def record(
        self,
        msg: Message,
        tally: Tally,
        *,
        token_windows: Sequence[tuple[str, int]] = (),
        violations: Sequence[dict[str, Any]] = (),
        reservation: Reservation | None = None,
    ) -> None:
        """A turn outside any conversation: only its usage and violations are kept, in one
        round trip (the usage counted once however often this is retried)."""
        pipe = batch(self.redis)
        self.queue(pipe, msg, tally, token_windows, reservation)
        queue_violations(pipe, tally.org_id, violations)
        await pipe.execute()

    async def of_org(self, org: str) -> dict[str, int]:
        raw = cast(dict[str, str], await self.redis.hgetall(keys.org_usage(org)))
        return {k: int(v) for k, v in raw.items()}

    async def sizes(self, names: Sequence[str]) -> list[int]:
        """Fields per bucket hash (what reading them would cost), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hlen(name)
        return [int(n) for n in await pipe.execute()]

    async def read(self, names: Sequence[str]) -> list[dict[str, str]]:
        """The fields of each bucket hash, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        return cast(list[dict[str, str]], await pipe.execute())

    async def read_user(self, names: Sequence[str], user_id: str) -> list[dict[str, str]]:
        """One user's fields of each bucket hash: Redis walks each hash (HSCAN MATCH), only
        the user's fields travel; a round trip per SCAN_COUNT fields of the largest."""
        pattern = user_fields_pattern(user_id)
        found: list[dict[str, str]] = [{} for _ in names]
        cursors = {i: 0 for i in range(len(names))}
        while cursors:
            pipe = self.redis.pipeline(transaction=False)
            for i, cursor in cursors.items():
                pipe.hscan(names[i], cursor, match=pattern, count=SCAN_COUNT)
            replies = await pipe.execute()
            for (i, _), (cursor, fields) in zip(list(cursors.items()), replies, strict=True):
                found[i].update(cast(dict[str, str], fields))
                if int(cursor) == 0:
                    del cursors[i]
                else:
                    cursors[i] = int(cursor)
        return found

    async def orgs(self, limit: int) -> list[str]:
        """Orgs with recorded usage, at most `limit` (+1 tells the caller there are more)."""
        cursor, found = 0, set[str]()
        while True:
            cursor, batch = await self.redis.sscan(keys.USAGE_ORGS, cursor, count=1000)
            found.update(cast(list[str], batch))
            if cursor == 0 or len(found) > limit:
                return sorted(found)[: limit + 1]
