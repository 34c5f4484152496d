"""Opening the provider's stream: the upstream accepts, or the model's fallbacks are tried,
or it is an HTTP error (nothing has been sent to the client yet). A failure after the
upstream accepted but before anything reached the client goes to the next fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from gateway.errors import GatewayError, RateLimited, UpstreamFailed
from gateway.models.connections import Connections
from gateway.observability import Metrics
from gateway.settings import ModelConfig, Settings
from gateway.turn.events import ErrorEvent
from gateway.turn.record import Recorder
from gateway.turn.turn import Turn
from providers.base import ChatRequest, Opened, Provider, ProviderError, ProviderEvent, Usage

# The provider's SDK retries a refusal before the first byte (max_retries); the gateway never
# asks the same upstream again, and tells the client's SDK not to retry either.
NO_RETRY = {"x-should-retry": "false"}


def http_error_for(exc: ProviderError) -> GatewayError:
    """How an upstream refusal before any byte was sent reaches the client: a request the
    upstream (or the adapter, for what the model cannot do) refused keeps its 4xx status,
    message, code and parameter; the upstream's own failures are 502 (401/403: the
    gateway's credentials) or 429. The provider's SDK has retried already: the client's
    is told not to (x-should-retry: false, which the OpenAI and Anthropic SDKs obey)."""
    if exc.kind == "bad_request":
        status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 400
        if status in (401, 403, 429):  # statuses that name the gateway's standing, not the request
            status = 400
        return GatewayError(
            exc.message,
            status=status,
            code=exc.code or "provider_bad_request",
            param=(exc.param,) if exc.param else None,
            headers=dict(NO_RETRY),
        )
    if exc.kind == "auth":
        return UpstreamFailed(
            f"the provider refused the gateway's credentials: {exc.message}",
            code="provider_auth",
            headers=dict(NO_RETRY),
        )
    if exc.kind == "rate_limit":
        retry = max(1, round(exc.retry_after or 1))
        return RateLimited(
            f"the provider is rate limiting: {exc.message}",
            code="provider_rate_limited",
            headers={"Retry-After": str(retry), **NO_RETRY},
        )
    return UpstreamFailed(
        f"the provider failed: {exc.message}", code="provider_error", headers=dict(NO_RETRY)
    )


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
        failure: ProviderError | None = None
        for model, provider in await self._candidates(turn):
            try:
                turn.stream = await connect(provider, _for(turn.request, model))
            except ProviderError as exc:
                self.metrics.provider_errors.labels(model.id, exc.kind).inc()
                failure = exc
                if exc.kind == "bad_request":
                    break  # the request is at fault: no other model is asked to mend it
                continue
            turn.answering = model
            turn.answering_provider = provider
            return
        assert failure is not None
        # a refused request generated nothing (the adapter refuses before any call): no
        # tokens count; other failures keep the estimate, as the upstream may bill them
        usage = Usage(0, 0) if failure.kind == "bad_request" else None
        await self.recorder.record(
            turn, None, "", usage, "error", ErrorEvent("provider_error", failure.message)
        )
        raise http_error_for(failure)

    async def reopen(self, turn: Turn, exc: ProviderError) -> bool:
        """A failure after the upstream accepted but before anything reached the client:
        the model's next fallback answers instead. Never the same upstream again: its SDK
        has spent the model's retries already (max_retries), and one client call costs at
        most max_retries + 1 requests to each upstream it reaches."""
        if exc.kind == "bad_request":
            return False
        candidates = await self._candidates(turn)
        answering = (turn.answering or turn.model).id
        later = [c for c in candidates if c[0].id == answering]
        if not later:
            return False
        await close(turn.stream)
        turn.stream = None
        for model, provider in candidates[candidates.index(later[0]) + 1 :]:
            try:
                turn.stream = await connect(provider, _for(turn.request, model))
            except ProviderError as failure:
                self.metrics.provider_errors.labels(model.id, failure.kind).inc()
                continue
            turn.answering = model
            turn.answering_provider = provider
            return True
        return False


def _for(request: ChatRequest, model: ModelConfig) -> ChatRequest:
    """The request as `model` is sent it: the turn's own as it is (it was made for its
    model; a copy of 28 fields costs ~6 us), a fallback's a copy naming its model."""
    if request.model == model.upstream_model:
        return request
    return replace(request, model=model.upstream_model)


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
