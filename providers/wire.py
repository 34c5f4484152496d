"""What the two HTTP adapters share below the SDKs: the upstream connection pool's limits,
SSE framing of a raw response body, and the mapping of HTTP status, Retry-After and
transport failures to ProviderError.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import httpx2
import orjson

from providers.base import ProviderError

# What the SDKs' transport (httpx2 over anyio) raises while a streamed body is being read;
# the SDKs only wrap errors raised before the response is returned, not during iteration.
TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (httpx2.TimeoutException,)
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.RequestError,  # includes TransportError, RemoteProtocolError, DecodingError
    httpx2.StreamError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    ssl.SSLError,
)


# The SDKs' own pool (1,000 connections, 100 kept alive) would cap a worker at 1,000
# concurrent upstream streams and queue the next one without a word. A stream holds its
# connection for its whole length, so the pool is sized for streams, not requests.
MAX_CONNECTIONS = 10_000
MAX_KEEPALIVE_CONNECTIONS = 1_000


def pool_limits(options: Mapping[str, Any]) -> httpx2.Limits:
    """spec.options max_connections and max_keepalive_connections (unset or None: the
    defaults above); idle connections expire as in the SDKs (5 s)."""
    connections = options.get("max_connections") or MAX_CONNECTIONS
    keepalive = options.get("max_keepalive_connections") or MAX_KEEPALIVE_CONNECTIONS
    return httpx2.Limits(
        max_connections=connections, max_keepalive_connections=min(keepalive, connections)
    )


class SSEReader:
    """Server-sent events from a body's chunks: `feed(chunk)` gives the (event name, data)
    pairs the chunk completed ("message" when the event has no name), `end()` the last one
    when the body ended without its blank line. A loop that reads the body itself takes
    the events this way, without a generator between it and the body (one less to resume
    on every event).

    Splits on bytes rather than using httpx's iter_lines(), which splits on str.splitlines()
    and so breaks a JSON line at a raw U+2028, U+0085 or similar inside model text. Only
    LF and CRLF line ends are understood (a lone CR is not used by any upstream we speak to).
    Data stays bytes: json.loads takes bytes, and decoding first would cost a copy. An idle
    stream keeps only the unfinished line and event here."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> Sequence[tuple[str, bytes]]:
        if b"\n" not in chunk:
            self._buffer += chunk
            return ()
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        out: list[tuple[str, bytes]] = []
        event, data = self._event, self._data
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line dispatches the event
                if data:
                    out.append((event or "message", b"\n".join(data)))
                event, data = "", []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
            # comments (":...") and the id/retry fields mean nothing to a one-shot stream
        self._event, self._data = event, data
        return out

    def end(self) -> Sequence[tuple[str, bytes]]:
        """The body ended: its last event, lenient about a missing newline or blank line."""
        buffer, data, self._buffer, self._data = self._buffer, self._data, b"", []
        if buffer.startswith(b"data:"):  # a last line without its newline
            value = buffer[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        return [(self._event or "message", b"\n".join(data))] if data else ()


async def next_read(
    reader: SSEReader, body: AsyncIterator[bytes]
) -> tuple[Sequence[tuple[str, bytes]], bool]:
    """The events of the body's next read, and whether the body has ended (its last events
    then, lenient as SSEReader.end is): the head of an adapter's hot loop, which knows where
    each read ends."""
    try:
        return reader.feed(await anext(body)), False
    except StopAsyncIteration:
        return reader.end(), True


async def sse_events(body: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, bytes]]:
    """(event name, data) per server-sent event of the body (SSEReader's)."""
    reader = SSEReader()
    async for chunk in body:
        for item in reader.feed(chunk):
            yield item
        # an idle stream waits here for its next chunk, for minutes maybe: its frame keeps
        # nothing of this one
        chunk = item = None  # type: ignore[assignment]
    for item in reader.end():
        yield item


def json_object(data: bytes) -> dict[str, Any]:
    """One event's data as a JSON object; anything else means we cannot read the stream.
    orjson reads a chunk in a quarter of json.loads' time (bench/levers.py); what it refuses
    and the standard library accepts (a lone surrogate escape, NaN) is read by json.loads.
    One difference is left: an integer beyond 64 bits comes back as a float (the numbers
    we read are token counts, indexes and timestamps)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(data)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise ProviderError(f"unreadable data from upstream: {data[:200]!r}", kind="protocol")
    return value


def status_kind(status: int) -> str:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limit"
    if status == 408:  # the upstream gave up waiting for us: a timeout, worth retrying
        return "timeout"
    if status >= 500:
        return "server"
    return "bad_request"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms (OpenAI's) or Retry-After (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def status_error(
    status: int,
    message: str,
    headers: Mapping[str, str],
    *,
    code: str | None = None,
    param: str | None = None,
    error_type: str | None = None,
) -> ProviderError:
    """The upstream's refusal with its status, its own message and, when it said them, its
    error code, the parameter it blames and its error type (so a 400 can be answered as a
    400 with the upstream's words)."""
    return ProviderError(
        message,
        kind=status_kind(status),
        status=status,
        retry_after=parse_retry_after(headers),
        code=code,
        param=param,
        error_type=error_type,
    )


def transport_error(exc: BaseException) -> ProviderError:
    if isinstance(exc, TIMEOUT_ERRORS):
        return ProviderError(f"upstream timed out: {exc!r}", kind="timeout")
    return ProviderError(f"upstream connection failed: {exc!r}", kind="connection")
