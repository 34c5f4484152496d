"""One connection that carries every Batch of a plain Redis client at once.

redis-py spends ~110 us of CPU per round trip beyond the bytes (bench/levers.py): the
blocking pool's condition and timeout, a health read before each use, a task for the
write's timeout, a timeout per reply. A Lane writes each batch's commands in one write on a
shared connection and hands the replies back in order from the protocol's own callback:
Redis answers a connection's commands in the order they came, so the replies of concurrent
batches come back one batch after the other, and under load one read answers many.

redis-py still opens the connection (address, TLS, AUTH, HELLO, SELECT, client name: the
pool's own settings) and its hiredis reader reads the replies with redis-py's error
classes, so a batch answers what it answered before. A batch that blocks the connection
(WAIT, XREAD BLOCK) or needs its state across round trips does not come here (batch.py).

Failures: a lost connection fails the batches waiting on it with ConnectionError, a reply
later than the socket timeout fails them with TimeoutError and drops the connection (its
replies are no longer known to be in step); the next batch opens a new one. A batch that
was never written, as no connection could be opened for it (Redis away), fails with
NotSent: Redis cannot have run any of it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError, InvalidResponse, TimeoutError

_NOT_ENOUGH = object()  # hiredis's "no whole reply yet" (False is a RESP3 reply)
_PUSH: Any = getattr(hiredis, "PushNotification", ())  # out-of-band RESP3 pushes


class NotSent(ConnectionError):
    """A batch that no attempt wrote to Redis: none of its commands ran."""


class _Call:
    __slots__ = ("count", "deadline", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, deadline: float) -> None:
        self.future = future
        self.count = count
        self.deadline = deadline
        self.replies: list[Any] = []


class _Wire(asyncio.Protocol):
    """One open connection: the calls sent on it, oldest first."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, reader: Any, timeout: float | None, host: str
    ) -> None:
        self.loop = loop
        self.reader = reader
        self.timeout = timeout
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[_Call] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.paused: asyncio.Future[None] | None = None
        self.answered = -1e9  # loop time of the last bytes Redis sent on this connection

    @property
    def open(self) -> bool:
        return self.transport is not None

    async def call(self, packed: bytes, count: int) -> list[Any]:
        while self.paused is not None:  # Redis reads slower than we write: wait for it
            await asyncio.shield(self.paused)
        if self.transport is None:
            raise ConnectionError(f"Connection to {self.host} closed")
        deadline = self.loop.time() + self.timeout if self.timeout else 0.0
        call = _Call(self.loop.create_future(), count, deadline)
        self.waiting.append(call)
        self.transport.write(packed)
        if self.timer is None and self.timeout:
            self.timer = self.loop.call_at(deadline, self._expire)
        return await call.future

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.answered = self.loop.time()
        reader, waiting = self.reader, self.waiting
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:
                self.fail(ConnectionError(f"Protocol error from {self.host}: {exc}"))
                return
            if reply is _NOT_ENOUGH:
                return
            if isinstance(reply, _PUSH):
                continue
            if not waiting:
                self.fail(ConnectionError(f"A reply from {self.host} that nothing asked for"))
                return
            call = waiting[0]
            call.replies.append(reply)
            if len(call.replies) == call.count:
                waiting.popleft()
                if not call.future.done():  # else its caller was cancelled: replies read
                    call.future.set_result(call.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self.fail(ConnectionError(f"Connection to {self.host} closed{reason}"))

    def pause_writing(self) -> None:
        if self.paused is None:
            self.paused = self.loop.create_future()

    def resume_writing(self) -> None:
        paused, self.paused = self.paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    # -- the end -------------------------------------------------------------------------

    def _expire(self) -> None:
        self.timer = None
        if not self.waiting:
            return
        oldest = self.waiting[0].deadline
        if oldest <= self.loop.time():
            self.fail(TimeoutError(f"Timeout reading from {self.host}"))
        else:
            self.timer = self.loop.call_at(oldest, self._expire)

    def fail(self, error: Exception) -> None:
        """Every call waiting here fails with `error`, and the connection closes."""
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiting, self.waiting = self.waiting, deque()
        for call in waiting:
            if not call.future.done():
                call.future.set_exception(error)
        self.resume_writing()


class Lane:
    """The shared connection of one Redis client, opened on first use and after a loss."""

    def __init__(self, redis: Redis) -> None:
        self.pool = redis.connection_pool
        self.retry = self.pool.make_connection().retry  # type: ignore[no-untyped-call]
        self._wire: _Wire | None = None
        self._conn: Any = None  # the redis-py connection whose socket the wire took over
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def call(self, packed: bytes, count: int) -> list[Any]:
        """The `count` replies to the commands in `packed`, in order (error replies as
        exceptions among them); retried on a lost connection as the client's retry says.
        NotSent when no attempt got as far as writing them."""
        written = False

        async def attempt() -> list[Any]:
            nonlocal written
            wire = self._usable() or await self._open()
            written = True
            return await wire.call(packed, count)

        try:
            replies: list[Any] = await self.retry.call_with_retry(attempt, _no_op)
        except ConnectionError as exc:
            if written:
                raise
            raise NotSent(*exc.args) from exc
        return replies

    def answered_within(self, seconds: float) -> bool:
        """Whether Redis sent something on the shared connection in the last `seconds`,
        and the connection is still open: as good a sign of life as a PING of our own."""
        wire = self._usable()
        return wire is not None and wire.loop.time() - wire.answered < seconds

    def _usable(self) -> _Wire | None:
        """The shared connection, when it is open and belongs to the running loop."""
        wire = self._wire
        if wire is None or not wire.open or wire.loop is not asyncio.get_running_loop():
            return None
        return wire

    async def _open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        if self._opening is None or self._opening[0] is not loop:
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:
            wire = self._usable()
            if wire is not None:
                return wire  # another batch opened it meanwhile
            self._drop()
            conn = self.pool.make_connection()  # type: ignore[no-untyped-call]
            await conn.connect()  # redis-py's handshake: AUTH, HELLO, SELECT, CLIENT SETNAME
            transport = conn._writer.transport
            wire = _Wire(loop, _reader(conn), conn.socket_timeout, conn._host_error())
            wire.transport = transport
            transport.set_protocol(wire)
            self._wire, self._conn = wire, conn
            return wire

    def _drop(self) -> None:
        wire, conn = self._wire, self._conn
        self._wire = self._conn = None
        if wire is not None and wire.open and wire.loop is asyncio.get_running_loop():
            wire.fail(ConnectionError("Connection closed by the gateway"))
        if conn is not None:
            conn._reader = conn._writer = None  # its socket went with the wire

    async def aclose(self) -> None:
        self._drop()


async def _no_op(error: Exception) -> None:
    return None


def _reader(conn: Any) -> Any:
    kwargs: dict[str, Any] = {
        "protocolError": InvalidResponse,
        "replyError": BaseParser.parse_error,
        "notEnoughData": _NOT_ENOUGH,
    }
    if conn.encoder.decode_responses:
        kwargs["encoding"] = conn.encoder.encoding
        kwargs["errors"] = conn.encoder.encoding_errors
    return hiredis.Reader(**kwargs)


_LANES: weakref.WeakKeyDictionary[Redis, Lane] = weakref.WeakKeyDictionary()


def lane(redis: Redis) -> Lane | None:
    """The client's Lane; None for a Sentinel-managed client (its pool follows failovers
    on every connection it hands out)."""
    found = _LANES.get(redis)
    if found is None:
        if isinstance(redis.connection_pool, SentinelConnectionPool):
            return None
        found = _LANES[redis] = Lane(redis)
    return found


async def close(redis: Redis) -> None:
    found = _LANES.pop(redis, None)
    if found is not None:
        await found.aclose()
