"""A producing worker killed mid-answer (kill -9): the worker that finds out stores the
partial answer (from the resume log) through the idempotent end-of-turn script and releases
the dead worker's lock, so the store keeps what the client saw, and the follower's `end`
tells the truth. Once only the user's message was stored, while the follower's `end` said
nothing of it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.storage import keys
from gateway.storage.embedded import free_port
from tests.gateway_fixtures import ORG
from tests.support import ADMIN_TOKEN, JWT_SECRET, bearer, parse_sse
from tests.test_cli import clean_env

SLOW_DEMO = """
[[models]]
id = "demo"
provider = "demo"
pace_ms = 60
answer_words = 400
"""


class Producer:
    """`python -m gateway serve` in a process of its own, on the tests' Redis."""

    def __init__(self, tmp_path, redis_url: str) -> None:
        cfg = tmp_path / "producer.toml"
        cfg.write_text(SLOW_DEMO)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--config", cfg],
            env=clean_env(
                GATEWAY_REDIS_URL=redis_url,
                GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
                GATEWAY_JWT_SECRET=JWT_SECRET,
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, http: httpx.AsyncClient) -> None:
        for _ in range(300):
            try:
                if (await http.get(f"{self.url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("the producer did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
async def producer(tmp_path, redis_url, redis) -> AsyncIterator[Producer]:
    p = Producer(tmp_path, redis_url)
    yield p
    if p.proc.poll() is None:
        p.kill()


async def half_an_answer(producer: Producer, client, token: str) -> tuple[dict, str, str]:
    """A conversation whose answer the producer is streaming when it is killed: (the
    conversation, the message id, the text the client got before the kill)."""
    conv = await client.create_conversation(token)
    session = await client.create_session(token, conv["id"], "demo")
    async with httpx.AsyncClient(base_url=producer.url, timeout=30) as http:
        await producer.ready(http)
        async with http.stream(
            "POST",
            f"/api/conversation/stream_chat?org_id={ORG}",
            json={"chat_session_id": session["id"], "message": "tell me everything"},
            headers=bearer(token),
        ) as r:
            got = b""
            async for chunk in r.aiter_bytes():
                got += chunk
                if got.count(b"event: content") >= 12:
                    break
            producer.kill()
    seen = parse_sse(got[: got.rindex(b"\n\n") + 2])
    return conv, seen.events[0].json["message_id"], seen.text


async def stored(redis, cid: str) -> list[dict]:
    return [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]


async def test_a_killed_producer_leaves_its_partial_answer_stored_and_the_end_tells_the_truth(
    producer, client, alice, redis
):
    conv, mid, seen = await half_an_answer(producer, client, alice)
    # the follower, on another worker, waits for the dead worker's heartbeat to lapse
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}", headers=bearer(alice), timeout=30
    )
    stream = parse_sse(r.content)
    assert stream.names[-2:] == ["error", "end"]
    assert stream.events[-2].json["code"] == "producer_lost"
    end = stream.events[-1].json
    assert end["finish_reason"] == "error" and "stored" not in end  # it is stored: true
    assert end["usage"]["estimated"] is True and end["usage"]["output_tokens"] > 0
    # the log is flushed every 50 ms: the client may have got one batch more, or one less
    assert stream.text and (seen.startswith(stream.text) or stream.text.startswith(seen))
    user, assistant = await stored(redis, conv["id"])
    assert user["content"] == "tell me everything"
    assert (assistant["id"], assistant["status"]) == (mid, "error")
    assert assistant["content"] == stream.text  # the store keeps what the follower got
    assert assistant["error"]["code"] == "producer_lost" and assistant["usage_estimated"]
    assert await redis.exists(keys.turn_lock(conv["id"])) == 0  # the dead worker's lock is gone
    assert end["conversation_usage"]["tokens_out"] == assistant["output_tokens"]
    usage = await redis.hgetall(keys.org_usage(ORG))
    assert int(usage[b"tokens_out"]) == assistant["output_tokens"]  # counted once
    # a second follower replays the same stored end; nothing is written twice
    again = parse_sse(
        (
            await client.http.get(
                f"/api/conversation/stream?org_id={ORG}&message_id={mid}", headers=bearer(alice)
            )
        ).content
    )
    assert again.text == stream.text and again.events[-1].json == end
    assert len(await stored(redis, conv["id"])) == 2


async def test_the_next_prompt_stores_a_dead_producers_answer_before_its_own(
    producer, client, alice, upstream, redis
):
    conv, mid, seen = await half_an_answer(producer, client, alice)
    await asyncio.sleep(6.5)  # the dead worker's heartbeat (6 s) lapses; no follower came
    session = (
        await client.http.get(
            f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={conv['id']}",
            headers=bearer(alice),
        )
    ).json()["sessions"][0]
    next_answer = await client.chat(alice, session["id"], "and then?")
    assert next_answer.names[-1] == "end"
    user, lost, user2, answer2 = await stored(redis, conv["id"])
    assert (lost["id"], lost["status"], lost["error"]["code"]) == (mid, "error", "producer_lost")
    assert lost["content"] and (
        seen.startswith(lost["content"]) or lost["content"].startswith(seen)
    )
    assert user2["content"] == "and then?" and answer2["status"] == "complete"
