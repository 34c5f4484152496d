"""Rate limits and token budgets per user and per org, shared by every worker and replica
through Redis; the `[limits]` table of the config file sets them (none set: no Redis call).

Windows are fixed and UTC: the minute (epoch seconds // 60), the day and the calendar month.
`RateLimits.admit()` runs one Lua script per prompt, once the request is valid and before
the pre-policy, anything stored or anything sent upstream (so a blocked prompt, a 409 busy
or a 502 still counts: a limited caller cannot make the gateway write). The script reads
every window that applies; only when none is full does it count the prompt in the request
windows and reserve an estimate of its tokens in the token windows: the prompt's input
(estimated from its text) plus its output bound (the request's or the model's max output
tokens, else OUTPUT_RESERVE). Concurrent prompts see each other's reservations, so twenty at
once cannot all pass a budget that one of them could use up. The turn's end settles the
reservation against the tokens it used (input + output, as recorded) in the end-of-turn
round trip (gateway/storage/usage.py); a prompt that goes no further (blocked, busy, a bad
request after admission) gives it back. A budget may still be overshot by one turn's own
size (a prompt is admitted while its windows are below their limits), and the next prompt
is refused until the window resets.

Keys, all under the org's hash tag (one slot per org, ready for Redis Cluster):

    gw:{o:<org>}:rl:req:min:<epoch minute>:o            prompts of the org in that minute
    gw:{o:<org>}:rl:req:min:<epoch minute>:u:<user>     prompts of one user
    gw:{o:<org>}:rl:tok:<min|day|mon>:<window>:o        tokens (window: epoch minute,
    gw:{o:<org>}:rl:tok:<min|day|mon>:<window>:u:<user>  YYYYMMDD or YYYYMM)

An API key may carry budgets of its own (its `budgets`: requests_per_minute,
tokens_per_minute, tokens_per_day, tokens_per_month), checked by the same script beside the
user's and the org's, in windows of the key (`...:k:<key id>`).

Each key expires a minute after its window ends (EXPIREAT: every writer sets the same
instant). Windows follow each gateway's own clock, so replicas should keep theirs in sync.
The script that checks and counts them is gateway/storage/quotas.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.access.principal import Principal
from gateway.errors import RateLimited
from gateway.settings import LimitsConfig, LimitValues
from gateway.storage import keys
from gateway.storage.quotas import Quotas, Reservation

EXPIRY_GRACE = 60  # seconds a window's key outlives the window
OUTPUT_RESERVE = 512  # tokens reserved for the answer of a prompt with no output bound
# config field -> (kind, scope, period); requests first, as the script expects
LIMITS = {
    "user_requests_per_minute": ("requests", "user", "minute"),
    "org_requests_per_minute": ("requests", "org", "minute"),
    "user_tokens_per_minute": ("tokens", "user", "minute"),
    "org_tokens_per_minute": ("tokens", "org", "minute"),
    "user_tokens_per_day": ("tokens", "user", "day"),
    "org_tokens_per_day": ("tokens", "org", "day"),
    "user_tokens_per_month": ("tokens", "user", "month"),
    "org_tokens_per_month": ("tokens", "org", "month"),
}
# an API key's budget -> (kind, period)
KEY_LIMITS = {
    "requests_per_minute": ("requests", "minute"),
    "tokens_per_minute": ("tokens", "minute"),
    "tokens_per_day": ("tokens", "day"),
    "tokens_per_month": ("tokens", "month"),
}


@dataclass(frozen=True, slots=True)
class Window:
    kind: str  # requests | tokens
    scope: str  # user | org | key
    period: str  # minute | day | month
    limit: int
    key: str
    reset_at: int  # epoch seconds when the window ends

    def describe(self) -> str:
        whose = {"user": "your", "key": "this API key's"}.get(self.scope, "your organization's")
        if self.kind == "requests":
            return f"{whose} limit of {self.limit} prompts per {self.period} is reached"
        return f"{whose} budget of {self.limit} tokens per {self.period} is used up"


def window_ids(now: float) -> dict[str, tuple[str, int]]:
    """period -> (window id, epoch second the window ends), for the UTC instant `now`."""
    minute = int(now // 60)
    t = datetime.fromtimestamp(now, UTC)
    day_start = datetime(t.year, t.month, t.day, tzinfo=UTC)
    next_month = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=UTC)
    return {
        "minute": (f"min:{minute}", (minute + 1) * 60),
        "day": (f"day:{t:%Y%m%d}", int(day_start.timestamp()) + 86_400),
        "month": (f"mon:{t:%Y%m}", int(next_month.timestamp())),
    }


def headers_for(window: Window, used: int, now: float) -> dict[str, str]:
    """X-RateLimit-Reset is in seconds from now (like Retry-After), not an epoch instant:
    it does not depend on the client's clock."""
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(max(0, window.limit - used)),
        "X-RateLimit-Reset": str(max(1, math.ceil(window.reset_at - now))),
    }


@dataclass(frozen=True, slots=True)
class KeyBudgets:
    """An API key's own budgets: (budget name, limit) pairs of KEY_LIMITS."""

    key_id: str
    limits: tuple[tuple[str, int], ...]


def key_budgets(principal: Principal) -> KeyBudgets | None:
    """The caller's API key's own budgets, when it has any."""
    if principal.key_id is None or not principal.budgets:
        return None
    return KeyBudgets(principal.key_id, principal.budgets)


class RateLimits:
    def __init__(self, config: LimitsConfig, quotas: Quotas) -> None:
        self.config = config
        self._quotas = quotas
        # none set, and no key with budgets: no Redis call at all
        self.quotas = quotas if config.any_set() else None
        self._per_org: dict[str, LimitValues] = {}

    def _values(self, org_id: str) -> LimitValues:
        values = self._per_org.get(org_id)
        if values is None:
            values = self._per_org[org_id] = self.config.for_org(org_id)
        return values

    def windows(
        self,
        org_id: str,
        user_id: str,
        now: float,
        *,
        kind: str | None = None,
        key: KeyBudgets | None = None,
    ) -> list[Window]:
        """The windows that apply to one prompt of `user_id` in `org_id` (and of the API key
        with budgets); requests first."""
        ids = window_ids(now)
        found = []
        if self.quotas is not None:
            values = self._values(org_id)
            for name, (k, scope, period) in LIMITS.items():
                limit = getattr(values, name)
                if limit is None or (kind is not None and k != kind):
                    continue
                window_id, reset_at = ids[period]
                key_name = keys.rate_window(org_id, k, window_id, scope, user_id)
                found.append(Window(k, scope, period, limit, key_name, reset_at))
        if key is not None:
            for name, limit in key.limits:
                k, period = KEY_LIMITS[name]
                if kind is not None and k != kind:
                    continue
                window_id, reset_at = ids[period]
                key_name = keys.rate_window(org_id, k, window_id, "key", key.key_id)
                found.append(Window(k, "key", period, limit, key_name, reset_at))
        return sorted(found, key=lambda w: w.kind != "requests")  # stable: requests first

    def counts(self, key: KeyBudgets | None = None) -> bool:
        """Whether admit() may count a prompt (with that API key) anywhere, and so call Redis;
        False: it lets every prompt through at once, with no effect."""
        return self.quotas is not None or key is not None

    def counts_tokens(self, org_id: str, key: KeyBudgets | None = None) -> bool:
        """Whether a prompt in `org_id` (with that API key) has token windows, and so a
        reservation to make."""
        if key is not None and any(KEY_LIMITS[n][0] == "tokens" for n, _ in key.limits):
            return True
        if self.quotas is None:
            return False
        values = self._values(org_id)
        return any(
            getattr(values, n) is not None for n, (k, _, _) in LIMITS.items() if k == "tokens"
        )

    async def admit(
        self, org_id: str, user_id: str, key: KeyBudgets | None = None, *, reserve: int = 0
    ) -> Admitted:
        """Count one prompt and reserve `reserve` tokens in its token windows (the user's,
        the org's and the API key's), or raise RateLimited (429) naming the limit that is
        full. The X-RateLimit-* headers are those of the tightest window (request windows
        first)."""
        if not self.counts(key):
            return NOT_COUNTED
        now = time.time()
        windows = self.windows(org_id, user_id, now, key=key)
        if not windows:
            return NOT_COUNTED
        n_requests = sum(1 for w in windows if w.kind == "requests")
        keyed = [(w.key, w.limit, w.reset_at + EXPIRY_GRACE) for w in windows]
        admission = await self._quotas.admit(
            keyed[:n_requests], keyed[n_requests:], reserve=reserve
        )
        used = admission.used
        if not admission.admitted:
            raise refusal(windows, used, now)
        pairs = list(zip(windows, used, strict=True))
        if n_requests:
            window, count = min(pairs[:n_requests], key=lambda p: p[0].limit - p[1])
        else:
            window, count = min(pairs, key=lambda p: (p[0].limit - p[1]) / p[0].limit)
        held = tuple(w.key for w in windows[n_requests:])
        reservation = Reservation(held, reserve) if held and reserve else None
        return Admitted(headers_for(window, count, now), reservation)

    async def release(self, reservation: Reservation | None) -> None:
        # a key's own budgets hold reservations even when no [limits] are set
        if reservation is not None:
            await self._quotas.release(reservation)

    def token_windows(
        self, org_id: str, user_id: str, key: KeyBudgets | None = None
    ) -> list[tuple[str, int]]:
        """(key, EXPIREAT instant) of each token window a finished turn adds its tokens to."""
        if not self.counts(key):
            return []
        return [
            (w.key, w.reset_at + EXPIRY_GRACE)
            for w in self.windows(org_id, user_id, time.time(), kind="tokens", key=key)
        ]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A prompt the limits let through: its X-RateLimit-* headers (none when no window
    applies, and so no Redis call was made) and the tokens it holds until its end."""

    headers: dict[str, str]
    reservation: Reservation | None = None


NOT_COUNTED = Admitted({})


def refusal(windows: list[Window], used: list[int], now: float) -> RateLimited:
    """The 429 for the full window that frees up last (waiting for it clears them all)."""
    full = [(w, u) for w, u in zip(windows, used, strict=True) if u >= w.limit]
    window, count = max(full, key=lambda p: p[0].reset_at)
    headers = headers_for(window, count, now)
    retry = headers["X-RateLimit-Reset"]
    return RateLimited(
        f"{window.describe()}; retry in {retry} s",
        code="rate_limited" if window.kind == "requests" else "token_budget_exceeded",
        headers={"Retry-After": retry, **headers},
    )
