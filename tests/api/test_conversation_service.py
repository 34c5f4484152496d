"""The Conversation Service API (seed 003) through real HTTP, real SDKs, a real Redis."""

from __future__ import annotations

import json
import re
import time

import pytest

from gateway.storage import keys
from gateway.turn.resume_log import FLUSH_INTERVAL
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, commands_for, make_jwt, parse_sse

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def conversation_keys(redis) -> list[bytes]:
    return sorted(await redis.keys(keys.CONVERSATION_KEYS))


async def stored_messages(redis, cid: str) -> list[dict]:
    return [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]


async def test_create_conversation_and_session_fields(client, alice, redis):
    conv = await client.create_conversation(alice, title="Project Discussion")
    assert conv["title"] == "Project Discussion"
    assert conv["is_archived"] is False
    assert ISO.match(conv["created_at"]) and ISO.match(conv["updated_at"])
    assert re.match(r"^[0-9a-f-]{36}$", conv["id"])
    session = await client.create_session(alice, conv["id"], "gpt")
    assert {k: session[k] for k in ("conversation_id", "model_id", "status")} == {
        "conversation_id": conv["id"],
        "model_id": "gpt",
        "status": "active",
    }
    assert ISO.match(session["created_at"]) and ISO.match(session["updated_at"])
    # both live under the conversation's one hash tag
    stored = await redis.hgetall(keys.conversation(conv["id"]))
    assert stored[b"title"] == b"Project Discussion" and stored[b"org_id"] == ORG.encode()
    assert await redis.hexists(keys.sessions(conv["id"]), session["id"])


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_stream_chat_raw_bytes_follow_the_contract(client, alice, upstream, redis, model):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], model)
    upstream.script(
        Reply(
            chunks=["Vector ", "databases ", "index ", "embeddings."],
            input_tokens=17,
            output_tokens=9,
        )
    )
    r, raw = await client.stream_chat(alice, session["id"], "How do vector databases work?")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"
    stream = parse_sse(raw)
    assert stream.names == ["start", "content", "content", "content", "content", "end"]
    for e in stream.events:
        assert "\n" not in e.data
        json.loads(e.data)  # every data line is one JSON document
    start = stream.events[0].json
    mid = start["message_id"]
    assert start["conversation_id"] == conv["id"]
    assert start["chat_session_id"] == session["id"]
    assert start["model"] == model
    assert [e.id for e in stream.of("content")] == [f"{mid}:{i}" for i in range(1, 5)]
    assert stream.text == "Vector databases index embeddings."
    end = stream.events[-1].json
    assert end["message_id"] == mid
    assert end["finish_reason"] == "stop"
    assert end["usage"] == {"input_tokens": 17, "output_tokens": 9}

    # Redis: the user's message, then the assistant's with the provider's counts
    user, assistant = await stored_messages(redis, conv["id"])
    assert (user["role"], user["content"], user["status"]) == (
        "user",
        "How do vector databases work?",
        "complete",
    )
    assert assistant["id"] == mid and assistant["role"] == "assistant"
    assert assistant["content"] == "Vector databases index embeddings."
    assert assistant["status"] == "complete"
    assert (assistant["input_tokens"], assistant["output_tokens"]) == (17, 9)
    conv_hash = await redis.hgetall(keys.conversation(conv["id"]))
    assert (conv_hash[b"tokens_in"], conv_hash[b"tokens_out"]) == (b"17", b"9")


async def test_anthropic_output_tokens_are_cumulative_not_summed(client, alice, upstream, redis):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "claude")
    upstream.script(Reply(chunks=["a", "b", "c", "d", "e"], input_tokens=11, output_tokens=5))
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.events[-1].json["usage"] == {"input_tokens": 11, "output_tokens": 5}
    assert (await stored_messages(redis, conv["id"]))[1]["output_tokens"] == 5


async def test_second_and_third_turn_send_the_whole_history(client, alice, upstream, redis):
    conv = await client.create_conversation(alice)
    gpt = await client.create_session(alice, conv["id"], "gpt")
    claude = await client.create_session(alice, conv["id"], "claude")
    upstream.script(
        Reply(chunks=["Paris."]), Reply(chunks=["About 2.1 million."]), Reply(chunks=["Yes."])
    )

    await client.chat(alice, gpt["id"], "Capital of France?")
    await client.chat(alice, gpt["id"], "Population?")
    await client.chat(alice, claude["id"], "Sure?")  # another session, same conversation

    first, second, third = upstream.requests
    assert first.body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert second.body["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"},
    ]
    assert third.path == "/v1/messages"
    assert third.body["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"},
        {"role": "assistant", "content": "About 2.1 million."},
        {"role": "user", "content": "Sure?"},
    ]
    assert len(await stored_messages(redis, conv["id"])) == 6


async def test_history_is_trimmed_oldest_first_to_the_context_window(client, alice, upstream):
    conv = await client.create_conversation(alice)
    small = await client.create_session(alice, conv["id"], "small")  # context_window = 60
    long = "word " * 40  # ~54 tokens with overhead: fits alone, not with more
    upstream.script(Reply(chunks=["ok"]), Reply(chunks=["ok2"]))
    await client.chat(alice, small["id"], long)
    await client.chat(alice, small["id"], "short question")
    sent = upstream.requests[-1].body["messages"]
    assert sent == [
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "short question"},
    ]


async def test_tokens_sum_into_the_conversation_totals(client, alice, upstream, redis):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(
        Reply(chunks=["x"], input_tokens=10, output_tokens=3),
        Reply(chunks=["y"], input_tokens=25, output_tokens=4),
    )
    await client.chat(alice, session["id"], "one")
    stream = await client.chat(alice, session["id"], "two")
    # gpt-4o-mini at the shipped list prices: 35 x $0.15/M + 7 x $0.60/M
    assert stream.events[-1].json["conversation_usage"] == {
        "tokens_in": 35,
        "tokens_out": 7,
        "cost": 0.00000945,
    }
    r = await client.http.get(
        f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={conv['id']}",
        headers=bearer(alice),
    )
    assert (r.json()["tokens_in"], r.json()["tokens_out"]) == (35, 7)
    assert await redis.hgetall(keys.org_usage(ORG)) == {
        b"tokens_in": b"35",
        b"tokens_out": b"7",
        b"tokens_in:gpt": b"35",
        b"tokens_out:gpt": b"7",
        b"tokens_in:user:alice": b"35",
        b"tokens_out:user:alice": b"7",
    }


async def test_messages_paginate_oldest_first_with_total(client, alice):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "demo")
    for i in range(3):
        await client.chat(alice, session["id"], f"question {i}")
    page = await client.messages(alice, conv["id"])
    assert page["total"] == 6 and len(page["messages"]) == 6
    assert [m["role"] for m in page["messages"]] == ["user", "assistant"] * 3
    assert page["messages"][0]["content"] == "question 0"
    page = await client.messages(alice, conv["id"], limit=2, offset=2)
    assert [m["content"] for m in page["messages"]][0] == "question 1"
    assert page["total"] == 6 and len(page["messages"]) == 2


async def test_list_and_get_with_sessions(client, alice, bob):
    a1 = await client.create_conversation(alice, title="first")
    a2 = await client.create_conversation(alice, title="second")
    await client.create_conversation(bob, title="bob's")
    s = await client.create_session(alice, a1["id"], "gpt")
    r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(alice))
    body = r.json()
    assert body["total"] == 2
    assert [c["id"] for c in body["conversations"]] == [a2["id"], a1["id"]]  # newest first
    r = await client.http.get(
        f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={a1['id']}",
        headers=bearer(alice),
    )
    assert r.status_code == 200
    assert r.json()["title"] == "first"
    assert [x["id"] for x in r.json()["sessions"]] == [s["id"]]


@pytest.mark.parametrize(
    "status, http_status, code",
    [
        (500, 502, "provider_error"),
        (401, 502, "provider_auth"),
        (403, 502, "provider_auth"),
        (429, 429, "provider_rate_limited"),
    ],
)
async def test_upstream_refusal_is_an_http_error_before_any_stream(
    client, alice, upstream, redis, status, http_status, code
):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(status=status, retry_after=7 if status == 429 else None))
    r, raw = await client.stream_chat(alice, session["id"], "hello")
    assert r.status_code == http_status
    body = json.loads(raw)
    assert body["success"] is False and body["code"] == code
    if status == 429:
        assert r.headers["retry-after"] == "7"
    user, assistant = await stored_messages(redis, conv["id"])
    assert user["status"] == "complete"
    assert assistant["status"] == "error" and assistant["content"] == ""
    assert assistant["error"]["code"] == "provider_error"
    # the conversation is free again: the next prompt is answered
    upstream.script(Reply(chunks=["fine"]))
    assert (await client.chat(alice, session["id"], "again")).text == "fine"


async def test_mid_stream_failure_keeps_the_partial_answer(client, alice, upstream, redis):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "claude")
    upstream.script(Reply(chunks=["one ", "two ", "three"], error_after=2))
    stream = await client.chat(alice, session["id"], "count")
    assert stream.names == ["start", "content", "content", "error", "end"]
    assert stream.events[-1].json["finish_reason"] == "error"
    assistant = (await stored_messages(redis, conv["id"]))[1]
    assert (assistant["content"], assistant["status"]) == ("one two ", "error")


async def test_length_finish_reason(client, alice, upstream):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["cut"], finish="length"))
    stream = await client.chat(alice, session["id"], "long story")
    assert stream.events[-1].json["finish_reason"] == "length"


# -- failures: each checks what Redis holds afterwards ------------------------------------


async def test_missing_or_bad_token_is_401_and_stores_nothing(client, redis):
    for headers in (
        {},
        bearer("nope"),
        {"Authorization": "Basic abc"},
        bearer(make_jwt("x", ORG, secret="wrong" * 10)),
    ):
        r = await client.http.post(
            f"/api/conversation/create?org_id={ORG}", json={"title": "t"}, headers=headers
        )
        assert r.status_code == 401
        body = r.json()
        assert body["success"] is False and body["code"] in ("unauthorized",) and body["message"]
    assert await conversation_keys(redis) == []


async def test_wrong_org_id_is_403_and_stores_nothing(client, alice, redis):
    r = await client.http.post(
        "/api/conversation/create?org_id=org-2", json={"title": "t"}, headers=bearer(alice)
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    r = await client.http.get("/api/conversation/list?org_id=org-2", headers=bearer(alice))
    assert r.status_code == 403
    assert await conversation_keys(redis) == []


async def test_another_orgs_conversation_is_404(client, alice, mallory, redis, upstream):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    r = await client.http.get(
        f"/api/conversation/get_with_sessions?org_id=org-2&conversation_id={conv['id']}",
        headers=bearer(mallory),
    )
    assert r.status_code == 404 and r.json()["code"] == "conversation_not_found"
    r, raw = await client.stream_chat(mallory, session["id"], "let me in", org="org-2")
    assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
    assert await stored_messages(redis, conv["id"]) == []
    assert upstream.requests == []


async def test_a_user_never_sees_or_prompts_anothers_conversation(
    client, alice, bob, redis, upstream
):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    r = await client.http.get(
        f"/api/conversation/messages?org_id={ORG}&conversation_id={conv['id']}", headers=bearer(bob)
    )
    assert r.status_code == 404
    r, raw = await client.stream_chat(bob, session["id"], "hijack")
    assert r.status_code == 404
    r = await client.http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": conv["id"], "model_id": "gpt"},
        headers=bearer(bob),
    )
    assert r.status_code == 404
    r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(bob))
    assert r.json() == {"conversations": [], "total": 0}
    assert await stored_messages(redis, conv["id"]) == []
    assert len(await redis.hkeys(keys.sessions(conv["id"]))) == 1
    assert upstream.requests == []


async def test_unknown_model_is_404_model_not_found(client, alice, redis):
    conv = await client.create_conversation(alice)
    r = await client.http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": conv["id"], "model_id": "gpt-17"},
        headers=bearer(alice),
    )
    assert r.status_code == 404 and r.json()["code"] == "model_not_found"
    assert await redis.exists(keys.sessions(conv["id"])) == 0


async def test_unknown_session_is_404(client, alice, upstream):
    r, raw = await client.stream_chat(alice, "00000000-0000-0000-0000-000000000000", "hi")
    assert r.status_code == 404 and json.loads(raw)["code"] == "session_not_found"
    assert upstream.requests == []


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"title": 5}', "validation_error"),
        (b'{"title": ""}', "validation_error"),
        (b'{"is_archived": true}', "validation_error"),
        (b'{"title": "x", "is_archived": "yes"}', "validation_error"),
        (b'\xff\xfe{"title": "x"}', "invalid_json"),
    ],
)
async def test_malformed_bodies_are_400_in_the_error_shape(client, alice, redis, body, code):
    r = await client.http.post(
        f"/api/conversation/create?org_id={ORG}",
        content=body,
        headers={**bearer(alice), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["success"] is False and r.json()["code"] == code and r.json()["message"]
    assert await conversation_keys(redis) == []


async def test_stream_chat_validation_stores_nothing(client, alice, redis, upstream):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    for body in (
        {"chat_session_id": session["id"]},
        {"chat_session_id": session["id"], "message": ""},
        {"chat_session_id": 5, "message": "hi"},
        {"message": "hi"},
    ):
        r = await client.http.post(
            f"/api/conversation/stream_chat?org_id={ORG}", json=body, headers=bearer(alice)
        )
        assert r.status_code == 400 and r.json()["code"] == "validation_error", body
    r = await client.http.post(
        "/api/conversation/stream_chat",
        json={"chat_session_id": session["id"], "message": "x"},
        headers=bearer(alice),
    )
    assert r.status_code == 400 and "org_id" in r.json()["message"]
    assert await stored_messages(redis, conv["id"]) == []
    assert upstream.requests == []


async def test_bad_query_parameters_are_400(client, alice):
    conv = await client.create_conversation(alice)
    for q in ("limit=0", "limit=abc", "offset=-1", "limit=100000"):
        r = await client.http.get(
            f"/api/conversation/messages?org_id={ORG}&conversation_id={conv['id']}&{q}",
            headers=bearer(alice),
        )
        assert r.status_code == 400 and r.json()["code"] == "validation_error", q
    r = await client.http.get(f"/api/conversation/messages?org_id={ORG}", headers=bearer(alice))
    assert r.status_code == 400 and "conversation_id" in r.json()["message"]


async def test_unknown_route_and_method_use_the_error_shape(client, alice):
    r = await client.http.get("/api/conversation/nope", headers=bearer(alice))
    assert r.status_code == 404 and r.json()["success"] is False
    r = await client.http.get(f"/api/conversation/create?org_id={ORG}", headers=bearer(alice))
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


async def test_health_and_readiness(client):
    assert (await client.http.get("/healthz")).status_code == 200
    r = await client.http.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_client_that_leaves_mid_stream_cancels_upstream_and_keeps_the_partial_answer(
    client, alice, upstream, redis
):
    import asyncio

    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["word "] * 50, delay=0.05))
    received = b""
    async with client.http.stream(
        "POST",
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": session["id"], "message": "long answer please"},
        headers=bearer(alice),
    ) as r:
        async for chunk in r.aiter_bytes():
            received += chunk
            if received.count(b"event: content") >= 3:
                break  # leaving the block closes the connection
    for _ in range(100):
        msgs = await stored_messages(redis, conv["id"])
        if len(msgs) == 2:
            break
        await asyncio.sleep(0.02)
    assistant = msgs[1]
    assert assistant["status"] == "cancelled" and assistant["finish_reason"] == "cancelled"
    assert assistant["content"].startswith("word word word ")
    assert len(assistant["content"].split()) < 50
    assert assistant["usage_estimated"] is True and assistant["output_tokens"] > 0
    upstream.wait_until(lambda: upstream.cancelled_streams == 1)
    assert upstream.open_streams == 0


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_the_upstream_connection_is_reused_across_turns(client, alice, upstream, model):
    """The turn reads each answer's body to its end, so the connection goes back to the pool."""
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], model)
    upstream.script(Reply(chunks=["one"]), Reply(chunks=["two"]), Reply(chunks=["three"]))
    for prompt in ("a", "b", "c"):
        await client.chat(alice, session["id"], prompt)
    ports = {r.client_port for r in upstream.requests}
    assert len(upstream.requests) == 3 and len(ports) == 1


async def test_a_turn_costs_redis_the_same_commands_whatever_its_length(
    client, alice, upstream, redis
):
    """No command per token; the scripts go as EVAL (no SCRIPT EXISTS round trip first),
    and a session seen before is not looked up again."""
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["warm"]))
    await client.chat(alice, session["id"], "warm up")

    longest = 0.0

    def turn(tokens: int):
        async def one() -> None:
            nonlocal longest
            upstream.script(Reply(chunks=["tok "] * tokens))
            started = time.perf_counter()
            events = await client.chat(alice, session["id"], "go")
            longest = max(longest, time.perf_counter() - started)
            assert events.names[-1] == "end" and len(events.of("content")) == tokens

        return one

    short = await commands_for(redis, turn(10))
    long = await commands_for(redis, turn(400))
    # the resume log takes one XADD per FLUSH_INTERVAL of streaming: its time, not its tokens
    flushes = long.pop("xadd") - short.pop("xadd")
    assert 0 <= flushes <= 1 + longest / FLUSH_INTERVAL
    assert short == long
    assert "script" not in short and "evalsha" not in short
    # one GET, the end script's check of the lock: the session's conversation is known
    # from the warm-up turn, not looked up again
    assert short["get"] == 1
    # begin (lock, user message, log start), end (answer, totals, log end, unlock), usage
    assert short["eval"] == 3
    stored = await stored_messages(redis, conv["id"])
    assert [m["role"] for m in stored] == ["user", "assistant"] * 7
    assert stored[-1]["content"] == "tok " * 400


@pytest.mark.parametrize("transport", ["lean", "httpx"])
async def test_a_models_upstream_options_come_from_the_config(
    gateway_factory, alice, upstream, redis, transport
):
    """transport, max_tokens_param and include_usage reach the SDK and the wire."""
    async with gateway_factory(
        transport=transport,
        max_tokens_param="max_completion_tokens",
        include_usage=False,
        max_output_tokens=64,
    ) as client:
        conv = await client.create_conversation(alice)
        session = await client.create_session(alice, conv["id"], "slow")
        upstream.script(Reply(chunks=["fine"]))
        events = await client.chat(alice, session["id"], "hello there")
    sent = upstream.requests[-1].body
    assert sent["max_completion_tokens"] == 64 and "max_tokens" not in sent
    assert "stream_options" not in sent
    end = events.of("end")[0].json
    assert events.text == "fine" and end["usage"]["estimated"] is True  # no usage was asked for
    stored = await stored_messages(redis, conv["id"])
    assert stored[-1]["content"] == "fine" and stored[-1]["usage_estimated"] is True
