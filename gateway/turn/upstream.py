"""Opening the provider's stream: the upstream accepts, or the model's fallbacks are tried,
or it is an HTTP error (nothing has been sent to the client yet). A failure after the
upstream accepted but before any text reached the client is retried once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from gateway.backoff import Backoff
from gateway.errors import GatewayError, RateLimited, UpstreamFailed
from gateway.models.connections import Connections
from gateway.observability import Metrics
from gateway.settings import ModelConfig, Settings
from gateway.turn.events import ErrorEvent
from gateway.turn.record import Recorder
from gateway.turn.turn import Turn
from providers.base import ChatRequest, Opened, Provider, ProviderError, ProviderEvent

RETRY_BEFORE_FIRST_TOKEN = 1  # our own retries of a failure after Opened but before any text
REOPEN = Backoff(first=0.5, factor=2.0, cap=5.0, jitter=True)


def http_error_for(exc: ProviderError) -> Exception:
    """How an upstream refusal before any byte was sent reaches the client."""
    if exc.kind == "auth":
        return UpstreamFailed(
            f"the provider refused the gateway's credentials: {exc.message}", code="provider_auth"
        )
    if exc.kind == "rate_limit":
        retry = max(1, round(exc.retry_after or 1))
        return RateLimited(
            f"the provider is rate limiting: {exc.message}",
            code="provider_rate_limited",
            headers={"Retry-After": str(retry)},
        )
    return UpstreamFailed(f"the provider failed: {exc.message}", code="provider_error")


class Upstream:
    def __init__(
        self,
        settings: Settings,
        connections: Connections,
        metrics: Metrics,
        recorder: Recorder,
    ) -> None:
        self.settings = settings
        self.connections = connections
        self.metrics = metrics
        self.recorder = recorder

    async def _candidates(self, turn: Turn) -> list[tuple[ModelConfig, Provider]]:
        """The turn's model, then each of its fallbacks that is served to the turn's org
        and has a credential there (the conversation's repository key, as for the model)."""
        found: list[tuple[ModelConfig, Provider]] = [(turn.model, turn.provider)]
        repo_id = turn.conversation.repo_id if turn.conversation else None
        for fallback in turn.model.fallbacks:
            entry = await self.connections.model(fallback, turn.org_id)
            if entry is None:
                continue
            try:
                provider = await self.connections.provider(entry, turn.org_id, repo_id)
            except GatewayError:
                continue
            self.connections.hold(turn, provider)
            found.append((entry.config, provider))
        return found

    async def open(self, turn: Turn) -> None:
        if turn.stream is not None:
            return
        candidates = await self._candidates(turn)
        failure: ProviderError | None = None
        for model, provider in candidates:
            try:
                turn.stream = await connect(
                    provider, replace(turn.request, model=model.upstream_model)
                )
            except ProviderError as exc:
                self.metrics.provider_errors.labels(model.id, exc.kind).inc()
                failure = exc
                continue
            turn.answering = model
            turn.answering_provider = provider
            return
        assert failure is not None
        await self.recorder.record(
            turn, None, "", None, "error", ErrorEvent("provider_error", failure.message)
        )
        raise http_error_for(failure)

    async def reopen(self, turn: Turn, exc: ProviderError, attempt: int) -> bool:
        """A failure after Opened but before any text reached the client: retry once
        with backoff and jitter (honouring Retry-After), so nothing is ever duplicated."""
        if attempt > RETRY_BEFORE_FIRST_TOKEN or not exc.retryable:
            return False
        await asyncio.sleep(REOPEN.delay(attempt, asked=exc.retry_after))
        model = turn.answering or turn.model
        await close(turn.stream)
        turn.stream = None
        provider = turn.answering_provider or turn.provider
        try:
            turn.stream = await connect(provider, replace(turn.request, model=model.upstream_model))
        except ProviderError:
            return False
        return True


async def connect(provider: Provider, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
    """The provider's stream once the upstream accepted the request (its Opened event);
    closed again on any failure, a cancellation included."""
    stream = provider.stream(request)
    try:
        if type(await anext(stream)) is not Opened:
            raise ProviderError("adapter yielded before Opened", kind="protocol")
    except BaseException:
        await close(stream)
        raise
    return stream


async def close(stream: AsyncIterator[Any] | None) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except (ProviderError, asyncio.CancelledError, RuntimeError):
            pass
