"""Two gateway processes (`python -m gateway serve`, as a replica set behind a load balancer
would run them) on one Redis Cluster: nothing either keeps in memory is needed by the next
request. A stream started on one is resumed and stopped through the other; rate limits hold
across both; an answer whose `end` went out is already on a replica."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from gateway.storage import keys
from gateway.storage.embedded import free_port
from tests.fake_upstream import FakeUpstream, Reply
from tests.gateway_fixtures import ORG
from tests.gateway_fixtures import test_config as gateway_config
from tests.support import ADMIN_TOKEN, JWT_SECRET, bearer, make_jwt, parse_sse
from tests.test_cli import clean_env
from tests.topologies import EmbeddedCluster
from tests.turn.test_stream_faults import read_until

LIMITS = "\n[limits]\nuser_requests_per_minute = 3\n"


class GatewayProcess:
    """`python -m gateway serve` on a free port, configured like the test gateway."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--port",
                str(self.port),
                "--config",
                str(config),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"gateway exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                    )
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("gateway not ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
async def replicas(
    redis_url: str, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two gateway processes on the cluster, each with an HTTP client on it."""
    folder = tmp_path_factory.mktemp("replicas")
    config = folder / "gateway.toml"
    config.write_text(gateway_config(upstream_server, LIMITS))
    env = clean_env(
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_REDIS_CLUSTER="true",
        GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        GATEWAY_JWT_SECRET=JWT_SECRET,
        GATEWAY_PING_INTERVAL="1",
        GATEWAY_LOG_LEVEL="warning",
        OPENAI_API_KEY="sk-test-openai",
        ANTHROPIC_API_KEY="sk-ant-test",
    )
    procs = [GatewayProcess(config, env), GatewayProcess(config, env)]
    try:
        await asyncio.gather(*(p.ready() for p in procs))
        async with (
            httpx.AsyncClient(base_url=procs[0].url, timeout=20) as a,
            httpx.AsyncClient(base_url=procs[1].url, timeout=20) as b,
        ):
            yield a, b
    finally:
        for p in procs:
            p.stop()


async def conversation_on(http: httpx.AsyncClient, token: str) -> dict:
    r = await http.post(
        f"/api/conversation/create?org_id={ORG}", json={"title": "t"}, headers=bearer(token)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def session_on(http: httpx.AsyncClient, token: str, cid: str, model: str = "gpt") -> dict:
    r = await http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": cid, "model_id": model},
        headers=bearer(token),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def stored(redis, cid: str) -> list[dict]:
    return [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]


async def test_a_stream_started_on_one_gateway_is_resumed_and_stopped_through_the_other(
    replicas, upstream, redis
):
    a, b = replicas
    carol = make_jwt("carol", ORG, "user", workspaces=["ws-1"])
    conv = await conversation_on(a, carol)  # created on one replica ...
    session = await session_on(b, carol, conv["id"])  # ... its session on the other
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)} " for i in range(400)]
    upstream.script(Reply(chunks=words, delay=0.02))

    async with a.stream(
        "POST",
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": session["id"], "message": "count"},
        headers=bearer(carol),
    ) as first:
        chunks = first.aiter_bytes()
        got = await read_until(chunks, b"event: content", 5)
        seen = parse_sse(got[: got.rindex(b"\n\n") + 2])
        mid = seen.events[0].json["message_id"]
        last_id = seen.of("content")[-1].id

        # the other replica attaches from Last-Event-ID: exactly what came after it, live
        async with b.stream(
            "GET",
            f"/api/conversation/stream?org_id={ORG}&message_id={mid}",
            headers={**bearer(carol), "Last-Event-ID": last_id},
        ) as resumed:
            tail = resumed.aiter_bytes()
            later = await read_until(tail, b"event: content", 3)
            # ... and stops it, though the turn runs on the first replica
            stop = await b.post(
                f"/api/conversation/stop?org_id={ORG}",
                json={"message_id": mid},
                headers=bearer(carol),
            )
            assert stop.status_code == 202, stop.text
            async for chunk in tail:
                later += chunk
        async for chunk in chunks:
            got += chunk

    origin, follower = parse_sse(got), parse_sse(later)
    assert origin.names[-1] == follower.names[-1] == "end"
    assert origin.events[-1].json["finish_reason"] == "cancelled"
    assert follower.events[-1].json["finish_reason"] == "cancelled"
    seq = int(last_id.rsplit(":", 1)[1])
    ids = [e.id for e in follower.of("content")]
    assert ids and ids == [f"{mid}:{i}" for i in range(seq + 1, seq + 1 + len(ids))]
    assert origin.text.endswith(follower.text) and len(origin.text) > len(follower.text)
    assert len(origin.of("content")) < len(words)  # stopped well before the end
    upstream.wait_until(lambda: upstream.cancelled_streams == 1)
    assistant = (await stored(redis, conv["id"]))[1]
    assert assistant["status"] == "cancelled" and assistant["content"] == origin.text
    # either replica reads the same history
    for http in (a, b):
        r = await http.get(
            "/api/conversation/messages",
            headers=bearer(carol),
            params={"org_id": ORG, "conversation_id": conv["id"]},
        )
        assert [m["id"] for m in r.json()["messages"]][1] == mid


async def wait_for_a_fresh_minute(margin: float = 8.0) -> None:
    """Rate windows are UTC minutes: keep the test's prompts inside one."""
    left = 60 - time.time() % 60
    if left < margin:
        await asyncio.sleep(left + 0.1)


async def test_rate_limits_hold_across_both_gateways(replicas, upstream, redis):
    a, b = replicas
    dave = make_jwt("dave", ORG, "user", workspaces=["ws-1"])
    conv = await conversation_on(a, dave)
    session = await session_on(a, dave, conv["id"])
    await wait_for_a_fresh_minute()
    remaining = []
    for http in (a, b, a):  # 3 prompts a minute, wherever they land
        r = await http.post(
            f"/api/conversation/stream_chat?org_id={ORG}",
            headers=bearer(dave),
            json={"chat_session_id": session["id"], "message": "hi"},
        )
        assert r.status_code == 200, r.text
        remaining.append(r.headers["x-ratelimit-remaining"])
    assert remaining == ["2", "1", "0"]
    for http in (b, a):
        r = await http.post(
            f"/api/conversation/stream_chat?org_id={ORG}",
            headers=bearer(dave),
            json={"chat_session_id": session["id"], "message": "one more"},
        )
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert len(await stored(redis, conv["id"])) == 6  # the refused prompts left nothing
    # one counter, under the org's tag, whichever replica counted
    [key] = await redis.keys(keys.rate_window(ORG, "requests", "min:*", "user", "dave"))
    assert await redis.get(key) == b"3"


async def test_policies_set_through_one_gateway_apply_on_the_other_at_once(
    replicas, upstream, redis
):
    a, b = replicas
    erin = make_jwt("erin", ORG, "user", workspaces=["ws-1"])
    conv = await conversation_on(b, erin)
    session = await session_on(b, erin, conv["id"])
    r = await a.put(
        "/admin/policies/no-bluebird",
        headers=bearer(ADMIN_TOKEN),
        json={"stages": ["pre"], "action": "block", "kind": "keywords", "keywords": ["bluebird"]},
    )
    assert r.status_code in (200, 201), r.text
    try:
        r = await b.post(
            f"/api/conversation/stream_chat?org_id={ORG}",
            headers=bearer(erin),
            json={"chat_session_id": session["id"], "message": "about bluebird"},
        )
        assert r.status_code == 400 and r.json()["code"] == "policy_blocked"
    finally:
        await a.delete("/admin/policies/no-bluebird", headers=bearer(ADMIN_TOKEN))


async def test_an_answer_whose_end_was_sent_is_already_on_a_replica(
    client, alice, upstream, redis, redis_cluster: EmbeddedCluster
):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["kept ", "twice"]))
    node = redis.get_node_from_key(keys.conversation(conv["id"]))
    primary = Redis(host=node.host, port=node.port)
    waits = (await primary.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.names[-1] == "end" and "stored" not in stream.events[-1].json
    mid = stream.events[-1].json["message_id"]
    assert (await primary.info("commandstats"))["cmdstat_wait"]["calls"] > waits  # on its primary
    await primary.aclose()
    [replica_port] = redis_cluster.replica_ports(node.port)
    replica = Redis(port=replica_port)
    await replica.execute_command("READONLY")  # a cluster replica serves its slots only then
    on_replica = [json.loads(m) for m in await replica.lrange(keys.messages(conv["id"]), 0, -1)]
    await replica.aclose()
    assert [m["id"] for m in on_replica][1] == mid and on_replica[1]["content"] == "kept twice"


async def test_the_cluster_suite_really_runs_on_the_cluster(gateway_server, client, alice, redis):
    """Guard for tests/cluster/*_on_cluster.py: their gateway holds a cluster client, and
    conversations spread over every primary."""
    assert gateway_server.app.state.gateway.store.replication.cluster is True
    ids = [(await client.create_conversation(alice))["id"] for _ in range(24)]
    nodes = {redis.get_node_from_key(keys.conversation(cid)).name for cid in ids}
    assert len(nodes) == 3


async def test_the_cli_uses_the_same_cluster_client(redis_url, redis, replicas):
    """`keys create` writes through the cluster client; the key works on both replicas.
    `serve` mints its admin token the same way (the first writer wins)."""
    env = clean_env(GATEWAY_REDIS_URL=redis_url, GATEWAY_REDIS_CLUSTER="true")
    created = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "gateway",
            "keys",
            "create",
            "--org",
            ORG,
            "--user",
            "kim",
            "--role",
            "user",
            "--workspace",
            "ws-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.split("only its hash is kept): ")[1].strip()
    for http in replicas:
        r = await http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
        assert r.status_code == 200, r.text
    assert await redis.hlen(keys.API_KEYS) == 1
