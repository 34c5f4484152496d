"""Resume followers fanned out in-process: one reader per followed message and worker, on
connections of its own, capped per user and per message (429 beyond), and a producer
declared lost only when its heartbeat is gone. Once 2,000 followers of one message took one
request-pool connection each: the pool ran dry, other users' prompts stalled, and followers
of an answer that completed got a false producer_lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest
from redis import exceptions as redis_errors

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt, parse_sse
from tests.turn.test_stream_faults import open_stream, read_until, session_for, wait_for

pytestmark = pytest.mark.serial  # heartbeats, TTLs and attach times in seconds

OLGA = make_jwt("olga", ORG, "org_admin")
OSCAR = make_jwt("oscar", ORG, "org_admin")


async def start_long_answer(client, token, upstream, chunks=40, delay=0.05):
    """A running answer: (its conversation, its message id, the producer's stream)."""
    conv, session = await session_for(client, token)
    upstream.script(Reply(chunks=[f"w{chr(97 + i % 26)} " for i in range(chunks)], delay=delay))
    ctx, r, stream = await open_stream(client, token, session["id"], "go on")
    got = await read_until(stream, b"event: start")
    mid = parse_sse(got[: got.rindex(b"\n\n") + 2]).events[0].json["message_id"]
    return conv, mid, (ctx, stream)


async def follow(http: httpx.AsyncClient, token: str, mid: str) -> httpx.Response:
    return await http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}", headers=bearer(token)
    )


async def blocked_clients(redis) -> int:
    return int((await redis.info("clients"))["blocked_clients"])


def requests_in_flight(server) -> int:
    """Connections of the worker's request pool in use now."""
    return len(server.app.state.gateway.store.redis.connection_pool._in_use_connections)


async def test_twenty_followers_of_one_message_hold_one_blocking_read(
    client, gateway_server, alice, upstream, redis
):
    conv, mid, (ctx, producer) = await start_long_answer(client, alice, upstream, delay=0.1)
    in_flight = requests_in_flight(gateway_server)  # the pub/sub listeners' own connections
    followers = [asyncio.create_task(follow(client.http, alice, mid)) for _ in range(20)]
    await asyncio.sleep(1.0)  # all attached, all waiting for what comes next
    assert await blocked_clients(redis) <= 1  # one reader for all twenty...
    # ...not on the requests' pool (the producer's own request may let one go meanwhile)
    assert requests_in_flight(gateway_server) <= in_flight
    answers = await asyncio.gather(*followers)
    async for _ in producer:
        pass
    await ctx.__aexit__(None, None, None)
    texts = {parse_sse(r.content).text for r in answers}
    assert all(r.status_code == 200 for r in answers) and len(texts) == 1
    assert all(parse_sse(r.content).events[-1].json["finish_reason"] == "stop" for r in answers)
    stored = [json.loads(m) for m in await redis.lrange(keys.messages(conv["id"]), 0, -1)]
    assert stored[1]["content"] == texts.pop()


async def test_followers_beyond_the_caps_are_429_and_write_nothing(
    gateway_factory, alice, upstream, redis
):
    env = {"GATEWAY_RESUME_FOLLOWERS_PER_USER": "3", "GATEWAY_RESUME_FOLLOWERS_PER_MESSAGE": "4"}
    async with gateway_factory(env=env) as client:
        conv, mid, (ctx, producer) = await start_long_answer(client, alice, upstream, delay=0.1)
        mine = [asyncio.create_task(follow(client.http, alice, mid)) for _ in range(3)]
        await asyncio.sleep(0.5)
        log_before = await redis.xlen(keys.resume_log(conv["id"], mid))
        r = await follow(client.http, alice, mid)  # a fourth of alice's
        assert r.status_code == 429 and r.headers["retry-after"] == "5"
        assert r.json()["success"] is False and r.json()["code"] == "too_many_followers"
        olgas = asyncio.create_task(follow(client.http, OLGA, mid))  # the message's fourth
        await asyncio.sleep(0.3)
        r = await follow(client.http, OSCAR, mid)  # a fifth, of another user
        assert r.status_code == 429 and "followers" in r.json()["message"]
        answers = await asyncio.gather(*mine, olgas)
        async for _ in producer:
            pass
        await ctx.__aexit__(None, None, None)
        assert [a.status_code for a in answers] == [200] * 4
        assert (
            await redis.xlen(keys.resume_log(conv["id"], mid)) >= log_before
        )  # only the producer wrote
        # their places were given back: alice may follow again (the finished answer, whole)
        again = await follow(client.http, alice, mid)
        assert again.status_code == 200 and parse_sse(again.content).names[-1] == "end"


async def test_followers_keep_reading_while_the_request_pool_is_exhausted(
    client, gateway_factory, alice, upstream, redis
):
    """A burst of requests takes every connection of a worker's request pool: its resume
    followers and its heartbeat are on connections of their own and go on."""
    async with gateway_factory() as other:
        conv, mid, (ctx, producer) = await start_long_answer(client, alice, upstream, 60, 0.05)
        followers = [asyncio.create_task(follow(other.http, alice, mid)) for _ in range(5)]
        await asyncio.sleep(0.5)  # attached (the route itself needs the request pool)
        server = other.server
        store = server.app.state.gateway.store
        pool = store.redis.connection_pool

        taken: list = []
        burst = asyncio.Event()

        async def hold_every_connection() -> None:
            """One request of a burst: every connection the pool frees is taken at once."""
            while not burst.is_set():
                with contextlib.suppress(redis_errors.ConnectionError):
                    taken.append(await pool.get_connection())

        async def give_back() -> None:
            burst.set()
            for conn in taken:
                await pool.release(conn)

        async def burst_of_requests() -> None:
            await asyncio.gather(*(hold_every_connection() for _ in range(50)))

        grabbing = asyncio.run_coroutine_threadsafe(burst_of_requests(), server.loop)
        began = time.monotonic()
        try:
            heartbeat = keys.worker(server.app.state.gateway.live.worker_id)
            answers = await asyncio.wait_for(asyncio.gather(*followers), timeout=20)
            await asyncio.sleep(max(0.0, 7.0 - (time.monotonic() - began)))  # > its 6 s TTL
            assert await redis.pttl(heartbeat) > 0  # the heartbeat went on all along
        finally:
            await server.call(give_back())
            grabbing.cancel()
        async for _ in producer:
            pass
        await ctx.__aexit__(None, None, None)
        for r in answers:
            stream = parse_sse(r.content)
            assert stream.events[-1].json["finish_reason"] == "stop", stream.names[-3:]
            assert "error" not in stream.names  # never a false producer_lost


async def test_a_quiet_producer_with_a_heartbeat_is_never_declared_lost(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=["after ", "a long pause"], first_delay=5.0))
    ctx, r, producer = await open_stream(client, alice, session["id"], "think first")
    got = await read_until(producer, b"event: start")
    mid = parse_sse(got[: got.rindex(b"\n\n") + 2]).events[0].json["message_id"]
    followed = await follow(client.http, alice, mid)  # 5 s of silence, more than the 3 s check
    async for _ in producer:
        pass
    await ctx.__aexit__(None, None, None)
    stream = parse_sse(followed.content)
    assert stream.text == "after a long pause" and "error" not in stream.names
    assert stream.events[-1].json["finish_reason"] == "stop"

    async def released() -> bool:
        return await redis.exists(keys.turn_lock(conv["id"])) == 0

    await wait_for(released)
