"""A lean load generator: raw asyncio HTTP/1.1 over keep-alive connections (httptools parses
the responses, chunked transfer included), one request at a time per connection.

Per request it records the time to the first content frame, the total time, and the gap
before every content frame (frames that arrive in one read have a gap of 0). A content frame
is recognised by a marker per wire format, so the same code measures the gateway's
`event: content` frames and the fake upstream's OpenAI or Anthropic chunks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

now = time.perf_counter  # CLOCK_MONOTONIC on Linux: comparable across processes


@dataclass(frozen=True, slots=True)
class Format:
    """How to read one kind of stream: what starts it, marks a content frame, ends it."""

    name: str
    start: bytes
    content: bytes
    end: bytes
    error: bytes | None = None


GATEWAY = Format("gateway", b"event: start", b"event: content", b"event: end", b"event: error")
OPENAI = Format("openai", b'"role":"assistant"', b'"delta":{"content"', b"data: [DONE]")
ANTHROPIC = Format(
    "anthropic", b"event: message_start", b"event: content_block_delta", b"event: message_stop"
)
FORMATS = {f.name: f for f in (GATEWAY, OPENAI, ANTHROPIC)}


class Recorder:
    """One request's measurements, fed by the connection as bytes arrive."""

    __slots__ = (
        "body",
        "buf",
        "done",
        "end",
        "error",
        "errored",
        "first",
        "fmt",
        "frames",
        "future",
        "gaps",
        "keep_body",
        "last",
        "on_start",
        "sent",
        "started",
        "status",
    )

    def __init__(
        self,
        fmt: Format | None,
        *,
        keep_body: bool = False,
        on_start: Callable[[Recorder], None] | None = None,
    ) -> None:
        self.fmt = fmt
        self.sent = 0.0
        self.status = 0
        self.first = 0.0  # arrival of the first content frame
        self.last = 0.0
        self.done = 0.0
        self.frames = 0
        self.gaps: list[float] = []
        self.buf = b""
        self.started = 0.0  # arrival of the stream's start (gateway: `event: start`)
        self.end = b""  # the raw end frame, parsed only when asked
        self.error: str | None = None
        self.errored = False  # an `event: error` frame was seen
        self.body = b""
        self.keep_body = keep_body or fmt is None
        self.future: asyncio.Future[Recorder] | None = None
        self.on_start = on_start

    # -- fed by Connection -----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        t = now()
        if self.keep_body or self.status != 200:
            self.body += data
            if self.fmt is None or self.status != 200:
                return
        fmt = self.fmt
        buf = self.buf + data if self.buf else data
        i = buf.rfind(b"\n\n")
        if i < 0:
            self.buf = buf
            return
        complete = buf[:i]
        self.buf = buf[i + 2 :]
        n = complete.count(fmt.content)  # type: ignore[union-attr]
        if n:
            if self.frames == 0:
                self.first = t
            else:
                self.gaps.append(t - self.last)
            if n > 1:
                self.gaps.extend([0.0] * (n - 1))
            self.last = t
            self.frames += n
        if not self.started and fmt.start in complete:  # type: ignore[union-attr]
            self.started = t
            if self.on_start is not None:
                self.on_start(self)
        j = complete.rfind(fmt.end)  # type: ignore[union-attr]
        if j >= 0:
            self.end = complete[j:]
        if fmt.error is not None and fmt.error in complete:  # type: ignore[union-attr]
            self.errored = True

    def finish(self, error: str | None = None) -> None:
        self.done = now()
        if error is not None and self.error is None:
            self.error = error
        elif self.status != 200 and self.error is None:
            self.error = f"HTTP {self.status}: {self.body[:200]!r}"
        elif self.fmt is not None and not self.end and self.error is None:
            self.error = "stream ended without its end frame"
        if self.future is not None and not self.future.done():
            self.future.set_result(self)

    # -- reading results -------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.error is None and not self.errored

    @property
    def ttft(self) -> float | None:
        return self.first - self.sent if self.frames else None

    @property
    def total(self) -> float:
        return self.done - self.sent

    def end_data(self) -> dict[str, Any]:
        """The gateway's `end` data (finish_reason, usage), {} for other formats."""
        _, sep, rest = self.end.partition(b"data: ")
        if not sep:
            return {}
        try:
            return json.loads(rest.split(b"\n", 1)[0])
        except ValueError:
            return {}

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.rec: Recorder | None = None
        self.closed = False
        self.keep_alive = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def request(self, raw: bytes, rec: Recorder) -> asyncio.Future[Recorder]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection is closed")
        rec.future = asyncio.get_running_loop().create_future()
        self.rec = rec
        rec.sent = now()
        self.transport.write(raw)
        return rec.future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # no lingering FIN handshake for thousands of streams

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"bad HTTP response: {exc}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(f"connection lost: {exc!r}" if exc else "connection closed by the server")

    def _fail(self, why: str) -> None:
        rec, self.rec = self.rec, None
        if rec is not None:
            rec.finish(why)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self.rec is not None:
            self.rec.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.rec is not None:
            self.rec.feed(body)

    def on_message_complete(self) -> None:
        rec, self.rec = self.rec, None
        if rec is not None:
            rec.finish()
        if not self.keep_alive:
            self.closed = True
            self.close()


def http_request(
    method: str,
    path: str,
    *,
    host: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: chat-gateway-bench"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(payload)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def call(
    conn: Connection,
    method: str,
    path: str,
    *,
    host: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One JSON request on a connection: (status, decoded body)."""
    rec = Recorder(None, keep_body=True)
    await asyncio.wait_for(
        conn.request(http_request(method, path, host=host, body=body, token=token), rec), timeout
    )
    if rec.error is not None and rec.status == 0:
        raise ConnectionError(rec.error)
    try:
        return rec.status, rec.json()
    except ValueError:
        return rec.status, rec.body


async def open_many(host: str, port: int, n: int, *, batch: int = 200) -> list[Connection]:
    """n connections, opened in batches so the listen backlog never overflows."""
    conns: list[Connection] = []
    while len(conns) < n:
        k = min(batch, n - len(conns))
        conns += await asyncio.gather(*(Connection.open(host, port) for _ in range(k)))
    return conns


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of unsorted values (p in 0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
