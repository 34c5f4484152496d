"""Test helpers: a real gateway served by uvicorn on a free port, an SSE parser that reads
raw bytes the way a browser does, and JWT minting."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from redis.asyncio.cluster import RedisCluster

from gateway.app import create_app
from gateway.server import server_config
from gateway.settings import Settings, load_settings
from gateway.storage import keys

JWT_SECRET = "test-jwt-secret-with-enough-bytes-for-hs256"
ADMIN_TOKEN = "test-admin-token-of-28-chars"
# the KEK of every test gateway (provider keys); 32 bytes, URL-safe base64
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"chat-gateway test KEK, 32 bytes!").decode()


class GatewayServer:
    """uvicorn in a thread with its own event loop: the tests talk to it over real HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # bound here and handed to uvicorn: a port only looked up as free could be taken by
        # another xdist worker's server, or by a client's ephemeral port, before uvicorn binds
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = server_config(  # the edge limits of `serve` too
            self.app,
            settings,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.socket])

    async def call(self, coro: Any) -> Any:
        """Await a coroutine on the server's own event loop (its Redis clients live there)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def start(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + 30  # a loaded 2-core machine starts slowly
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    async def restore_heartbeat(self, redis: Any) -> None:
        """Tests FLUSHALL between each other; put back what a live worker keeps in Redis."""
        gateway = self.app.state.gateway
        await redis.set(keys.worker(gateway.live.worker_id), "1", px=6000)
        await self.call(gateway.governance.reload())  # policies an earlier test put via the API
        await self.call(gateway.connections.reset())  # models and keys an earlier test put

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()  # uvicorn closes it too, once it has started


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def gateway_settings(
    tmp: Path, redis_url: str, config: str, env: dict[str, str] | None = None
) -> Settings:
    cfg = write_config(tmp / "gateway.toml", config)
    base = {
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_JWT_SECRET": JWT_SECRET,
        "OPENAI_API_KEY": "sk-test-openai",
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "GATEWAY_PING_INTERVAL": "1",
        "GATEWAY_ENCRYPTION_KEY": ENCRYPTION_KEY,
        # every test calls from 127.0.0.1: one address's failed authentications must not
        # throttle the next test (tests/access/test_auth_throttle.py turns it on)
        "GATEWAY_AUTH_FAILURES_PER_MINUTE": "0",
    }
    return load_settings(cfg, env={**base, **(env or {})})


def make_jwt(
    sub: str,
    org: str,
    role: str = "user",
    *,
    workspaces: list[str] | None = None,
    managed: list[str] | None = None,
    secret: str = JWT_SECRET,
    algorithm: str = "HS256",
    **extra: Any,
) -> str:
    claims = {
        "sub": sub,
        "org_id": org,
        "role": role,
        "workspaces": workspaces or [],
        "managed_workspaces": managed or [],
        "exp": int(time.time()) + 3600,
        **extra,
    }
    return jwt.encode(claims, secret, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEStream:
    events: list[SSEEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def of(self, name: str) -> list[SSEEvent]:
        return [e for e in self.events if e.event == name]

    @property
    def text(self) -> str:
        return "".join(e.json["delta"] for e in self.of("content"))

    @property
    def names(self) -> list[str]:
        return [e.event for e in self.events]


def parse_sse(raw: bytes) -> SSEStream:
    """Parse per the HTML spec's event-stream rules, strictly enough to catch our mistakes:
    every frame ends with a blank line, each field appears once, data is one line."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n") or text == "", (
        f"stream does not end with a blank line: {text[-80:]!r}"
    )
    stream = SSEStream()
    for block in text.split("\n\n"):
        if not block:
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                stream.comments.append(line[1:].strip())
                continue
            name, sep, value = line.partition(":")
            assert sep, f"malformed SSE line {line!r}"
            assert name not in fields, f"field {name!r} twice in one frame: {block!r}"
            fields[name] = value[1:] if value.startswith(" ") else value
        if not fields:
            continue
        assert set(fields) <= {"event", "data", "id", "retry"}, block
        stream.events.append(
            SSEEvent(fields.get("event", "message"), fields.get("data", ""), fields.get("id"))
        )
    return stream


# -- what a request costs Redis ------------------------------------------------------------

IGNORED = {"info", "ping", "client", "hello"}  # our own probe, health checks, connection setup


async def command_calls(redis: Any) -> dict[str, int]:
    """Calls per command so far (INFO commandstats), summed over a cluster's primaries."""
    if isinstance(redis, RedisCluster):
        per_node = (await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)).values()
    else:
        per_node = [await redis.info("commandstats")]
    calls: dict[str, int] = {}
    for stats in per_node:
        for name, row in stats.items():
            name = name.removeprefix("cmdstat_")
            calls[name] = calls.get(name, 0) + row["calls"]
    return calls


async def commands_for(redis: Any, request: Any, repeat: int = 3) -> dict[str, int]:
    """Redis commands that one request costs: the smallest count of each over a few
    repetitions, so a background command landing in one window is no noise."""
    seen: list[dict[str, int]] = []
    for _ in range(repeat):
        before = await command_calls(redis)
        await request()
        after = await command_calls(redis)
        seen.append({name: calls - before.get(name, 0) for name, calls in after.items()})
    names = {n for s in seen for n, calls in s.items() if calls} - IGNORED
    return {
        n: min(s.get(n, 0) for s in seen) for n in sorted(names) if min(s.get(n, 0) for s in seen)
    }
