"""Failed authentications per client address: a small budget in each worker's memory, so an
address that keeps presenting bad tokens is answered 429 before its next token is looked at
(no signature check, no Redis lookup of an unknown key).

The budget is GCRA (a leaky bucket kept as one number per address): `per_minute` failures
back to back, then one more every 60/per_minute seconds. IPv6 addresses share the budget of
their /64, the block one subscriber is usually given. The table is bounded; when it is full
the address that failed longest ago is forgotten first.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable

MAX_ADDRESSES = 10_000  # per worker: ~1.5 MB at most


def address_key(host: str) -> str:
    """The budget an address draws on: itself, or its /64 for IPv6."""
    if ":" not in host:
        return host
    try:
        net = ipaddress.IPv6Network((host, 64), strict=False)
    except ValueError:
        return host
    return str(net.network_address)


class FailureThrottle:
    def __init__(
        self,
        per_minute: int,
        *,
        capacity: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = per_minute > 0
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.tolerance = self.interval * (per_minute - 1) if per_minute else 0.0
        self.capacity = capacity
        self.clock = clock
        self._due: dict[str, float] = {}  # address -> when its debt is paid off

    def retry_after(self, host: str) -> int | None:
        """Whole seconds until `host` may try again, or None while it may try now."""
        if not self._due:  # the usual case: nobody failed lately, one truthiness test
            return None
        key = address_key(host)
        due = self._due.get(key)
        if due is None:
            return None
        now = self.clock()
        if due <= now:  # paid off: forget it, and the table empties again
            del self._due[key]
            return None
        wait = due - self.tolerance - now
        return math.ceil(wait) if wait > 0 else None

    def failed(self, host: str) -> None:
        if not self.enabled:
            return
        now = self.clock()
        key = address_key(host)
        due = self._due.pop(key, now)  # re-inserted last: the dict's order is recency
        self._due[key] = max(due, now) + self.interval
        if len(self._due) > self.capacity:  # O(1): the first is the one that failed longest ago
            del self._due[next(iter(self._due))]
