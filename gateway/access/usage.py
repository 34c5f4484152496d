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

from collections.abc import Callable, Sequence
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
    Row,
    bucket_start,
    buckets_between,
    parse_ids,
    parse_row,
)

DIMENSIONS = ("org", "workspace", "repository", "user", "key", "model")
GRAINS = {"hour": "h", "day": "d", "month": "m"}
DEFAULT_SPAN_MS = {"h": 86_400_000, "d": 30 * 86_400_000, "m": 366 * 86_400_000}
BUCKET_SLACK_MS = {"h": 3_600_000, "d": 86_400_000, "m": 31 * 86_400_000}
MAX_ORGS = 200  # orgs one request of the platform admin may span without naming one
MAX_HASHES = 5_000
MAX_ROWS = 200_000  # fields summed here
MAX_WALKED = 2_000_000  # fields Redis walks for a user's own usage (their rows only come back)
MAX_GROUP_BY_CHARS = 100
READ_CHUNK = 200  # bucket hashes per round trip

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


def parse_bucket(raw: str | None) -> str:
    grain = GRAINS.get(raw or "day")
    if grain is None:
        raise ValidationFailed("bucket: hour, day or month")
    return grain


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


def _rule(caller: Principal) -> Callable[[Row], bool] | None:
    """Which rows of the org's buckets the caller sees (None: all of them)."""
    if caller.role in ("admin", "org_admin"):
        return None
    if caller.role == "workspace_admin":
        managed, me = caller.managed_workspaces, caller.user_id
        return lambda r: r.workspace_id in managed or r.user_id == me
    me = caller.user_id
    return lambda r: r.user_id == me


def _group(row: Row, org: str, dims: Sequence[str]) -> tuple[str, ...]:
    values = {
        "org": org,
        "workspace": row.workspace_id,
        "repository": row.repo_id,
        "user": row.user_id,
        "key": row.key_id,
        "model": row.model_id,
    }
    return tuple(values[d] for d in dims)


def _add(into: dict[Any, Sums], key: Any, row: Row) -> None:
    sums = into.get(key)
    if sums is None:
        into[key] = [row.input_tokens, row.output_tokens, row.cost_nusd, row.requests]
    else:
        sums[0] += row.input_tokens
        sums[1] += row.output_tokens
        sums[2] += row.cost_nusd
        sums[3] += row.requests


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
        rows = sum(await self.store.usage.sizes([h for _, _, h in hashes])) if hashes else 0
        if rows > limit:
            raise ValidationFailed(
                f"the window holds {rows} usage rows (at most {limit} per request): "
                "use a coarser bucket, a shorter window or one org_id"
            )
        rule = _rule(caller)
        series: dict[tuple[str, tuple[str, ...]], Sums] = {}
        groups: dict[tuple[str, ...], Sums] = {}
        total: dict[int, Sums] = {}
        names: dict[str, Ids | None] = {}  # a field name recurs in every bucket: parse it once
        for start in range(0, len(hashes), READ_CHUNK):
            chunk = hashes[start : start + READ_CHUNK]
            names_ = [h for _, _, h in chunk]
            found = await (
                self.store.usage.read_user(names_, caller.user_id)
                if own
                else self.store.usage.read(names_)
            )
            for (org, bucket, _), fields in zip(chunk, found, strict=True):
                for name, value in fields.items():
                    if name not in names:
                        names[name] = parse_ids(name)
                    ids = names[name]
                    row = parse_row(name, value, ids) if ids is not None else None
                    if row is None or (rule is not None and not rule(row)):
                        continue
                    group = _group(row, org, group_by)
                    _add(series, (bucket, group), row)
                    _add(groups, group, row)
                    _add(total, 0, row)
        return {
            "totals": sums_json(total.get(0, [0, 0, 0, 0])),
            "series": [
                {
                    "bucket": _iso(window.grain, bucket),
                    "group": dict(zip(group_by, group, strict=True)),
                    **sums_json(sums),
                }
                for (bucket, group), sums in sorted(series.items())
            ],
            # the groups over the whole window, the costliest first (then the most tokens)
            "groups": [
                {"group": dict(zip(group_by, group, strict=True)), **sums_json(sums)}
                for group, sums in sorted(groups.items(), key=_costliest)
            ],
        }


def _costliest(item: tuple[tuple[str, ...], Sums]) -> tuple[int, int, tuple[str, ...]]:
    group, sums = item
    return -sums[2], -(sums[0] + sums[1]), group
