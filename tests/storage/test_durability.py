"""Durability of acknowledged writes on one Redis with a replica: the stored answer and its
counters are acknowledged by the replica (WAIT) before `end` is sent; a replica that does
not answer in time turns `end` into `stored: false` (never a false promise) until it does;
`durability_replicas = 0` never waits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway.storage import keys
from gateway.storage.embedded import EmbeddedRedis, free_port
from tests.gateway_fixtures import ORG
from tests.support import GatewayServer, bearer, gateway_settings, make_jwt, parse_sse
from tests.topologies import info

CONFIG = """
[[models]]
id = "demo"
provider = "demo"
pace_ms = 0
answer_words = 5
"""
TOKEN = make_jwt("rita", ORG, "user")


@pytest.fixture(scope="module")
def replicated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    folder = tmp_path_factory.mktemp("replicated")
    primary = EmbeddedRedis(folder / "primary", appendonly=False, port=free_port()).start()
    replica = EmbeddedRedis(
        folder / "replica",
        appendonly=False,
        port=free_port(),
        extra_args=["--replicaof", "127.0.0.1", str(primary.port)],
    ).start()
    deadline = time.monotonic() + 10
    while info(replica.port, "replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "replica never synced"
        time.sleep(0.05)
    yield primary, replica
    replica.stop()
    primary.stop()


@contextlib.asynccontextmanager
async def gateway(
    tmp: Path, primary: EmbeddedRedis, **env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A gateway on the primary, a client, and a fresh chat session."""
    settings = gateway_settings(tmp, primary.url, CONFIG, env)
    server = await asyncio.to_thread(GatewayServer(settings).start)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            conv = (
                await http.post(
                    f"/api/conversation/create?org_id={ORG}",
                    json={"title": "d"},
                    headers=bearer(TOKEN),
                )
            ).json()
            session = (
                await http.post(
                    f"/api/conversation/create_session?org_id={ORG}",
                    json={"conversation_id": conv["id"], "model_id": "demo"},
                    headers=bearer(TOKEN),
                )
            ).json()
            yield http, session["id"]
    finally:
        await asyncio.to_thread(server.stop)


async def chat(http: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    r = await http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=bearer(TOKEN),
        json={"chat_session_id": session_id, "message": "hello"},
    )
    assert r.status_code == 200, r.text
    return parse_sse(r.content).events[-1].json


def waits(port: int) -> int:
    stats = info(port, "commandstats").get("cmdstat_wait", "calls=0")
    return int(stats.split(",")[0].split("=")[1])


async def test_end_is_sent_once_the_replica_holds_the_answer(replicated, tmp_path):
    primary, replica = replicated
    before = waits(primary.port)
    async with gateway(tmp_path, primary) as (http, sid):
        end = await chat(http, sid)
        assert "stored" not in end
        cid = (await http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(TOKEN))).json()
    assert waits(primary.port) == before + 1  # one WAIT per answer
    on_replica = Redis(port=replica.port, decode_responses=True)
    [conv] = cid["conversations"]
    assert len(await on_replica.lrange(keys.messages(conv["id"]), 0, -1)) == 2  # no sleep needed
    await on_replica.aclose()


async def test_a_replica_that_does_not_acknowledge_makes_end_say_not_stored(replicated, tmp_path):
    primary, replica = replicated
    async with gateway(
        tmp_path, primary, GATEWAY_DURABILITY_TIMEOUT_MS="100", GATEWAY_FINAL_WRITE_TIMEOUT="0.5"
    ) as (http, sid):
        assert "stored" not in await chat(http, sid)
        replica.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]  # connected, silent
        try:
            end = await chat(http, sid)
            assert end["stored"] is False and end["finish_reason"] == "stop"
        finally:
            replica.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        # once the replica is back, so is the promise
        for _ in range(50):
            end = await chat(http, sid)
            if "stored" not in end:
                break
        assert "stored" not in end


async def test_durability_replicas_0_never_waits(replicated, tmp_path):
    primary, _ = replicated
    before = waits(primary.port)
    async with gateway(tmp_path, primary, GATEWAY_DURABILITY_REPLICAS="0") as (http, sid):
        assert "stored" not in await chat(http, sid)
    assert waits(primary.port) == before
