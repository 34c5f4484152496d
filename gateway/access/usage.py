"""What usage a caller may see, and its sums as GET /usage answers them: totals, a time series
of UTC hours, days or months, and the groups of any of org, workspace, repository, user, key
and model, under the conversations' role rules. An org admin (and the platform admin) sees
the org's; a workspace admin what was used in the workspaces they manage, plus their own; a
user their own (only their fields leave Redis: an HSCAN MATCH on the org's buckets).

The buckets are storage/usage.py's. The work of one request is bounded before anything is
summed: the window is cut to what the buckets retain, at most MAX_HASHES bucket hashes are
read and at most MAX_ROWS fields summed (HLEN first: a request that would read more is
refused with 400, saying how to narrow it); a user's request walks those fields in Redis and
brings back only their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.access.principal import Principal
from gateway.errors import ValidationFailed
from gateway.storage import keys
from gateway.storage.records import usd
from gateway.storage.store import Store
from gateway.storage.usage import (
    MAX_BUCKETS,
    RETENTION,
    Ids,
    bucket_start,
    buckets_between,
    parse_ids,
)

DIMENSIONS = ("org", "workspace", "repository", "user", "key", "model")
GRAINS = {"hour": "h", "day": "d", "month": "m"}
DEFAULT_SPAN_MS = {"h": 86_400_000, "d": 30 * 86_400_000, "m": 366 * 86_400_000}
BUCKET_SLACK_MS = {"h": 3_600_000, "d": 86_400_000, "m": 31 * 86_400_000}
MAX_ORGS = 200  # orgs one request of the platform admin may span without naming one
MAX_HASHES = 5_000
MAX_ROWS = 200_000  # fields summed here
MAX_WALKED = 2_000_000  # fields Redis walks for a user's own usage (their rows only come back)
MAX_POINTS = 20_000  # series points (buckets x groups) one answer may hold
SUMMING_AT_ONCE = 2
MAX_GROUP_BY_CHARS = 100
READ_CHUNK = 20_000  # fields per round trip: parsing one costs the event loop ~15 ms

Sums = list[int]  # input tokens, output tokens, cost (nano-USD), requests


def parse_group_by(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    if len(raw) > MAX_GROUP_BY_CHARS:
        raise ValidationFailed(f"group_by: at most {MAX_GROUP_BY_CHARS} characters")
    dims = tuple(d.strip() for d in raw.split(","))
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValidationFailed(
            f"group_by: {unknown[0][:40]!r} is not one of {', '.join(DIMENSIONS)}"
        )
    if len(set(dims)) != len(dims):
        raise ValidationFailed("group_by: a dimension is named twice")
    return dims


@dataclass(frozen=True, slots=True)
class Window:
    grain: str
    since_ms: int
    until_ms: int

    @classmethod
    def of(cls, grain: str, since_ms: int | None, until_ms: int | None, now_ms: int) -> Window:
        """The asked window (default: the last day, 30 days or year), cut to now and to
        what the buckets still hold; so its work is bounded whatever it asks."""
        until = min(until_ms if until_ms is not None else now_ms, now_ms)
        since = since_ms if since_ms is not None else until - DEFAULT_SPAN_MS[grain]
        earliest = now_ms - RETENTION[grain] * 1000 - BUCKET_SLACK_MS[grain]
        return cls(grain, max(since, earliest), until)

    def buckets(self) -> list[str]:
        if self.since_ms > self.until_ms:
            return []
        found = list(buckets_between(self.grain, self.since_ms, self.until_ms))
        return found[-MAX_BUCKETS[self.grain] :]


_DIM = {"workspace": 0, "repository": 1, "user": 2, "key": 3, "model": 4}  # in Ids


def _rule(caller: Principal) -> Callable[[Ids], bool] | None:
    """Which fields of the org's buckets the caller sees (None: all of them)."""
    if caller.role in ("admin", "org_admin"):
        return None
    if caller.role == "workspace_admin":
        managed, me = caller.managed_workspaces, caller.user_id
        return lambda ids: ids[0] in managed or ids[2] == me
    me = caller.user_id
    return lambda ids: ids[2] == me


class TooManyPoints(Exception):
    pass


_UNSEEN = object()


class Summer:
    """The sums of one request, field by field. A field name recurs in every bucket, so
    what it means (visible? which group?) is worked out once per org and name; the rest is
    a split and four additions. CPU only: answer() runs it in a thread, a chunk at a time."""

    def __init__(self, rule: Callable[[Ids], bool] | None, group_by: tuple[str, ...]) -> None:
        self.rule = rule
        self.group_by = group_by
        self.series: dict[tuple[str, tuple[str, ...]], Sums] = {}
        self._meanings: dict[str, dict[str, Any]] = {}  # org -> name -> group key | None

    def _meaning(self, org: str, name: str) -> tuple[str, ...] | None:
        ids = parse_ids(name)
        if ids is None or (self.rule is not None and not self.rule(ids)):
            return None
        return tuple(org if d == "org" else ids[_DIM[d]] for d in self.group_by)

    def add(self, org: str, bucket: str, fields: dict[str, str]) -> None:
        meanings = self._meanings.setdefault(org, {})
        series = self.series
        for name, value in fields.items():
            group = meanings.get(name, _UNSEEN)
            if group is _UNSEEN:
                group = meanings[name] = self._meaning(org, name)
            if group is None:
                continue
            parts = value.split(",")
            if len(parts) != 4:
                continue
            key = (bucket, group)
            sums = series.get(key)
            if sums is None:
                if len(series) >= MAX_POINTS:
                    raise TooManyPoints
                series[key] = [int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])]
            else:
                sums[0] += int(parts[0])
                sums[1] += int(parts[1])
                sums[2] += int(parts[2])
                sums[3] += int(parts[3])

    def groups(self) -> dict[tuple[str, ...], Sums]:
        found: dict[tuple[str, ...], Sums] = {}
        for (_, group), sums in self.series.items():
            into = found.setdefault(group, [0, 0, 0, 0])
            for i in range(4):
                into[i] += sums[i]
        return found


def sums_json(sums: Sums) -> dict[str, Any]:
    return {
        "input_tokens": sums[0],
        "output_tokens": sums[1],
        "cost": usd(sums[2]),
        "cost_nusd": sums[2],
        "requests": sums[3],
    }


def _iso(grain: str, bucket: str) -> str:
    return bucket_start(grain, bucket).strftime("%Y-%m-%dT%H:%M:%SZ")


class UsageView:
    def __init__(self, store: Store) -> None:
        self.store = store
        # requests summing at once on this worker: each holds up to MAX_ROWS fields
        self._summing = asyncio.Semaphore(SUMMING_AT_ONCE)

    async def orgs_for(self, caller: Principal, org: str | None) -> list[str]:
        """The orgs a request spans: the one named (or the caller's); the platform admin,
        naming none, every org with usage (at most MAX_ORGS)."""
        if org is not None:
            caller.check_org(org)
            return [org]
        if caller.org_id is not None:
            return [caller.org_id]
        found = await self.store.usage.orgs(MAX_ORGS)
        if len(found) > MAX_ORGS:
            raise ValidationFailed(f"more than {MAX_ORGS} orgs have usage: name one with org_id")
        return found

    def _hashes(self, orgs: list[str], window: Window) -> list[tuple[str, str, str]]:
        """(org, bucket, hash name) of every bucket hash to read."""
        buckets = window.buckets()
        return [(o, b, keys.usage_bucket(o, window.grain, b)) for o in orgs for b in buckets]

    async def answer(
        self, caller: Principal, orgs: list[str], window: Window, group_by: tuple[str, ...]
    ) -> dict[str, Any]:
        hashes = self._hashes(orgs, window)
        if len(hashes) > MAX_HASHES:
            raise ValidationFailed(
                f"the window spans {len(hashes)} buckets (at most {MAX_HASHES}): "
                "use a coarser bucket, a shorter window or one org_id"
            )
        own = caller.role == "user"  # walked in Redis, only the user's rows come back
        limit = MAX_WALKED if own else MAX_ROWS
        sizes = await self.store.usage.sizes([h for _, _, h in hashes]) if hashes else []
        rows = sum(sizes)
        if rows > limit:
            raise ValidationFailed(
                f"the window holds {rows} usage rows (at most {limit} per request): "
                "use a coarser bucket, a shorter window or one org_id"
            )
        summer = Summer(_rule(caller), group_by)
        async with self._summing:
            for chunk in _chunks(hashes, sizes):
                names = [h for _, _, h in chunk]
                found = await (
                    self.store.usage.read_user(names, caller.user_id)
                    if own
                    else self.store.usage.read(names)
                )
                try:
                    await asyncio.to_thread(_add_chunk, summer, chunk, found)
                except TooManyPoints:
                    raise ValidationFailed(
                        f"more than {MAX_POINTS} points (buckets x groups): group by fewer "
                        "dimensions, or use a coarser bucket or a shorter window"
                    ) from None
        groups = summer.groups()
        total = [sum(s[i] for s in groups.values()) for i in range(4)]
        return {
            "totals": sums_json(total),
            "series": [
                {
                    "bucket": _iso(window.grain, bucket),
                    "group": dict(zip(group_by, group, strict=True)),
                    **sums_json(sums),
                }
                for (bucket, group), sums in sorted(summer.series.items())
            ],
            # the groups over the whole window, the costliest first (then the most tokens)
            "groups": [
                {"group": dict(zip(group_by, group, strict=True)), **sums_json(sums)}
                for group, sums in sorted(groups.items(), key=_costliest)
            ],
        }


def _chunks(
    hashes: list[tuple[str, str, str]], sizes: list[int]
) -> list[list[tuple[str, str, str]]]:
    """The hashes in runs of about READ_CHUNK fields (a big one alone), so no one reply
    keeps the event loop parsing for long."""
    runs: list[list[tuple[str, str, str]]] = []
    run: list[tuple[str, str, str]] = []
    fields = 0
    for item, size in zip(hashes, sizes, strict=True):
        if run and fields + size > READ_CHUNK:
            runs.append(run)
            run, fields = [], 0
        run.append(item)
        fields += size
    if run:
        runs.append(run)
    return runs


def _add_chunk(
    summer: Summer, chunk: list[tuple[str, str, str]], found: list[dict[str, str]]
) -> None:
    for (org, bucket, _), fields in zip(chunk, found, strict=True):
        summer.add(org, bucket, fields)


def _costliest(item: tuple[tuple[str, ...], Sums]) -> tuple[int, int, tuple[str, ...]]:
    group, sums = item
    return -sums[2], -(sums[0] + sums[1]), group
