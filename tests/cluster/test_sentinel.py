"""A primary and its replica watched by Sentinel (redis+sentinel:// URL): the gateway finds
the primary through the sentinels, WAITs for the replica before `end`, and carries on with
the promoted replica after the primary is killed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from gateway.storage import keys
from tests.gateway_fixtures import ORG
from tests.support import GatewayServer, bearer, gateway_settings, make_jwt, parse_sse
from tests.topologies import EmbeddedSentinel

pytestmark = pytest.mark.serial  # a failover within its down-after time

CONFIG = """
[[models]]
id = "demo"
provider = "demo"
pace_ms = 0
answer_words = 6
"""


@pytest.fixture
async def sentinel(tmp_path: Path):
    watched = await asyncio.to_thread(
        EmbeddedSentinel(tmp_path / "sentinel", down_after_ms=1000).start
    )
    yield watched
    await asyncio.to_thread(watched.stop)


async def prompt(
    http: httpx.AsyncClient, token: str, session_id: str, text: str
) -> tuple[int, dict | None]:
    r = await http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=bearer(token),
        json={"chat_session_id": session_id, "message": text},
    )
    if r.status_code != 200:
        return r.status_code, None
    return 200, parse_sse(r.content).events[-1].json


async def test_the_gateway_follows_sentinel_through_a_failover(
    sentinel: EmbeddedSentinel, tmp_path: Path
):
    settings = gateway_settings(
        tmp_path, sentinel.url, CONFIG, {"GATEWAY_FINAL_WRITE_TIMEOUT": "20"}
    )
    server = await asyncio.to_thread(GatewayServer(settings).start)
    token = make_jwt("sam", ORG, "user")
    old_primary, replica = sentinel.primary, sentinel.replica
    assert old_primary is not None and replica is not None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            conv = (
                await http.post(
                    f"/api/conversation/create?org_id={ORG}",
                    json={"title": "s"},
                    headers=bearer(token),
                )
            ).json()
            session = (
                await http.post(
                    f"/api/conversation/create_session?org_id={ORG}",
                    json={"conversation_id": conv["id"], "model_id": "demo"},
                    headers=bearer(token),
                )
            ).json()
            status, end = await prompt(http, token, session["id"], "before")
            assert status == 200 and end and "stored" not in end
            # WAIT made the replica hold it by the time `end` was sent
            on_replica = Redis(port=replica.port, decode_responses=True)
            assert await on_replica.llen(keys.messages(conv["id"])) == 2
            await on_replica.aclose()

            old_primary.process.send_signal(9)  # type: ignore[union-attr]
            old_primary.process.wait()  # type: ignore[union-attr]
            deadline = time.monotonic() + 30
            ends = []
            while time.monotonic() < deadline and sentinel.primary_port() != replica.port:
                await asyncio.sleep(0.2)
            assert sentinel.primary_port() == replica.port, "sentinel did not promote the replica"
            while time.monotonic() < deadline and len(ends) < 2:
                status, end = await prompt(http, token, session["id"], f"after {len(ends)}")
                if status == 200 and end is not None:
                    ends.append(end)
                else:
                    await asyncio.sleep(0.2)
            assert len(ends) == 2, "no answers after the failover"
            r = await http.get(
                "/api/conversation/messages",
                headers=bearer(token),
                params={"org_id": ORG, "conversation_id": conv["id"]},
            )
            ids = [m["id"] for m in r.json()["messages"]]
        promoted = Redis(port=replica.port, decode_responses=True)
        stored = [
            json.loads(m)["id"] for m in await promoted.lrange(keys.messages(conv["id"]), 0, -1)
        ]
        await promoted.aclose()
        assert end and end["message_id"] in stored
        assert [e["message_id"] for e in ends] == [
            i for i in ids if i in {e["message_id"] for e in ends}
        ]
        assert stored == ids
    finally:
        await asyncio.to_thread(server.stop)
