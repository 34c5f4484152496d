"""The HTTP server: uvicorn's options, and what one connection may cost the gateway before a
byte of it reaches the app (head size and header count, read timeouts, connection bounds).

uvicorn's httptools protocol has none of those limits: a 32 MiB header is read in full, a head
sent a byte per second is waited for forever. EdgeProtocol is that protocol with them; each
refusal is a contract-shaped JSON answer (431, 408 or 503) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

if TYPE_CHECKING:
    from gateway.settings import Settings

DISCONNECT_EXTENSION = "gateway.disconnect"  # scope["extensions"][it].on_disconnect(callback)
SWEEP_EVERY = 0.25  # seconds between looks at the connections whose first head is late
LINGER = 1.0  # seconds a refused connection is still read (and dropped) so the client gets
# the answer: closing with unread input would make the kernel reset it away


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_head_bytes: int  # request line and headers together
    max_headers: int
    header_timeout: float  # from a connection's opening, or a request's first byte, to its head
    body_timeout: float  # from the end of the head to the body's last byte
    max_connections: int  # per worker
    max_pending_per_client: int  # connections of one address whose head has not arrived yet
    trusted_proxies: tuple[str, ...] = ()  # addresses exempt from the per-address bound

    @classmethod
    def of(cls, settings: Settings) -> EdgeLimits:
        return cls(
            max_head_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            header_timeout=settings.http_header_timeout,
            body_timeout=settings.http_body_timeout,
            max_connections=settings.http_max_connections,
            max_pending_per_client=settings.http_max_pending_per_client,
            trusted_proxies=settings.trusted_proxies,
        )


class Edge:
    """This worker's limits and the state they need: unfinished heads per client address,
    and the new connections whose first head is awaited, with one sweep a SWEEP_EVERY
    closing those past due (one timer per worker, not one per connection)."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.pending: dict[str, int] = {}
        # protocol -> deadline; the timeout is one for all, so insertion order is due order
        self.first_heads: dict[EdgeProtocol, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._trusted = tuple(ipaddress.ip_network(p, strict=False) for p in limits.trusted_proxies)

    def __getstate__(self) -> EdgeLimits:  # to a worker of `serve --workers N`: limits only
        return self.limits

    def __setstate__(self, limits: EdgeLimits) -> None:
        self.__init__(limits)  # type: ignore[misc]

    def exempt(self, host: str) -> bool:
        if not self._trusted:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._trusted)

    def head_arrived(self, host: str) -> None:
        left = self.pending.get(host, 0) - 1
        if left > 0:
            self.pending[host] = left
        else:
            self.pending.pop(host, None)

    def watch(self, protocol: EdgeProtocol) -> None:
        loop = protocol.loop
        self.first_heads[protocol] = loop.time() + self.limits.header_timeout
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        due = []
        for protocol, deadline in self.first_heads.items():
            if deadline > now:
                break
            due.append(protocol)
        for protocol in due:
            del self.first_heads[protocol]
            protocol._timed_out()
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep, loop)


class ServerConfig(uvicorn.Config):
    """uvicorn's Config carrying the Edge its protocols read (it travels to the workers of
    `serve --workers N` with the rest of the config, so it must stay picklable)."""

    def __init__(self, app: Any, *, edge: Edge, **options: Any) -> None:
        super().__init__(app, http=EdgeProtocol, **options)
        self.edge = edge


def server_config(app: Any, settings: Settings, **options: Any) -> ServerConfig:
    """The one place uvicorn is configured, for `serve` and for the tests' real servers.
    X-Forwarded-For is believed only from `trusted_proxies` (uvicorn believes 127.0.0.1 by
    default, so any local process could pick the address the auth throttle sees)."""
    return ServerConfig(
        app,
        edge=Edge(EdgeLimits.of(settings)),
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        **options,
    )


def _refusal(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"success": False, "code": code, "message": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that broke a limit."""


class _Event:
    """asyncio.Event's interface, as uvicorn uses it, without its eager deque of waiters
    (624 bytes): an idle connection holds two (its flow control's and its request's)."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> bool:
        if self._is_set:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class _Pipeline(list):  # type: ignore[type-arg]
    """The deque uvicorn queues pipelined requests in, as the list it almost always is:
    empty (56 bytes, a deque is 624). uvicorn appends on the left and pops on the right."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge limits. The fast path (a whole head in one
    read) adds a few attribute updates per request and no timer: a deadline is armed only
    while a head or a body is incomplete after a read (and once per new connection).

    Its own state is in slots: added to the instance dict, it would take uvicorn's 27
    attributes past the 30 a dict shares its keys for (296 bytes become 1.6 KB per
    connection); uvicorn's events and pipeline deque are swapped for smaller equivalents."""

    __slots__ = (
        "edge",
        "limits",
        "_in_head",
        "_head_bytes",
        "_heads",
        "_in_body",
        "_deadline",
        "_host",
        "_refused",
        "_max_head",
        "_max_headers",
        "_on_lost",
        "_lost",
    )

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.edge: Edge = config.edge  # type: ignore[attr-defined]
        self.limits = self.edge.limits
        self._in_head = True  # reading a request's head (a connection starts with one)
        self._head_bytes = 0
        self._heads = 0  # heads completed on this connection
        self._in_body = False
        self._deadline: asyncio.TimerHandle | None = None
        self._host = ""  # counted in edge.pending while not "" and the head is awaited
        self._refused = False
        self._max_head = self.limits.max_head_bytes
        self._max_headers = self.limits.max_headers
        self.pipeline = _Pipeline()  # type: ignore[assignment]
        self._on_lost: Callable[[], None] | None = None
        self._lost = False  # the client is gone

    # -- the connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        writable = self.flow._is_writable_event = _Event()  # type: ignore[assignment]
        writable.set()
        host = self.client[0] if self.client else ""
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503,
                "Service Unavailable",
                "too_many_connections",
                "the gateway holds as many connections as it may; retry shortly",
            )
            return
        if host and not self.edge.exempt(host):
            pending = self.edge.pending
            if pending.get(host, 0) >= self.limits.max_pending_per_client:
                self._refuse(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    "too many connections from this address are still sending "
                    "their request; retry shortly",
                )
                return
            self._host = host
            pending[host] = pending.get(host, 0) + 1
        self.edge.watch(self)  # a connection that never speaks is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()
        self._disarm()
        self._not_pending()
        if not self._heads:
            self.edge.first_heads.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._feed_capped(data)
                return
        self._feed(data)

    def _feed_capped(self, data: bytes) -> None:
        """Feed only what the head may still take; the rest only if the head ended in it."""
        room = self.limits.max_head_bytes - (self._head_bytes - len(data))
        heads = self._heads
        self._feed(data[:room])
        if self._refused:
            return
        if self._heads == heads:
            self._refuse(
                431,
                "Request Header Fields Too Large",
                "headers_too_large",
                f"the request line and headers exceed {self._max_head} bytes",
            )
            return
        self.data_received(data[room:])  # a body, or the next request: counted afresh

    def _feed(self, data: bytes) -> None:
        """uvicorn's data_received, with our refusals told apart from malformed requests."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    "headers_too_large",
                    f"a request may carry at most {self.limits.max_headers} headers",
                )
                return
            self._malformed()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            self._malformed()
            return
        if self._deadline is None and not self._refused:  # an incomplete head or body
            if self._in_body:
                self._arm(self.limits.body_timeout)
            elif self._in_head and self._head_bytes and self._heads:  # the first: edge.watch
                self._arm(self.limits.header_timeout)

    def _malformed(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # -- parser callbacks --------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if len(self.headers) > self._max_headers:
            raise _HeadRefused
        self._in_head = False
        self._in_body = True
        if not self._heads:
            self.edge.first_heads.pop(self, None)
        self._heads += 1
        if self._deadline is not None:
            self._disarm()
        if self._host:
            self._not_pending()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a new request's; its task has not run yet
            self.cycle.message_event = _Event()  # type: ignore[assignment]
            self.cycle.scope["extensions"] = {DISCONNECT_EXTENSION: self}  # type: ignore[dict-item]

    def on_disconnect(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` (once) when the client goes away, at once if it has already; None
        forgets it. A streaming response learns of a vanished client so without a task of
        its own awaiting receive() (gateway/api/sse.py). Reading resumes, as that receive()
        resumed it: a paused transport (a large body read) would not see the client's end."""
        if callback is not None and self._lost:  # gone before the response began
            callback()
            return
        self._on_lost = callback
        if callback is not None:
            self.flow.resume_reading()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        self._in_head = True
        self._head_bytes = 0
        if self._deadline is not None:
            self._disarm()

    # -- deadlines and refusals --------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        limits, cycle = self.limits, self.cycle
        if self._in_body:
            if self.flow.read_paused:  # we stopped reading it, not the client
                self._arm(limits.body_timeout)
            elif cycle is not None and cycle.response_started:
                self.transport.close()  # answered already (early): no 408 after an answer
            else:
                what = f"the request body did not arrive within {limits.body_timeout:g} s"
                self._refuse(408, "Request Timeout", "request_timeout", what)
        elif self._head_bytes or cycle is None:
            if self.flow.read_paused or (cycle is not None and not cycle.response_complete):
                self._arm(limits.header_timeout)  # pipelined behind an answer still going
            else:
                what = f"the request head did not arrive within {limits.header_timeout:g} s"
                self._refuse(408, "Request Timeout", "request_timeout", what)
        # else: between requests, uvicorn's keep-alive timeout decides

    def _not_pending(self) -> None:
        if self._host:
            self.edge.head_arrived(self._host)
            self._host = ""

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        """Answer, stop reading requests, and close once the client had LINGER to read it."""
        self._refused = True
        self._disarm()
        self._not_pending()
        self.edge.first_heads.pop(self, None)
        if self.cycle is not None:  # the app (waiting for the body) sees a disconnect
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        transport = self.transport
        transport.write(_refusal(status, reason, code, message))
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER, transport.close)
