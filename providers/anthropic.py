"""The Anthropic Messages adapter.

Streams through the official SDK's raw response and parses the SSE itself: no model per event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic

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

DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens; used when nothing sets it

# Error event types that mean "try again later" rather than "this stream is broken".
_STREAM_ERROR_KINDS = {"rate_limit_error": "rate_limit", "overloaded_error": "server"}


class AnthropicProvider:
    """spec.options: max_retries (SDK retries before the first byte, default 2)."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._client = anthropic.AsyncAnthropic(
            api_key=spec.api_key or "unused",
            base_url=spec.base_url,
            timeout=anthropic.Timeout(spec.read_timeout, connect=spec.connect_timeout),
            max_retries=spec.options.get("max_retries", 2),
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
            # anthropic 2.x dropped temperature from create()'s signature; the API still takes it
            arguments["extra_body"] = {"temperature": request.temperature}
        return arguments

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        arguments = self._arguments(request)
        create = self._client.messages.with_streaming_response.create
        try:
            # Leaving this block closes the response (the manager's __aexit__ is our finally),
            # whether the stream ended, raised, or the consumer closed us at a yield.
            async with create(**arguments) as response:
                yield OPENED
                async for event in _events(response.iter_bytes()):
                    yield event
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
