"""RawServer: HTTP/1.1 on the test's own loop, scripted per request, for what the fake
upstream does not send (closed connections, malformed heads, redirects, cookies)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

# answer(reader, writer, n): the n-th request (from 1) on this connection has been read;
# write the response and return whether to read another request on the connection.
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


class RawServer:
    """HTTP/1.1 on the test's own loop, scripted per request; counts what the client did."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0  # accepted
        self.requests = 0  # read in full
        self.client_closed = asyncio.Event()  # set once a client has closed a connection
        self.alpn: list[str | None] = []
        self.server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        return self

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        tls = writer.get_extra_info("ssl_object")
        if tls is not None:
            self.alpn.append(tls.selected_alpn_protocol())
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                self.requests += 1
                n += 1
                if not await self.answer(reader, writer, n):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if reader.at_eof():
                self.client_closed.set()
            writer.close()

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
