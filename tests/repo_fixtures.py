"""Fixtures of the repository-style API: a gateway whose config declares repositories, the
cast of callers the seeds' roles need, and an httpx client with the API's steps as one-liners.

The cast (org-1 unless said): `org_admin`; `ws_admin` (manages ws-1); users `alice` and
`bob` (ws-1); `carol` (ws-2); `mallory` (org-2, ws-9); and the platform `admin`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.storage import keys
from gateway.storage.client import connect
from gateway.storage.store import Store
from tests.fake_upstream import FakeUpstream
from tests.gateway_fixtures import ORG, test_config
from tests.support import ADMIN_TOKEN, GatewayServer, bearer, gateway_settings, make_jwt

OTHER_ORG = "org-2"
REPO_KEY = "sk-repo-keyed-secret"

REPOSITORIES = """
[[repositories]]
id = "repo-1"
workspace_id = "ws-1"
org_id = "org-1"
model = "gpt"

[[repositories]]
id = "repo-2"
workspace_id = "ws-2"
org_id = "org-1"
model = "claude"

[[repositories]]
id = "demo-1"
workspace_id = "ws-1"
org_id = "org-1"
model = "demo"

[[repositories]]
id = "demo-2"
workspace_id = "ws-2"
org_id = "org-1"
model = "demo"

[[repositories]]
id = "repo-default-model"
workspace_id = "ws-1"
org_id = "org-1"

[[repositories]]
id = "repo-orphan"
org_id = "org-1"
model = "demo"

[[repositories]]
id = "repo-keyed"
workspace_id = "ws-1"
org_id = "org-1"
model = "gpt"
api_key_env = "REPO_KEYED_OPENAI_KEY"

[[repositories]]
id = "demo-9"
workspace_id = "ws-9"
org_id = "org-2"
model = "demo"
"""


@dataclass(frozen=True)
class Cast:
    admin: str
    org_admin: str
    ws_admin: str
    alice: str
    bob: str
    carol: str
    mallory: str


CAST = Cast(
    admin=ADMIN_TOKEN,
    org_admin=make_jwt("olivia", ORG, "org_admin", name="Olivia", email="olivia@example.com"),
    ws_admin=make_jwt("walter", ORG, "workspace_admin", workspaces=["ws-1"], managed=["ws-1"]),
    alice=make_jwt(
        "alice",
        ORG,
        "user",
        workspaces=["ws-1"],
        name="Alice",
        family_name="Doe",
        email="alice@example.com",
    ),
    bob=make_jwt("bob", ORG, "user", workspaces=["ws-1"]),
    carol=make_jwt("carol", ORG, "user", workspaces=["ws-2"]),
    mallory=make_jwt("mallory", OTHER_ORG, "user", workspaces=["ws-9"]),
)
USER_IDS = {
    "admin": "admin",
    "org_admin": "olivia",
    "ws_admin": "walter",
    "alice": "alice",
    "bob": "bob",
    "carol": "carol",
    "mallory": "mallory",
}


@pytest.fixture(scope="session")
def repo_gateway(
    redis_url: str,
    redis_env: dict[str, str],
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gw-repo"),
        redis_url,
        test_config(upstream_server, REPOSITORIES),
        env={"REPO_KEYED_OPENAI_KEY": REPO_KEY, **redis_env},
    )
    server = GatewayServer(settings).start()
    yield server
    server.stop()


@dataclass
class RepoClient:
    http: httpx.AsyncClient

    async def create(self, token: str, repo: str = "demo-1") -> str:
        r = await self.http.post("/conversation", json={"repoId": repo}, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        return body["conversationId"]

    async def prompt(
        self, token: str, cid: str, prompt: str = "hello", *, sse: bool = False, **extra: Any
    ) -> httpx.Response:
        headers = bearer(token)
        if sse:
            headers["Accept"] = "text/event-stream"
        return await self.http.post(
            f"/conversation/{cid}/prompt", json={"prompt": prompt, **extra}, headers=headers
        )

    async def list(self, token: str, **params: Any) -> dict[str, Any]:
        r = await self.http.get("/conversation", params=params, headers=bearer(token))
        assert r.status_code == 200, r.text
        return r.json()

    async def list_ids(self, token: str, **params: Any) -> list[str]:
        return [c["id"] for c in (await self.list(token, **params))["conversations"]]

    async def messages(self, token: str, cid: str, **params: Any) -> httpx.Response:
        return await self.http.get(
            f"/conversation/{cid}/messages", params=params, headers=bearer(token)
        )

    async def delete(self, token: str, cid: str) -> httpx.Response:
        return await self.http.delete(f"/conversation/{cid}", headers=bearer(token))


@pytest.fixture
async def api(
    repo_gateway: GatewayServer, redis: Any, upstream: FakeUpstream
) -> AsyncIterator[RepoClient]:
    await repo_gateway.restore_heartbeat(redis)
    async with httpx.AsyncClient(base_url=repo_gateway.url, timeout=20) as http:
        yield RepoClient(http)


@pytest.fixture
def cast() -> Cast:
    return CAST


@pytest.fixture
async def store(redis_url: str, redis_env: dict[str, str], redis: Any) -> AsyncIterator[Store]:
    """A Store on the test Redis (flushed by the `redis` fixture), for seeding directly."""
    s = Store(connect(redis_url, cluster=redis_env.get("GATEWAY_REDIS_CLUSTER") == "true"))
    yield s
    await s.aclose()


async def conv_hash(redis: Any, cid: str) -> dict[str, str]:
    return {
        k.decode(): v.decode() for k, v in (await redis.hgetall(keys.conversation(cid))).items()
    }


async def indexes_holding(redis: Any, cid: str, org: str = ORG) -> list[str]:
    found = [k.decode() for k in await redis.keys(keys.org_index_pattern(org))]
    return sorted([k for k in found if await redis.zscore(k, cid) is not None])


async def message_count(redis: Any, cid: str) -> int:
    return await redis.llen(keys.messages(cid))
