"""The OpenAI Chat Completions adapter (also for OpenAI-compatible servers: vLLM, Ollama, ...).

Posts through the official SDK's low-level `post()` and parses the streamed SSE itself: the
SDK's auth, retries, base URL and status errors, without its per-request body transform
(`create()` walks the body against the params' TypedDicts) or a model per chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from providers import wire
from providers.base import (
    OPENED,
    ChatRequest,
    Finish,
    FinishReason,
    ModelSpec,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)
from providers.transport import upstream_transport


class OpenAIProvider:
    """spec.options: max_retries (SDK retries before the first byte, default 2);
    max_tokens_param ("max_tokens", the default that vLLM/Ollama understand, or
    "max_completion_tokens" for OpenAI's reasoning models, which reject max_tokens);
    include_usage (default True; off for servers that refuse stream_options);
    max_connections, max_keepalive_connections (the upstream pool, see wire.pool_limits);
    transport ("httpx": the SDK's own httpx2 transport instead of providers.transport's)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        timeout = openai.Timeout(spec.read_timeout, connect=spec.connect_timeout)
        limits = wire.pool_limits(spec.options)
        self._client = openai.AsyncOpenAI(
            api_key=spec.api_key or "unused",  # local servers want no key, the SDK insists on one
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=spec.options.get("max_retries", 2),
            http_client=openai.DefaultAsyncHttpxClient(
                timeout=timeout,
                limits=limits,
                transport=upstream_transport(spec.options, limits=limits),
            ),
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        options = self.spec.options
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
        }
        if options.get("include_usage", True):
            arguments["stream_options"] = {"include_usage": True}
        max_tokens = request.max_output_tokens or self.spec.max_output_tokens
        if max_tokens:
            arguments[options.get("max_tokens_param", "max_tokens")] = max_tokens
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        return arguments

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        try:
            # Returns once the response headers are in (the body streams); a non-2xx status
            # has raised APIStatusError by then, after the SDK's retries.
            response = await self._client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body=self._arguments(request),
                # as create() does: this SDK adds the auth headers of the schemes named here
                options={"security": {"bearer_auth": True}},
                stream=True,
            )
            try:
                yield OPENED
                async for event in _events(response.aiter_bytes()):
                    yield event
            finally:  # ended, raised, or the consumer closed us at a yield
                await response.aclose()
        except openai.APIStatusError as exc:
            raise wire.status_error(exc.status_code, exc.message, exc.response.headers) from exc
        except openai.APITimeoutError as exc:
            raise ProviderError(f"upstream timed out: {exc.message}", kind="timeout") from exc
        except openai.APIConnectionError as exc:
            raise ProviderError(
                f"upstream connection failed: {exc.message}", kind="connection"
            ) from exc
        except wire.TRANSPORT_ERRORS as exc:
            raise wire.transport_error(exc) from exc


async def _events(body: AsyncIterator[bytes]) -> AsyncIterator[ProviderEvent]:
    """Deltas as they come; Usage and Finish held back to [DONE], so the order is fixed
    (the usage chunk arrives after the finish_reason chunk)."""
    finish: FinishReason | None = None
    usage: Usage | None = None
    done = False
    try:
        async for event, data in wire.sse_events(body):
            if done:
                continue  # read on to the end of the body so the connection can be reused
            if data == b"[DONE]":
                done = True
                for ending in _ending(finish, usage):
                    yield ending
                continue
            chunk = wire.json_object(data)
            if event == "error" or chunk.get("error"):
                raise _stream_error(chunk)
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield TextDelta(text)
                reason = choice.get("finish_reason")
                if reason:
                    finish = "length" if reason == "length" else "stop"
            counts = chunk.get("usage")
            if counts:
                usage = Usage(
                    counts.get("prompt_tokens") or 0, counts.get("completion_tokens") or 0
                )
            chunk = choices = choice = counts = data = None  # not kept while the next one is awaited
    except wire.TRANSPORT_ERRORS:
        if not done:
            raise
        return  # the answer was complete; only reading past [DONE] failed
    if not done:  # a clean end without [DONE] (some compatible servers): finish_reason decides
        for ending in _ending(finish, usage):
            yield ending


def _ending(finish: FinishReason | None, usage: Usage | None) -> list[ProviderEvent]:
    if finish is None:
        raise ProviderError("upstream stream ended early", kind="protocol")
    return [usage, Finish(finish)] if usage is not None else [Finish(finish)]


def _stream_error(chunk: dict[str, Any]) -> ProviderError:
    error = chunk.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or "error"
    else:
        message = str(error or chunk)
    return ProviderError(f"upstream error mid-stream: {message}", kind="upstream")
