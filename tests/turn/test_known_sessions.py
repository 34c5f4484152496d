"""A session its worker knows (gateway/turn/known.py) begins its turn in one round trip to
Redis before the provider, and answers every refusal exactly as a first turn does, however
the conversation changed on another worker meanwhile. Each gateway here reaches Redis through
a proxy that keeps what it was sent; the session-wide `client` gateway is the other worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from gateway.storage import keys
from gateway.storage.embedded import EmbeddedRedis, free_port
from gateway.storage.records import ChatSession, Conversation, Creator
from gateway.turn.known import KnownSessions
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.redis_proxy import RedisProxy
from tests.support import bearer

BLOCKED = "tell me about the forbidden topic"


@contextlib.asynccontextmanager
async def proxied(gateway_factory, redis_url: str, **kwargs: Any) -> AsyncIterator[tuple]:
    proxy = await RedisProxy(redis_url).start()
    try:
        async with gateway_factory(env={"GATEWAY_REDIS_URL": proxy.url}, **kwargs) as gw:
            yield gw, proxy
    finally:
        await proxy.stop()


async def round_trips_before_the_model(gw, proxy, upstream, token, conv, session) -> int:
    """What the gateway wrote to Redis naming the session or its conversation, from the
    prompt until the upstream had the request (the audit event aside: it is written beside
    the turn, never waited for); the turn streams to its end."""
    upstream.script(Reply(chunks=["fine"], first_delay=0.3))
    seen, mark = len(upstream.requests), len(proxy.sent)
    chat = asyncio.ensure_future(gw.chat(token, session["id"], "hello"))
    while len(upstream.requests) == seen:
        assert not chat.done(), chat.result()
        await asyncio.sleep(0.002)
    names = (conv["id"].encode(), session["id"].encode())
    turn = [c for c in proxy.sent[mark:] if any(n in c for n in names) and b"prompt_sent" not in c]
    events = await chat
    assert events.names[-1] == "end" and events.of("content")[0].json["delta"] == "fine"
    return len(turn)


async def block_the_forbidden_topic(gw, admin) -> None:
    """A pre-stage policy that blocks BLOCKED, put through the gateway that prompts."""
    r = await gw.http.put(
        "/admin/policies/no-forbidden",
        json={
            "kind": "keywords",
            "keywords": ["forbidden topic"],
            "stages": ["pre"],
            "action": "block",
        },
        headers=bearer(admin),
    )
    assert r.status_code in (200, 201), r.text


async def stored(redis, cid: str) -> list[dict]:
    return [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]


async def test_a_session_made_or_prompted_here_begins_in_one_round_trip(
    gateway_factory, redis_url, client, alice, upstream, redis
):
    async with proxied(gateway_factory, redis_url) as (gw, proxy):
        # made on the other worker: the first turn here looks the session up and reads the
        # conversation, then begins (3); the next ones begin in one
        conv = await client.create_conversation(alice)
        elsewhere = await client.create_session(alice, conv["id"], "gpt")
        assert await round_trips_before_the_model(gw, proxy, upstream, alice, conv, elsewhere) == 3
        assert await round_trips_before_the_model(gw, proxy, upstream, alice, conv, elsewhere) == 1
        # that one round trip read the history: the provider got the whole conversation
        sent = upstream.requests[-1].body["messages"]
        assert [(m["role"], m["content"]) for m in sent] == [
            ("user", "hello"),
            ("assistant", "fine"),
            ("user", "hello"),
        ]
        # made here: known from its first turn
        here_conv = await gw.create_conversation(alice)
        here = await gw.create_session(alice, here_conv["id"], "gpt")
        assert await round_trips_before_the_model(gw, proxy, upstream, alice, here_conv, here) == 1
    assert [m["role"] for m in await stored(redis, conv["id"])] == ["user", "assistant"] * 2
    h = await redis.hgetall(keys.conversation(conv["id"]))
    assert int(h[b"tokens_out"]) == 2 and not await redis.exists(keys.turn_lock(conv["id"]))


async def test_with_rate_limits_a_known_session_still_reads_its_conversation_first(
    gateway_factory, redis_url, alice, upstream
):
    """The limits count a prompt only once its session is known to be valid: their order
    against a 404 stays, so a counted prompt takes the full read (admission, read, begin)."""
    limits = "[limits]\nuser_requests_per_minute = 1000"
    async with proxied(gateway_factory, redis_url, extra_toml=limits) as (gw, proxy):
        conv = await gw.create_conversation(alice)
        session = await gw.create_session(alice, conv["id"], "gpt")
        assert await round_trips_before_the_model(gw, proxy, upstream, alice, conv, session) == 2


async def test_a_conversation_deleted_on_another_worker_is_404_with_nothing_written(
    gateway_factory, redis_url, client, admin, alice, upstream, redis
):
    async with proxied(gateway_factory, redis_url) as (gw, proxy):
        await block_the_forbidden_topic(gw, admin)
        conv = await gw.create_conversation(alice)
        session = await gw.create_session(alice, conv["id"], "gpt")
        await gw.chat(alice, session["id"], "first")  # known here now
        # the other worker deletes it
        r = await client.http.delete(f"/conversation/{conv['id']}", headers=bearer(alice))
        assert r.status_code == 200, r.text
        before = await stored(redis, conv["id"])
        calls = len(upstream.requests)
        # a prompt, and one the policy would block (and keep, were the conversation there)
        for prompt in ("again", BLOCKED):
            r, raw = await gw.stream_chat(alice, session["id"], prompt)
            assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
        assert await stored(redis, conv["id"]) == before
        assert len(upstream.requests) == calls
        assert not await redis.exists(keys.turn_lock(conv["id"]))
        assert await redis.xlen(keys.violations(ORG)) == 0


async def test_a_blocked_prompt_of_a_known_session_is_kept_as_on_a_first_turn(
    gateway_factory, redis_url, admin, alice, upstream, redis
):
    async with proxied(gateway_factory, redis_url) as (gw, proxy):
        await block_the_forbidden_topic(gw, admin)
        conv = await gw.create_conversation(alice)
        session = await gw.create_session(alice, conv["id"], "gpt")
        await gw.chat(alice, session["id"], "first")
        calls = len(upstream.requests)
        r, raw = await gw.stream_chat(alice, session["id"], BLOCKED)
        assert r.status_code == 400 and json.loads(raw)["code"] == "policy_blocked"
        assert len(upstream.requests) == calls
        kept = await stored(redis, conv["id"])
        assert [(m["role"], m["status"]) for m in kept] == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "blocked"),
        ]
        [v] = [json.loads(f[b"v"]) for _, f in await redis.xrange(keys.violations(ORG))]
        assert (v["policy_id"], v["conversation_id"]) == ("no-forbidden", conv["id"])
        # and the session answers the next prompt as before
        events = await gw.chat(alice, session["id"], "fine now")
        assert events.names[-1] == "end"


async def test_a_session_or_conversation_gone_from_redis_is_404_with_nothing_written(
    gateway_factory, redis_url, alice, upstream, redis
):
    async with proxied(gateway_factory, redis_url) as (gw, proxy):
        conv = await gw.create_conversation(alice)
        session = await gw.create_session(alice, conv["id"], "gpt")
        other = await gw.create_session(alice, conv["id"], "gpt")
        await gw.chat(alice, session["id"], "first")
        await gw.chat(alice, other["id"], "first")
        before = await stored(redis, conv["id"])
        calls = len(upstream.requests)
        await redis.hdel(keys.sessions(conv["id"]), session["id"])
        r, raw = await gw.stream_chat(alice, session["id"], "again")
        assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
        await redis.delete(keys.conversation(conv["id"]))
        r, raw = await gw.stream_chat(alice, other["id"], "again")
        assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
        assert await stored(redis, conv["id"]) == before
        assert len(upstream.requests) == calls
        assert not await redis.exists(keys.turn_lock(conv["id"]))


async def test_a_known_session_is_still_refused_to_other_tenants_and_users(
    gateway_factory, redis_url, alice, bob, mallory, upstream, redis
):
    async with proxied(gateway_factory, redis_url) as (gw, proxy):
        conv = await gw.create_conversation(alice)
        session = await gw.create_session(alice, conv["id"], "gpt")
        await gw.chat(alice, session["id"], "first")
        before = await stored(redis, conv["id"])
        calls = len(upstream.requests)
        r, raw = await gw.stream_chat(mallory, session["id"], "mine now", org="org-2")
        assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
        r, raw = await gw.stream_chat(mallory, session["id"], "mine now")  # naming alice's org
        assert r.status_code == 403
        r, raw = await gw.stream_chat(bob, session["id"], "mine now")
        assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
        assert await stored(redis, conv["id"]) == before
        assert len(upstream.requests) == calls


def test_known_sessions_are_bounded_oldest_first_and_keep_no_deleted_conversation() -> None:
    known = KnownSessions(limit=3)

    def made(n: int, **fields: Any) -> tuple[Conversation, ChatSession]:
        conv = Conversation(f"c{n}", ORG, "t", "alice", Creator("alice"), **fields)
        return conv, ChatSession(id=f"s{n}", conversation_id=conv.id, model_id="gpt")

    for n in range(5):
        known.remember(*made(n))
    assert len(known) == 3
    assert known.get("s0") is None and known.get("s1") is None
    assert known.get("s4") == made(4)
    known.remember(*made(9, deleted_at=1))
    assert known.get("s9") is None and len(known) == 3
    conv, _ = made(7)
    known.remember(conv, ChatSession(id="s7", conversation_id="elsewhere", model_id="gpt"))
    assert known.get("s7") is None
    known.forget("s4")
    assert known.get("s4") is None and len(known) == 2


async def test_redis_away_refuses_a_known_session_with_nothing_left_to_retry(
    gateway_factory, tmp_path, alice, upstream
):
    """503 before the provider, as on a first turn; and as Redis never got the begin step,
    no lock is left to release later: a prompt during an outage keeps no write waiting (it
    would take the room of the answers that do wait for Redis)."""
    own = EmbeddedRedis(tmp_path / "r", port=free_port(), appendonly=True).start()
    try:
        async with gateway_factory(env={"GATEWAY_REDIS_URL": own.url}) as gw:
            conv = await gw.create_conversation(alice)
            session = await gw.create_session(alice, conv["id"], "gpt")
            await gw.chat(alice, session["id"], "first")
            calls = len(upstream.requests)
            live = gw.server.app.state.gateway.live
            own.stop()
            for _ in range(3):
                r, raw = await gw.stream_chat(alice, session["id"], "while away")
                assert r.status_code == 503 and json.loads(raw)["code"] == "redis_unavailable"
            assert live.unstored == 0
            assert len(upstream.requests) == calls
            own.start()
            events = await gw.chat(alice, session["id"], "back")
            assert events.names[-1] == "end"
            client = aioredis.from_url(own.url)
            try:
                kept = [
                    json.loads(m) for m in await client.lrange(keys.messages(conv["id"]), 0, -1)
                ]
            finally:
                await client.aclose()
            assert [m["content"] for m in kept if m["role"] == "user"] == ["first", "back"]
    finally:
        own.stop()
