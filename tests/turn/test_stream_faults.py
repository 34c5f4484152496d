"""Streams that survive faults: disconnects, stops, resumes, a dead producer, a busy
conversation, upstream failures before the first token. Each test asserts what the client
received and what Redis holds afterwards."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse


async def stored(redis, cid: str) -> list[dict]:
    return [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]


async def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def open_stream(client, token: str, session_id: str, message: str, **extra):
    """Start a stream and hand back (response context, byte iterator) to read it partially."""
    ctx = client.http.stream(
        "POST",
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": session_id, "message": message, **extra},
        headers=bearer(token),
    )
    r = await ctx.__aenter__()
    return ctx, r, r.aiter_bytes()


async def read_until(chunks, marker: bytes, count: int = 1) -> bytes:
    got = b""
    async for chunk in chunks:
        got += chunk
        if got.count(marker) >= count:
            return got
    return got


async def session_for(client, token, model="gpt"):
    conv = await client.create_conversation(token)
    return conv, await client.create_session(token, conv["id"], model)


@pytest.mark.serial  # a deadline in seconds
# a prompt above uvicorn's 64 KiB read mark: the socket's reading is paused and resumed while
# the body comes in, and the client's end is still seen (no listener task reads it now)
@pytest.mark.parametrize("prompt", ["think long", "think " * 30_000], ids=["short", "180KB"])
async def test_disconnect_while_only_pings_flow_cancels_upstream_within_a_second(
    client, alice, upstream, redis, prompt
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=["late"], first_delay=10))  # silence: only pings (every 1 s here)
    ctx, r, chunks = await open_stream(client, alice, session["id"], prompt)
    got = await read_until(chunks, b": ping")
    assert b"event: start" in got and b"event: content" not in got
    left = time.monotonic()
    await ctx.__aexit__(None, None, None)
    upstream.wait_until(lambda: upstream.cancelled_streams == 1, timeout=1.0)
    assert time.monotonic() - left < 1.0
    messages = await wait_for(lambda: stored_pair(redis, conv["id"]))
    assert messages[1]["status"] == "cancelled" and messages[1]["content"] == ""
    assert messages[1]["usage_estimated"] is True
    assert await redis.exists(keys.turn_lock(conv["id"])) == 0  # released


async def stored_pair(redis, cid):
    msgs = await stored(redis, cid)
    return msgs if len(msgs) == 2 else None


async def test_on_disconnect_continue_finishes_and_stores_the_whole_answer(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    words = [f"w{i} " for i in range(20)]
    upstream.script(Reply(chunks=words, delay=0.02, input_tokens=9, output_tokens=20))
    ctx, r, chunks = await open_stream(
        client, alice, session["id"], "go on", on_disconnect="continue"
    )
    first = await read_until(chunks, b"event: content", 2)
    mid = parse_sse(first.rsplit(b"\n\n", 1)[0] + b"\n\n").events[0].json["message_id"]
    await ctx.__aexit__(None, None, None)
    messages = await wait_for(lambda: stored_pair(redis, conv["id"]))
    assert messages[1]["status"] == "complete" and messages[1]["content"] == "".join(words)
    assert (messages[1]["input_tokens"], messages[1]["output_tokens"]) == (9, 20)
    assert upstream.cancelled_streams == 0
    # the client comes back for it
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}", headers=bearer(alice)
    )
    replay = parse_sse(r.content)
    assert replay.text == "".join(words)
    assert replay.names[0] == "start" and replay.names[-1] == "end"


async def test_stop_from_the_service_route_ends_with_cancelled_and_keeps_usage(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=[f"t{i} " for i in range(200)], delay=0.02))
    ctx, r, chunks = await open_stream(client, alice, session["id"], "long")
    got = await read_until(chunks, b"event: content", 3)
    mid = parse_sse(got.split(b"event: content")[0]).events[0].json["message_id"]
    stop = await client.http.post(
        f"/api/conversation/stop?org_id={ORG}", json={"message_id": mid}, headers=bearer(alice)
    )
    assert stop.status_code == 202 and stop.json()["stopping"] is True
    async for chunk in chunks:
        got += chunk
    await ctx.__aexit__(None, None, None)
    stream = parse_sse(got)
    assert stream.names[-1] == "end" and stream.events[-1].json["finish_reason"] == "cancelled"
    assert "error" not in stream.names
    assistant = (await stored(redis, conv["id"]))[1]
    assert assistant["status"] == "cancelled" and assistant["content"] == stream.text
    assert 3 <= len(assistant["content"].split()) < 200
    assert assistant["output_tokens"] > 0
    upstream.wait_until(lambda: upstream.cancelled_streams == 1)
    # a finished message cannot be stopped
    again = await client.http.post(
        f"/api/conversation/stop?org_id={ORG}", json={"message_id": mid}, headers=bearer(alice)
    )
    assert again.status_code == 409 and again.json()["code"] == "not_running"


async def test_stop_from_the_repository_route_and_its_access_rules(
    client, alice, bob, upstream, redis
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=[f"t{i} " for i in range(200)], delay=0.02))
    ctx, r, chunks = await open_stream(client, alice, session["id"], "long")
    got = await read_until(chunks, b"event: content", 2)
    denied = await client.http.post(f"/conversation/{conv['id']}/stop", headers=bearer(bob))
    assert denied.status_code == 404  # bob cannot see alice's conversation at all
    stop = await client.http.post(f"/conversation/{conv['id']}/stop", headers=bearer(alice))
    assert stop.status_code == 202
    async for chunk in chunks:
        got += chunk
    await ctx.__aexit__(None, None, None)
    assert parse_sse(got).events[-1].json["finish_reason"] == "cancelled"
    assert (await stored(redis, conv["id"]))[1]["status"] == "cancelled"
    idle = await client.http.post(f"/conversation/{conv['id']}/stop", headers=bearer(alice))
    assert idle.status_code == 409


async def test_resume_with_last_event_id_replays_exactly_the_missing_events(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    words = [
        f"w{chr(97 + i % 26)}{chr(97 + i // 26)} " for i in range(30)
    ]  # no digits: no card-number hold-back
    upstream.script(Reply(chunks=words, delay=0.03))
    ctx, r, chunks = await open_stream(client, alice, session["id"], "count")
    got = await read_until(chunks, b"event: content", 5)
    first = parse_sse(got[: got.rindex(b"\n\n") + 2])
    mid = first.events[0].json["message_id"]
    last_id = first.of("content")[-1].id
    seen = int(last_id.split(":")[1])
    # attach from "another tab" while the producer still streams
    r2 = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}",
        headers={**bearer(alice), "Last-Event-ID": last_id},
    )
    resumed = parse_sse(r2.content)
    assert resumed.names[0] == "start" and resumed.names[-1] == "end"
    ids = [e.id for e in resumed.of("content")]
    assert ids == [f"{mid}:{i}" for i in range(seen + 1, 31)]
    assert first.text + resumed.text == "".join(words)
    assert resumed.events[-1].json["finish_reason"] == "stop"
    await ctx.__aexit__(None, None, None)
    # the log is kept for an hour, then expires
    ttl = await redis.ttl(keys.resume_log(conv["id"], mid))
    assert 3500 < ttl <= 3600
    # and the repository-style route replays it too, whole
    r3 = await client.http.get(
        f"/conversation/{conv['id']}/messages/{mid}/stream", headers=bearer(alice)
    )
    assert parse_sse(r3.content).text == "".join(words)


async def test_resume_log_is_written_in_batches_not_per_token(client, alice, upstream, redis):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=["x"] * 300))  # as fast as the upstream can go
    stream = await client.chat(alice, session["id"], "many tokens")
    mid = stream.events[0].json["message_id"]
    entries = await redis.xrange(keys.resume_log(conv["id"], mid))
    kinds = [e[1][b"t"] for e in entries]
    assert kinds[0] == b"start" and kinds[-1] == b"end"
    assert len(entries) < 10  # 300 deltas, a handful of batches
    logged = [d for e in entries if e[1][b"t"] == b"c" for d in json.loads(e[1][b"d"])]
    assert "".join(logged) == "x" * 300 == stream.text


async def test_resume_token_lets_an_eventsource_attach_without_headers(client, alice, upstream):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=["a", "b", "c"]))
    stream = await client.chat(alice, session["id"], "hi")
    start = stream.events[0].json
    token, mid = start["resume_token"], start["message_id"]
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}&resume_token={token}"
    )
    assert r.status_code == 200 and parse_sse(r.content).text == "abc"
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}&resume_token=x{token}"
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_resume_token"
    other = "00000000-0000-0000-0000-000000000000"
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={other}&resume_token={token}"
    )
    assert r.status_code == 401  # valid for that one message only


@pytest.mark.serial  # a deadline in seconds
async def test_a_dead_producer_ends_followers_with_an_error_instead_of_hanging(
    client, alice, redis
):
    conv, _ = await session_for(client, alice)
    mid = "11111111-2222-3333-4444-555555555555"
    key = keys.resume_log(conv["id"], mid)
    start = {
        "message_id": mid,
        "conversation_id": conv["id"],
        "chat_session_id": None,
        "model": "gpt",
        "user_message_id": None,
        "worker": "deadbeef0000",
    }  # no heartbeat: that worker is gone
    await redis.xadd(key, {"t": "start", "s": "0", "d": json.dumps(start)})
    await redis.xadd(key, {"t": "c", "s": "1", "d": json.dumps(["par", "tial"])})
    await redis.set(keys.message_lookup(mid), conv["id"])
    began = time.monotonic()
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}", headers=bearer(alice), timeout=15
    )
    stream = parse_sse(r.content)
    assert time.monotonic() - began < 8
    assert stream.names == ["start", "content", "content", "error", "end"]
    assert stream.text == "partial"
    assert stream.events[3].json["code"] == "producer_lost"
    assert stream.events[4].json["finish_reason"] == "error"


async def test_a_second_concurrent_prompt_is_409_and_stores_nothing(client, alice, upstream, redis):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=[f"t{i} " for i in range(30)], delay=0.02), Reply(chunks=["next"]))
    ctx, r, chunks = await open_stream(client, alice, session["id"], "first")
    await read_until(chunks, b"event: content")
    r2, raw = await client.stream_chat(alice, session["id"], "second")
    assert r2.status_code == 409 and json.loads(raw)["code"] == "conversation_busy"
    assert r2.headers["retry-after"] == "1"
    assert [m["content"] for m in await stored(redis, conv["id"])] == ["first"]
    async for _ in chunks:
        pass
    await ctx.__aexit__(None, None, None)
    assert await redis.exists(keys.turn_lock(conv["id"])) == 0
    assert (await client.chat(alice, session["id"], "third")).text == "next"


async def test_a_lock_left_by_a_crashed_worker_is_broken_at_once(client, alice, upstream, redis):
    conv, session = await session_for(client, alice)
    await redis.set(keys.turn_lock(conv["id"]), "crashedworker:some-message", px=600_000)
    upstream.script(Reply(chunks=["ok"]))
    assert (await client.chat(alice, session["id"], "hello")).text == "ok"


async def test_a_live_lock_holder_is_respected(client, alice, upstream, redis):
    conv, session = await session_for(client, alice)
    await redis.set(keys.worker("otherworker1"), "1", px=10_000)
    await redis.set(keys.turn_lock(conv["id"]), "otherworker1:some-message", px=600_000)
    r, raw = await client.stream_chat(alice, session["id"], "hello")
    assert r.status_code == 409
    assert await stored(redis, conv["id"]) == [] and upstream.requests == []


async def test_fallback_model_answers_when_the_first_fails_before_its_first_token(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice, "flaky")  # fallbacks = ["claude"]
    upstream.script(
        Reply(status=503), Reply(chunks=["from ", "claude"], input_tokens=4, output_tokens=2)
    )
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.events[0].json["model"] == "claude"
    assert stream.text == "from claude"
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions", "/v1/messages"]
    assistant = (await stored(redis, conv["id"]))[1]
    assert assistant["model_id"] == "claude" and assistant["status"] == "complete"


async def test_failure_after_headers_but_before_text_goes_to_the_fallback_without_duplicates(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice, "flaky")  # fallbacks = ["claude"]
    upstream.script(Reply(chunks=["never"], error_after=0), Reply(chunks=["second ", "try"]))
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.names == ["start", "content", "content", "end"]
    assert stream.text == "second try"
    # one request to each upstream: the failed one is never asked again (its SDK has
    # spent the model's max_retries already)
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions", "/v1/messages"]
    assistant = (await stored(redis, conv["id"]))[1]
    assert (assistant["content"], assistant["model_id"]) == ("second try", "claude")


async def test_failure_before_text_without_a_fallback_asks_the_upstream_once(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice, "claude")  # max_retries = 0
    upstream.script(Reply(chunks=["never"], error_after=0), Reply(chunks=["second ", "try"]))
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.names == ["start", "error", "end"]
    assert stream.events[1].json["code"] == "provider_error"
    assert len(upstream.requests) == 1
    assistant = (await stored(redis, conv["id"]))[1]
    assert (assistant["status"], assistant["content"]) == ("error", "")


async def test_no_retry_once_text_was_delivered(client, alice, upstream, redis):
    conv, session = await session_for(client, alice, "claude")
    upstream.script(
        Reply(chunks=["part ", "ial"], error_after=1), Reply(chunks=["would duplicate"])
    )
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.names == ["start", "content", "error", "end"]
    assert stream.text == "part "
    assert len(upstream.requests) == 1
    assistant = (await stored(redis, conv["id"]))[1]
    assert (assistant["status"], assistant["content"]) == ("error", "part ")


async def test_read_timeout_mid_stream_is_a_provider_error_with_the_partial_answer(
    gateway_factory, alice, upstream, redis
):
    async with gateway_factory(read_timeout=0.5) as client:
        conv, session = await session_for(client, alice, "slow")
        upstream.script(Reply(chunks=["quick ", "then silence"], delay=2.0))
        stream = await client.chat(alice, session["id"], "hi")
        assert stream.names == ["start", "content", "error", "end"]
        assert stream.events[2].json["code"] == "provider_error"
        assert (await stored(redis, conv["id"]))[1]["content"] == "quick "


async def test_connect_timeout_or_refused_upstream_is_502(gateway_factory, alice, redis):
    async with gateway_factory(base_url="http://127.0.0.1:9/v1", connect_timeout=1) as client:
        conv, session = await session_for(client, alice, "slow")
        r, raw = await client.stream_chat(alice, session["id"], "hi")
        assert r.status_code == 502 and json.loads(raw)["code"] == "provider_error"
        assert (await stored(redis, conv["id"]))[1]["status"] == "error"


async def test_stop_and_resume_through_another_gateway(
    client, gateway_factory, alice, upstream, redis
):
    """Producer on one gateway, stop and resume through another: the state is in Redis."""
    async with gateway_factory() as other:
        conv, session = await session_for(client, alice)
        words = [f"w{chr(97 + i % 26)} " for i in range(200)]
        upstream.script(Reply(chunks=words, delay=0.02))
        ctx, r, chunks = await open_stream(client, alice, session["id"], "long")
        got = await read_until(chunks, b"event: content", 4)
        first = parse_sse(got[: got.rindex(b"\n\n") + 2])
        mid, last_id = first.events[0].json["message_id"], first.of("content")[-1].id
        r2 = None

        async def resume() -> None:
            nonlocal r2
            r2 = await other.http.get(
                f"/api/conversation/stream?org_id={ORG}&message_id={mid}",
                headers={**bearer(alice), "Last-Event-ID": last_id},
            )

        follower = asyncio.create_task(resume())
        await asyncio.sleep(0.3)
        stop = await other.http.post(
            f"/api/conversation/stop?org_id={ORG}", json={"message_id": mid}, headers=bearer(alice)
        )
        assert stop.status_code == 202
        async for chunk in chunks:
            got += chunk
        await ctx.__aexit__(None, None, None)
        await follower
        producer, resumed = parse_sse(got), parse_sse(r2.content)
        assert producer.events[-1].json["finish_reason"] == "cancelled"
        assert resumed.events[-1].json["finish_reason"] == "cancelled"
        seen = int(last_id.split(":")[1])
        assert first.text + resumed.text == producer.text  # exactly the missing events
        assert resumed.of("content")[0].id == f"{mid}:{seen + 1}"
        assert (await stored(redis, conv["id"]))[1]["content"] == producer.text


async def test_sdk_retries_a_429_before_the_first_token_honouring_retry_after(
    gateway_factory, alice, upstream, redis
):
    async with gateway_factory(max_retries=2) as client:
        conv, session = await session_for(client, alice, "slow")
        upstream.script(
            Reply(status=429, retry_after=0.2), Reply(status=503), Reply(chunks=["third ", "time"])
        )
        began = time.monotonic()
        stream = await client.chat(alice, session["id"], "hi")
        assert stream.text == "third time" and stream.names.count("start") == 1
        assert len(upstream.requests) == 3
        assert time.monotonic() - began >= 0.2  # waited as the upstream asked
        assert [m["status"] for m in await stored(redis, conv["id"])] == ["complete", "complete"]


async def test_a_stalled_reader_is_dropped_after_the_send_timeout(
    gateway_factory, alice, upstream, redis
):
    """The client stops reading; the gateway's buffers stay bounded (uvicorn's write buffer
    plus the socket's), the send times out, the turn is stored as cancelled."""
    async with gateway_factory(env={"GATEWAY_SEND_TIMEOUT": "1"}) as client:
        conv, session = await session_for(client, alice)
        upstream.script(Reply(chunks=["y" * 2000] * 3000))  # 6 MB, far more than any buffer
        host, port = client.http.base_url.host, client.http.base_url.port
        reader, writer = await asyncio.open_connection(host, port)
        body = json.dumps({"chat_session_id": session["id"], "message": "flood"}).encode()
        writer.write(
            f"POST /api/conversation/stream_chat?org_id={ORG} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {alice}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await reader.read(1024)  # the headers, then never read again
        messages = await wait_for(lambda: stored_pair(redis, conv["id"]), timeout=15)
        writer.close()
        assistant = messages[1]
        assert assistant["status"] == "cancelled"
        assert 0 < len(assistant["content"]) < 2000 * 3000
        upstream.wait_until(lambda: upstream.open_streams == 0)  # the upstream request is closed
