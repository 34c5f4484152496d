"""Shared test infrastructure: one real Redis and one fake LLM upstream per session.

Each test gets them clean (FLUSHALL, reset()); more fixture modules can join via pytest_plugins.
`python -m pytest` runs the suite on pytest-xdist workers (tests/parallel.py): a session is one
worker's, so each worker has its own Redis, upstream, gateways, ports and tmp folders.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from gateway.storage.embedded import EmbeddedRedis
from tests.fake_upstream import FakeUpstream

pytest_plugins = ["tests.parallel", "tests.gateway_fixtures", "tests.repo_fixtures"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def redis_env() -> dict[str, str]:
    """GATEWAY_* variables a gateway needs beside GATEWAY_REDIS_URL to reach the test Redis:
    none for one server; tests/cluster/ sets GATEWAY_REDIS_CLUSTER."""
    return {}


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> FakeUpstream:
    upstream_server.reset()
    return upstream_server
