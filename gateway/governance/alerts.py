"""Alerts of `alert` policies: a message on the gw:alerts channel and a POST to each of the
policy's webhooks, in the background (a stream is never delayed by a webhook), with bounded
retries."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from gateway.backoff import Backoff
from gateway.storage import keys
from gateway.storage.pubsub import PubSub

log = logging.getLogger("gateway.policy")

WEBHOOK_ATTEMPTS = 3
WEBHOOK_RETRY = Backoff(first=0.4, factor=2.0)
WEBHOOK_TIMEOUT = 5.0


class _Retryable(Exception):
    """A webhook answer worth retrying (5xx, 429)."""


class Alerts:
    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, record: dict[str, Any], webhooks: tuple[str, ...]) -> None:
        task = asyncio.create_task(self._deliver(record, webhooks))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _deliver(self, record: dict[str, Any], webhooks: tuple[str, ...]) -> None:
        body = json.dumps({"type": "policy_violation", **record})
        try:
            await self.pubsub.publish(keys.ALERT_CHANNEL, body)
        except Exception as exc:
            log.warning("alert publish failed: %s", type(exc).__name__)
        for url in webhooks:
            await self._post(url, body)

    async def _post(self, url: str, body: str) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT)
        http = self._http

        async def attempt() -> None:
            r = await http.post(url, content=body, headers={"Content-Type": "application/json"})
            if r.status_code >= 500 or r.status_code == 429:
                raise _Retryable(f"answered {r.status_code}")
            if r.status_code >= 400:
                log.warning("alert webhook %s answered %d", url, r.status_code)

        def failed(n: int, exc: Exception) -> None:
            log.warning("alert webhook %s failed (%s), attempt %d", url, exc, n)

        try:
            await WEBHOOK_RETRY.run(
                attempt,
                retry_on=(httpx.HTTPError, _Retryable),
                attempts=WEBHOOK_ATTEMPTS,
                on_error=failed,
            )
        except (httpx.HTTPError, _Retryable):
            log.error("alert webhook %s gave up after %d attempts", url, WEBHOOK_ATTEMPTS)
