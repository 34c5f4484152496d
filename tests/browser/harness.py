"""What the browser tests run against: Debian's Chromium driven by Playwright, a static
file server for a page on a second origin, and a TCP proxy that breaks a connection in the
middle of a stream, as a flaky network does."""

from __future__ import annotations

import asyncio
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots; gitignored
INSTALL_HINT = "Chromium not installed: apt-get install -y chromium (and pip install playwright)"
# As root, in a sandbox, on a machine whose network is closed: no sandbox, no GPU, and none
# of the background connections Chromium would try at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticServer:
    """Serves a folder on 127.0.0.1 (a port of its own: another origin than the gateway's)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> StaticServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class CuttingProxy:
    """Forwards TCP to the gateway. When armed, it resets the first connection whose answer
    has carried `after` content events: the client sees the stream break mid-answer (perhaps
    mid-frame) and must resume it."""

    MARKER = b"event: content"

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_after = 0
        self.cuts = 0
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.url = ""
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> CuttingProxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", 0), self.loop
        ).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def arm(self, after: int) -> None:
        self.cuts = 0
        self.cut_after = after

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return

        async def to_upstream() -> None:
            while data := await client_r.read(65536):
                upstream_w.write(data)
                await upstream_w.drain()

        async def to_client() -> None:
            seen = 0
            while data := await upstream_r.read(65536):
                client_w.write(data)
                await client_w.drain()
                seen += data.count(self.MARKER)
                if self.cut_after and seen >= self.cut_after:
                    self.cut_after = 0
                    self.cuts += 1
                    return

        tasks = [asyncio.ensure_future(to_upstream()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            client_w.transport.abort()  # a reset, not a polite close: the network broke
            upstream_w.transport.abort()
