"""A lean HTTP/1.1 transport under the SDKs' httpx2 clients: one asyncio protocol per
connection and httptools for the responses, in place of httpcore2 + h11 + anyio sockets.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httptools
import httpx2

Origin = tuple[bytes, bytes, int]  # scheme, host, port

DEFAULT_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20)  # httpx2's
HIGH_WATER = 64 * 1024  # unread body bytes at which reading from the socket pauses
# what a request sent on a kept-alive connection meets when the server had closed it
_STALE_ERRORS = (httpx2.ReadError, httpx2.WriteError, httpx2.RemoteProtocolError)


def upstream_transport(
    options: Mapping[str, Any], *, limits: httpx2.Limits
) -> httpx2.AsyncBaseTransport | None:
    """The transport for an adapter's httpx2 client: None (the SDK's own httpx2 transport)
    when spec.options has transport "httpx" or the environment names a proxy, which this
    transport does not speak to; a LeanTransport otherwise."""
    if options.get("transport") == "httpx":
        return None
    proxies = urllib.request.getproxies()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return None
    return LeanTransport(limits=limits)


def body_bytes(response: httpx2.Response) -> AsyncIterator[bytes]:
    """`response.aiter_bytes()`, as it arrives. A body LeanTransport reads with nothing to
    decode is iterated directly: httpx2's aiter_bytes and aiter_raw are two more generators
    for every chunk, and the frames, decoder and chunker they hold stay for as long as a
    stream idles (~1.5 KB). The errors are the same: the connection raises httpx2's, with
    the request. A compressed body goes through httpx2's decoders."""
    stream = response.stream
    encoding = response.headers.get("content-encoding")
    if not isinstance(stream, _Body) or (encoding and encoding.lower() != "identity"):
        return response.aiter_bytes()
    if response.is_stream_consumed:
        raise httpx2.StreamConsumed()
    response.is_stream_consumed = True
    return stream.__aiter__()


class LeanTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 with a keep-alive pool per origin, sized like httpx2's: max_connections
    counts every open connection, busy or idle; at most max_keepalive_connections stay idle,
    each for keepalive_expiry seconds. Requests wait for room up to the pool timeout.

    ssl_context: the trust for https (default: httpx2's own default context)."""

    def __init__(
        self, *, limits: httpx2.Limits = DEFAULT_LIMITS, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._limits = limits
        self._ssl_context = ssl_context
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._connections: set[_Connection] = set()  # open or opening
        self._idle: dict[Origin, deque[_Connection]] = {}  # most recently used last
        self._idle_count = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx2.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}", request=request)
        origin = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        method = request.method.encode()
        head = [b"%s %s HTTP/1.1\r\n" % (method, url.raw_path)]
        head += [b"%s: %s\r\n" % header for header in request.headers.raw]
        head.append(b"\r\n")
        body = await request.aread()
        if "transfer-encoding" in request.headers:  # an upload of unknown length, now read whole
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        data = b"".join(head) + body

        conn, reused = await self._acquire(origin, request, timeouts, reuse=True)
        try:
            await conn.exchange(request, method, data, timeouts)
        except _STALE_ERRORS:
            if not reused or conn.got_bytes:
                raise
            # the server had closed this kept-alive connection: once more, on a new one
            conn, _ = await self._acquire(origin, request, timeouts, reuse=False)
            await conn.exchange(request, method, data, timeouts)
        response = httpx2.Response(
            status_code=conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, timeouts.get("read")),
            extensions={"http_version": conn.http_version, "reason_phrase": conn.reason},
        )
        conn.headers = []  # the response holds its own copy
        return response

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._connections):
            conn.close()
        await asyncio.sleep(0)  # asyncio closes sockets on the loop's next turn

    # -- the pool --------------------------------------------------------------------------

    async def _acquire(
        self, origin: Origin, request: httpx2.Request, timeouts: Mapping[str, Any], *, reuse: bool
    ) -> tuple[_Connection, bool]:
        """A connection to origin and whether it was kept alive from an earlier request."""
        limit = self._limits.max_connections
        pool_timeout = timeouts.get("pool")
        loop = asyncio.get_running_loop()
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        while True:
            conn = self._take_idle(origin) if reuse else None
            if conn is not None:
                return conn, True
            if limit is None or len(self._connections) < limit or self._evict_idle():
                return await self._connect(origin, request, timeouts), False
            await self._wait_for_room(request, deadline)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        expiry = self._limits.keepalive_expiry
        if expiry is not None:
            expired = time.monotonic() - expiry
            while idle and idle[0].idle_since < expired:
                idle[0].close()  # leaves the deque through _forget
        while idle:
            conn = idle.pop()
            conn.idle = False
            self._idle_count -= 1
            if not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
            conn.close()
        return None

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection to another origin, to make room for a new one."""
        for idle in self._idle.values():
            if idle:
                idle[0].close()
                return True
        return False

    async def _wait_for_room(self, request: httpx2.Request, deadline: float | None) -> None:
        """Until a connection closes or goes idle; PoolTimeout at the deadline (loop time)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, then cancelled: the room goes to the next in line
            if isinstance(exc, TimeoutError):
                raise httpx2.PoolTimeout("no connection free in time", request=request) from None
            raise

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(
        self, origin: Origin, request: httpx2.Request, timeouts: Mapping[str, Any]
    ) -> _Connection:
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        tls = self._tls() if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        conn = _Connection(self, origin, loop)
        self._connections.add(conn)
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except BaseException as exc:
            conn.close()
            if isinstance(exc, TimeoutError):
                raise httpx2.ConnectTimeout(
                    f"connecting to {host}:{port} timed out", request=request
                ) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS handshake
                raise httpx2.ConnectError(str(exc) or repr(exc), request=request) from exc
            raise
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # the trust the SDKs' default client would use (system store, SSL_CERT_FILE/DIR)
            self._ssl_context = httpx2.create_ssl_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    def _release(self, conn: _Connection) -> bool:
        """Keep the connection for the next request (True), or close it."""
        keep = self._limits.max_keepalive_connections
        if self._closed or not conn.reusable() or (keep is not None and self._idle_count >= keep):
            conn.close()
            return False
        conn.parser = None
        conn.idle = True
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, deque()).append(conn)
        self._idle_count += 1
        self._wake_one()
        return True

    def _forget(self, conn: _Connection) -> None:
        """The connection is closed: out of the pool, its room free."""
        if conn.idle:
            conn.idle = False
            self._idle[conn.origin].remove(conn)
            self._idle_count -= 1
        if conn in self._connections:
            self._connections.discard(conn)
            self._wake_one()


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one request at a time. httptools calls back into it
    as the response arrives; the task reading the response waits on `waiter`. Slotted, and
    the response's raw header list is let go once httpx2 has its copy: a connection lives as
    long as its stream, which may idle for minutes."""

    __slots__ = (
        "pool",
        "origin",
        "loop",
        "transport",
        "parser",
        "idle",
        "idle_since",
        "waiter",
        "writable",
        "paused",
        "request",
        "got_bytes",
        "status",
        "reason",
        "headers",
        "framed",
        "headers_done",
        "complete",
        "keep_alive",
        "head_only",
        "chunks",
        "buffered",
        "error",
    )

    def __init__(
        self, pool: LeanTransport, origin: Origin, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None  # None: no request in flight
        self.idle = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[bool] | None = None
        self.writable: asyncio.Future[None] | None = None  # set while the socket is paused
        self.paused = False
        self.request: httpx2.Request | None = None
        self._reset()

    def _reset(self) -> None:
        """Forget the last response."""
        self.got_bytes = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # the response says its length (or is chunked)
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.head_only = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: httpx2.TransportError | None = None

    @property
    def http_version(self) -> bytes:
        return b"HTTP/" + self.parser.get_http_version().encode()  # type: ignore[union-attr]

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and not self.chunks
            and self in self.pool._connections
            and not self.transport.is_closing()  # type: ignore[union-attr]
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.pool._forget(self)

    # -- used by the transport and the body ------------------------------------------------

    async def exchange(
        self, request: httpx2.Request, method: bytes, data: bytes, timeouts: Mapping[str, Any]
    ) -> None:
        """Send the request; return once the response's status line and headers are in."""
        self._reset()
        self.request = request
        self.head_only = method == b"HEAD"
        self.parser = httptools.HttpResponseParser(self)
        try:
            self.transport.write(data)  # type: ignore[union-attr]
            if self.writable is not None:  # more than the socket takes at once: let it drain
                async with asyncio.timeout(timeouts.get("write")):
                    await self.writable
        except BaseException as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise httpx2.WriteTimeout(
                    "sending the request timed out", request=request
                ) from None
            if isinstance(exc, (OSError, RuntimeError)):  # a transport already closed
                raise httpx2.WriteError(str(exc) or repr(exc), request=request) from exc
            raise
        while not self.headers_done:
            if self.error is not None:
                self.close()
                raise self.error
            await self._wait(timeouts.get("read"))

    async def read(self, timeout: float | None) -> bytes:
        """The body bytes that arrived since the last call; b"" at the end of the body."""
        while not self.chunks:
            if self.complete:
                return b""
            if self.error is not None:
                self.close()
                raise self.error
            await self._wait(timeout)
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.paused and not self.transport.is_closing():  # type: ignore[union-attr]
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return data

    async def _wait(self, timeout: float | None) -> None:
        """Until the protocol has news (bytes, the end, a failure). A timeout or a cancellation
        leaves the response half read, so the connection is closed then."""
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            if not await waiter:
                raise httpx2.ReadTimeout("timed out waiting for the response", request=self.request)
        except BaseException:
            self.close()
            await asyncio.sleep(0)  # asyncio closes the socket on the loop's next turn
            raise
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.complete:
                self.error = httpx2.RemoteProtocolError(
                    f"malformed HTTP response: {exc}", request=self.request
                )
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.parser is not None and not self.complete and self.error is None:
            if exc is not None:
                self.error = httpx2.ReadError(str(exc) or repr(exc), request=self.request)
            elif not self.got_bytes:
                self.error = httpx2.RemoteProtocolError(
                    "server disconnected without sending a response", request=self.request
                )
            elif self.headers_done and not self.framed:
                self.complete = True  # a body without length ends with the connection
            else:
                self.error = httpx2.RemoteProtocolError(
                    "server closed the connection before the end of the response",
                    request=self.request,
                )
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_exception(ConnectionError("connection lost while sending"))
        self._wake()
        self.pool._forget(self)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise ValueError("a second response to one request")

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()  # type: ignore[union-attr]
        if status < 200:  # an interim response (103 Early Hints...): the real one follows
            self.headers = []
            return
        self.status = status
        self.framed = any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )
        self.headers_done = True
        if self.head_only:  # no body follows, whatever its headers say
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if not self.headers_done or self.complete:  # the end of an interim response
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # type: ignore[union-attr]


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Body(httpx2.AsyncByteStream):
    """A response body as it arrives. Closing it returns the connection to the pool when the
    body was read to its end and the server keeps the connection alive; else closes it."""

    def __init__(self, pool: LeanTransport, conn: _Connection, timeout: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = timeout
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._closed:  # its connection may be carrying another request by now
            raise httpx2.StreamClosed()
        conn, timeout = self._conn, self._timeout
        while data := await conn.read(timeout):
            yield data

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._pool._release(self._conn):
                await asyncio.sleep(0)  # asyncio closes the socket on the loop's next turn
