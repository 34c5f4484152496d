"""Retrying an operation with growing waits: the one loop behind every retry of the gateway
(final writes while Redis is away, webhook deliveries, a provider retried before its first
token)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of `first`, then each `factor` times the last (or `step` more, when factor is
    None), never above `cap`; with `jitter`, each wait is scaled by a random 0.5-1.5."""

    first: float
    factor: float | None = 2.0
    step: float = 0.0
    cap: float = float("inf")
    jitter: bool = False

    def delay(self, attempt: int, *, asked: float | None = None) -> float:
        """The wait after the attempt-th failure (from 1); `asked`, a wait the other side
        named (Retry-After), replaces the computed one, capped and jittered the same way."""
        if asked:
            base = asked
        elif self.factor is None:
            base = self.first + self.step * (attempt - 1)
        else:
            base = self.first * self.factor ** (attempt - 1)
        wait = min(base, self.cap)
        return wait * (0.5 + random.random()) if self.jitter else wait

    def delays(self) -> Iterator[float]:
        attempt = 0
        while True:
            attempt += 1
            yield self.delay(attempt)

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        retry_on: tuple[type[BaseException], ...],
        deadline: float | None = None,
        attempts: int | None = None,
        on_error: Callable[[int, Exception], None] | None = None,
    ) -> T:
        """op() until it returns. After an error of `retry_on`, on_error(attempt, error),
        then the next wait; the error is raised instead when that wait would end past
        `deadline` (time.monotonic()) or `attempts` have been made."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await op()
            except retry_on as exc:
                if on_error is not None and isinstance(exc, Exception):
                    on_error(attempt, exc)
                wait = self.delay(attempt)
                out_of_time = deadline is not None and time.monotonic() + wait > deadline
                if out_of_time or (attempts is not None and attempt >= attempts):
                    raise
                await asyncio.sleep(wait)
