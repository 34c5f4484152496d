"""Gateway fixtures: one real gateway per session, configured with openai, anthropic and
demo models pointing at the fake upstream; a per-test async HTTP client with shortcuts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream
from tests.support import (
    ADMIN_TOKEN,
    GatewayServer,
    SSEStream,
    bearer,
    gateway_settings,
    make_jwt,
    parse_sse,
)

ORG = "org-1"


def test_config(upstream: FakeUpstream, extra: str = "") -> str:
    return f"""
[[models]]
id = "gpt"
provider = "openai"
model = "gpt-4o-mini"
base_url = "{upstream.openai_base_url}"
max_retries = 0

[[models]]
id = "claude"
provider = "anthropic"
model = "claude-test-model"
base_url = "{upstream.anthropic_base_url}"
max_retries = 0

[[models]]
id = "small"
provider = "openai"
model = "small-model"
base_url = "{upstream.openai_base_url}"
context_window = 60
max_retries = 0

[[models]]
id = "flaky"
provider = "openai"
model = "flaky-model"
base_url = "{upstream.openai_base_url}"
max_retries = 0
fallbacks = ["claude"]

[[models]]
id = "demo"
provider = "demo"
pace_ms = 0
answer_words = 12
{extra}
"""


@pytest.fixture(scope="session")
def gateway_server(
    redis_url: str,
    redis_env: dict[str, str],
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gw"), redis_url, test_config(upstream_server), redis_env
    )
    server = GatewayServer(settings).start()
    yield server
    server.stop()


@dataclass
class Client:
    """An httpx client on the gateway with the API's common steps as one-liners."""

    http: httpx.AsyncClient
    server: GatewayServer | None = None  # set for a gateway of gateway_factory

    async def create_conversation(self, token: str, org: str = ORG, **body: Any) -> dict[str, Any]:
        r = await self.http.post(
            f"/api/conversation/create?org_id={org}",
            json={"title": "t", **body},
            headers=bearer(token),
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def create_session(
        self, token: str, conversation_id: str, model: str, org: str = ORG
    ) -> dict[str, Any]:
        r = await self.http.post(
            f"/api/conversation/create_session?org_id={org}",
            json={"conversation_id": conversation_id, "model_id": model},
            headers=bearer(token),
        )
        assert r.status_code == 201, r.text
        return r.json()

    async def stream_chat(
        self, token: str, session_id: str, message: str, org: str = ORG
    ) -> tuple[httpx.Response, bytes]:
        async with self.http.stream(
            "POST",
            f"/api/conversation/stream_chat?org_id={org}",
            json={"chat_session_id": session_id, "message": message},
            headers=bearer(token),
        ) as r:
            raw = await r.aread()
        return r, raw

    async def chat(self, token: str, session_id: str, message: str, org: str = ORG) -> SSEStream:
        r, raw = await self.stream_chat(token, session_id, message, org)
        assert r.status_code == 200, raw
        return parse_sse(raw)

    async def messages(
        self, token: str, conversation_id: str, org: str = ORG, **params: Any
    ) -> dict[str, Any]:
        r = await self.http.get(
            "/api/conversation/messages",
            params={"org_id": org, "conversation_id": conversation_id, **params},
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def client(
    gateway_server: GatewayServer, redis: Any, upstream: FakeUpstream
) -> AsyncIterator[Client]:
    await gateway_server.restore_heartbeat(redis)
    async with httpx.AsyncClient(base_url=gateway_server.url, timeout=10) as http:
        yield Client(http)


@pytest.fixture
def gateway_factory(
    redis_url: str,
    redis_env: dict[str, str],
    upstream_server: FakeUpstream,
    tmp_path: Any,
    redis: Any,
):
    """Another gateway, for one test, with an extra model "slow" whose fields the test sets
    (timeouts, base_url, ...), extra environment (GATEWAY_* settings) and extra TOML tables
    (extra_toml, e.g. a [limits] table)."""

    @contextlib.asynccontextmanager
    async def make(
        env: dict[str, str] | None = None, extra_toml: str = "", **fields: Any
    ) -> AsyncIterator[Client]:
        model = {
            "id": "slow",
            "provider": "openai",
            "model": "slow-model",
            "base_url": upstream_server.openai_base_url,
            "max_retries": 0,
            **fields,
        }
        extra = "\n[[models]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in model.items())
        extra += "\n" + extra_toml
        settings = gateway_settings(
            tmp_path, redis_url, test_config(upstream_server, extra), {**redis_env, **(env or {})}
        )
        server = await asyncio.to_thread(GatewayServer(settings).start)
        await server.restore_heartbeat(redis)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
                yield Client(http, server)
        finally:
            await asyncio.to_thread(server.stop)

    return make


@pytest.fixture
def admin() -> str:
    return ADMIN_TOKEN


@pytest.fixture
def alice() -> str:
    return make_jwt(
        "alice",
        ORG,
        "user",
        workspaces=["ws-1"],
        name="Alice",
        family_name="Doe",
        email="alice@example.com",
    )


@pytest.fixture
def bob() -> str:
    return make_jwt("bob", ORG, "user", workspaces=["ws-1"])


@pytest.fixture
def mallory() -> str:
    """A user of another org."""
    return make_jwt("mallory", "org-2", "user", workspaces=["ws-9"])
