"""The Anthropic Messages adapter.

Posts through the official SDK's low-level `post()` and parses the streamed SSE itself: the
SDK's auth, retries, base URL and status errors, without `create()`'s per-call wrappers or a
model per event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2

from providers import wire
from providers.base import (
    OPENED,
    ChatMessage,
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

DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens; used when nothing sets it

# Error event types that mean "try again later" rather than "this stream is broken".
_STREAM_ERROR_KINDS = {"rate_limit_error": "rate_limit", "overloaded_error": "server"}


class AnthropicProvider:
    """spec.options: max_retries (SDK retries before the first byte, default 2);
    max_connections, max_keepalive_connections (the upstream pool, see wire.pool_limits);
    transport ("httpx": the SDK's own httpx2 transport instead of providers.transport's)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        timeout = anthropic.Timeout(spec.read_timeout, connect=spec.connect_timeout)
        limits = wire.pool_limits(spec.options)
        self._client = anthropic.AsyncAnthropic(
            api_key=spec.api_key or "unused",
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=spec.options.get("max_retries", 2),
            http_client=anthropic.DefaultAsyncHttpxClient(
                timeout=timeout,
                limits=limits,
                transport=upstream_transport(spec.options, limits=limits),
            ),
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        system, messages = to_anthropic_messages(request.messages)
        if not messages:
            raise ProviderError("no user message to send", kind="bad_request")
        arguments: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_output_tokens
            or self.spec.max_output_tokens
            or DEFAULT_MAX_TOKENS,
            "messages": messages,
            "stream": True,
        }
        if system:
            arguments["system"] = system
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        return arguments

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        body = self._arguments(request)
        try:
            # Returns once the response headers are in (the body streams); a non-2xx status
            # has raised APIStatusError by then, after the SDK's retries.
            response = await self._client.post(
                "/v1/messages", cast_to=httpx2.Response, body=body, stream=True
            )
            try:
                yield OPENED
                async for event in _events(response.aiter_bytes()):
                    yield event
            finally:  # ended, raised, or the consumer closed us at a yield
                await response.aclose()
        except anthropic.APIStatusError as exc:
            message = exc.api_message or exc.message
            raise wire.status_error(exc.status_code, message, exc.response.headers) from exc
        except anthropic.APITimeoutError as exc:
            raise ProviderError("upstream timed out", kind="timeout") from exc
        except anthropic.APIConnectionError as exc:
            raise ProviderError(
                f"upstream connection failed: {exc.message}", kind="connection"
            ) from exc
        except wire.TRANSPORT_ERRORS as exc:
            raise wire.transport_error(exc) from exc


def to_anthropic_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """(system text, turns) in the shape the Messages API insists on: system apart, then
    strictly alternating turns that start with the user. Consecutive turns of one role are
    merged; an assistant turn before the first user turn has nothing to answer and is dropped."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system" or (m.role == "assistant" and not turns):
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    return system, turns


_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


async def _events(body: AsyncIterator[bytes]) -> AsyncIterator[ProviderEvent]:
    """Deltas as they come; one Usage at the start (input known) and the final Usage and
    Finish held back to message_stop, so the stream ends ..., Usage, Finish."""
    # Every count in a usage object is the total so far (output_tokens in message_delta is
    # cumulative, not an increment), so the latest value of each field wins.
    counts = dict.fromkeys((*_INPUT_FIELDS, "output_tokens"), 0)
    finish: FinishReason = "stop"
    stopped = False
    try:
        async for event, data in wire.sse_events(body):
            if stopped or event == "ping":
                continue  # after message_stop: read on to the end so the connection is reused
            payload = wire.json_object(data)
            kind = payload.get("type") or event
            if kind == "content_block_delta":
                delta = payload.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield TextDelta(delta["text"])
            elif kind == "message_start":
                _update(counts, (payload.get("message") or {}).get("usage"))
                yield _usage(counts)
            elif kind == "message_delta":
                if (payload.get("delta") or {}).get("stop_reason") == "max_tokens":
                    finish = "length"
                _update(counts, payload.get("usage"))
            elif kind == "message_stop":
                stopped = True
                yield _usage(counts)
                yield Finish(finish)
            elif kind == "error":
                raise _stream_error(payload)
            payload = delta = data = None  # not kept while the next event is awaited
    except wire.TRANSPORT_ERRORS:
        if not stopped:
            raise
        return  # the answer was complete; only reading past message_stop failed
    if not stopped:
        raise ProviderError("upstream stream ended early", kind="protocol")


def _update(counts: dict[str, int], usage: dict[str, Any] | None) -> None:
    for name, value in (usage or {}).items():
        if name in counts and isinstance(value, int):
            counts[name] = value


def _usage(counts: dict[str, int]) -> Usage:
    # cached prompt tokens are reported apart from input_tokens; all of them are input
    return Usage(sum(counts[name] for name in _INPUT_FIELDS), counts["output_tokens"])


def _stream_error(payload: dict[str, Any]) -> ProviderError:
    error = payload.get("error") or {}
    kind = error.get("type") or "error"
    message = error.get("message") or kind
    return ProviderError(
        f"upstream error mid-stream: {kind}: {message}",
        kind=_STREAM_ERROR_KINDS.get(kind, "upstream"),
    )
