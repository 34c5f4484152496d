"""A TCP proxy between a gateway and its Redis that makes the faults a network makes, one
kind of connection at a time: replies held back on command connections, or a subscription
whose connection falls silent without being closed (a partition, a vanished host)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Link:
    subscriber: bool = False  # this connection has sent SUBSCRIBE


@dataclass
class RedisProxy:
    target: str  # redis://host:port or unix:///path
    hold_replies: float = 0.0  # seconds each reply to a command connection is held back
    silence_subscribers: bool = False  # stop passing anything to or from subscriptions
    links: list[Link] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # what clients wrote, one read at a time
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"redis://{host}:{port}"

    async def start(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in self._writers:
                w.close()
            await self._server.wait_closed()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        parts = urlsplit(self.target)
        if parts.scheme == "unix":
            redis_r, redis_w = await asyncio.open_unix_connection(parts.path)
        else:
            redis_r, redis_w = await asyncio.open_connection(parts.hostname, parts.port)
        self._writers += [client_w, redis_w]
        link = Link()
        self.links.append(link)
        try:
            await asyncio.gather(
                self._pipe(client_r, redis_w, link, to_redis=True),
                self._pipe(redis_r, client_w, link, to_redis=False),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (client_w, redis_w):
                w.close()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: Link,
        *,
        to_redis: bool,
    ) -> None:
        while data := await source.read(65536):
            if to_redis:
                self.sent.append(data)
                if b"SUBSCRIBE" in data.upper():
                    link.subscriber = True
            if link.subscriber and self.silence_subscribers:
                continue  # swallowed: the connection stays open and says nothing
            if not to_redis and not link.subscriber and self.hold_replies:
                await asyncio.sleep(self.hold_replies)
            sink.write(data)
            with contextlib.suppress(ConnectionError):
                await sink.drain()
        sink.close()
