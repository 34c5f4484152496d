"""Alerts of `alert` policies: a message on the gw:alerts channel and a POST to each of the
policy's webhooks, in the background (a stream is never delayed by a webhook), with bounded
retries. A webhook goes only where gateway/governance/webhooks.py allows, to the address it
checked, and its answer is never read beyond the status line."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from gateway.backoff import Backoff
from gateway.governance.webhooks import WebhookPolicy, WebhookRefused
from gateway.storage import keys
from gateway.storage.pubsub import PubSub

log = logging.getLogger("gateway.policy")

WEBHOOK_ATTEMPTS = 3
WEBHOOK_RETRY = Backoff(first=0.4, factor=2.0)
WEBHOOK_TIMEOUT = 5.0  # one attempt, DNS and a slow answer included
MAX_PENDING = 1000  # alerts waiting for delivery on this worker; beyond, dropped and logged
MAX_CONCURRENT = 32  # webhook POSTs at once


class _Retryable(Exception):
    """A webhook answer worth retrying (5xx, 429)."""


class Alerts:
    def __init__(self, pubsub: PubSub, webhooks: WebhookPolicy | None = None) -> None:
        self.pubsub = pubsub
        self.webhooks = webhooks or WebhookPolicy()
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._posting = asyncio.Semaphore(MAX_CONCURRENT)

    def send(self, record: dict[str, Any], webhooks: tuple[str, ...]) -> None:
        if len(self._tasks) >= MAX_PENDING:
            log.error(
                "alert of policy %s dropped: %d alerts wait",
                record.get("policy_id"),
                len(self._tasks),
            )
            return
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
            # no proxy from the environment (it would resolve the name itself, after our
            # check) and no redirects (a 3xx could point anywhere)
            self._http = httpx.AsyncClient(
                timeout=WEBHOOK_TIMEOUT, trust_env=False, follow_redirects=False
            )
        http = self._http

        async def attempt() -> None:
            async with self._posting, asyncio.timeout(WEBHOOK_TIMEOUT):
                target = await self.webhooks.resolve(url)  # checked again, at every attempt
                request = http.build_request(
                    "POST",
                    target.url,
                    content=body,
                    headers={"Content-Type": "application/json", "Host": target.host_header},
                    extensions={"sni_hostname": target.tls_name} if target.tls_name else {},
                )
                r = await http.send(request, stream=True)
                await r.aclose()  # the status is all we need; a huge answer is never read
            if r.status_code >= 500 or r.status_code == 429:
                raise _Retryable(f"answered {r.status_code}")
            if r.status_code >= 300:
                log.warning("alert webhook %s answered %d (not followed)", url, r.status_code)

        def failed(n: int, exc: Exception) -> None:
            log.warning("alert webhook %s failed (%s), attempt %d", url, exc, n)

        try:
            await WEBHOOK_RETRY.run(
                attempt,
                retry_on=(httpx.HTTPError, _Retryable, TimeoutError),
                attempts=WEBHOOK_ATTEMPTS,
                on_error=failed,
            )
        except WebhookRefused as exc:
            log.error("alert webhook %s refused: %s", url, exc)
        except (httpx.HTTPError, _Retryable, TimeoutError):
            log.error("alert webhook %s gave up after %d attempts", url, WEBHOOK_ATTEMPTS)
