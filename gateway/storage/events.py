"""What the gateway remembers happened: each org's audit trail and its policy violations,
both capped Redis streams whose ids carry the time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.batch import batch

VIOLATIONS_MAXLEN = 100_000

# (org, fields, maxlen): an audit event for a write's own pipeline
QueuedEvent = tuple[str, dict[str, str], int]


def queue_event(pipe: Any, org: str, fields: dict[str, str], maxlen: int) -> None:
    pipe.xadd(keys.events(org), fields, maxlen=maxlen, approximate=True)


def queue_violations(pipe: Any, org_id: str, records: Sequence[dict[str, Any]]) -> None:
    counts = keys.violation_counts(org_id)
    for r in records:
        pipe.xadd(
            keys.violations(org_id),
            {"v": json.dumps(r, separators=(",", ":"))},
            maxlen=VIOLATIONS_MAXLEN,
            approximate=True,
        )
        pipe.hincrby(counts, f"policy:{r['policy_id']}", 1)
        if r.get("user_id"):
            pipe.hincrby(counts, f"user:{r['user_id']}", 1)


class Events:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis

    # -- the audit trail -----------------------------------------------------------------

    async def append(self, org: str, fields: dict[str, str], maxlen: int) -> str:
        """One audit event on the org's capped stream; the stream id carries the time."""
        stream_id = await self.redis.xadd(keys.events(org), fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]  # dict is invariant
        return cast(str, stream_id)

    async def append_many(self, events: Sequence[QueuedEvent]) -> None:
        """Audit events in one round trip."""
        pipe = batch(self.redis)
        for org, fields, maxlen in events:
            queue_event(pipe, org, fields, maxlen)
        await pipe.execute()

    async def read(
        self, org: str, *, newest: str = "+", oldest: str = "-", count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Newest first, between two stream ids (a leading "(" excludes that id)."""
        rows = await self.redis.xrevrange(keys.events(org), newest, oldest, count=count)
        return cast(list[tuple[str, dict[str, str]]], rows)

    # -- policy violations ---------------------------------------------------------------

    async def record_violations(self, org_id: str, records: list[dict[str, Any]]) -> None:
        if records:
            pipe = batch(self.redis)
            queue_violations(pipe, org_id, records)
            await pipe.execute()

    async def violations(
        self, org_id: str, *, since_ms: int | None, until_ms: int | None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Newest first, within the time range (stream ids are times)."""
        hi = "+" if until_ms is None else str(until_ms)
        lo = "-" if since_ms is None else str(since_ms)
        rows = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrevrange(keys.violations(org_id), hi, lo, count=limit),
        )
        return [json.loads(fields["v"]) for _, fields in rows]

    async def violation_counts(self, org_id: str) -> dict[str, int]:
        raw = cast(dict[str, str], await self.redis.hgetall(keys.violation_counts(org_id)))
        return {k: int(v) for k, v in raw.items()}
