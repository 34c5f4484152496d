"""What the stream guard holds back (a trailing run of digits may still become a card
number) is final when the stream ends for any reason: an upstream failure, a stop, a client
that left. It is decided with the guard's finish, and what passes is kept (and sent, while
the client is still there), never dropped. Each test checks the client's text and Redis."""

from __future__ import annotations

import json

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse
from tests.turn.test_stream_faults import open_stream, session_for, stored_pair, wait_for


def frames(raw: bytes):
    """The complete frames of a partly read stream."""
    return parse_sse(raw[: raw.rindex(b"\n\n") + 2]) if b"\n\n" in raw else parse_sse(b"")


async def test_held_back_digits_survive_an_upstream_that_drops_mid_stream(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=["w0 ", "w1 ", "w2"], drop_after=3))
    stream = await client.chat(alice, session["id"], "count")
    assert stream.names[-2:] == ["error", "end"]
    assert stream.events[-2].json["code"] == "provider_error"
    assert stream.text == "w0 w1 w2"  # the held "2" reached the client before the error
    _, assistant = await wait_for(lambda: stored_pair(redis, conv["id"]))
    assert (assistant["status"], assistant["content"]) == ("error", "w0 w1 w2")
    mid = stream.events[0].json["message_id"]
    logged = [
        d
        for _, e in await redis.xrange(keys.resume_log(conv["id"], mid))
        if e[b"t"] == b"c"
        for d in json.loads(e[b"d"])
    ]
    assert "".join(logged) == "w0 w1 w2"  # and a resumed reader gets it too


async def test_held_back_digits_survive_a_stop(client, alice, upstream, redis):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=[f"x{i}" for i in range(1, 200)], delay=0.05))
    ctx, r, chunks = await open_stream(client, alice, session["id"], "long")
    got = b""
    async for chunk in chunks:
        got += chunk
        if frames(got).text.startswith("x1x2x"):
            break
    mid = frames(got).events[0].json["message_id"]
    stop = await client.http.post(
        f"/api/conversation/stop?org_id={ORG}", json={"message_id": mid}, headers=bearer(alice)
    )
    assert stop.status_code == 202
    async for chunk in chunks:
        got += chunk
    await ctx.__aexit__(None, None, None)
    stream = parse_sse(got)
    assert stream.events[-1].json["finish_reason"] == "cancelled"
    _, assistant = await wait_for(lambda: stored_pair(redis, conv["id"]))
    assert assistant["status"] == "cancelled"
    assert assistant["content"] == stream.text  # what the client saw is what is stored
    assert stream.text[-1].isdigit()  # the digits held back when the stop came were kept


async def test_held_back_digits_survive_a_client_that_leaves(client, alice, upstream, redis):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=["w0 ", "w1 ", "w2", " later"], delay=0.4))
    ctx, r, chunks = await open_stream(client, alice, session["id"], "count")
    got = b""
    async for chunk in chunks:
        got += chunk
        if frames(got).text == "w0 w1 w":  # "w2" arrived; its "2" is held back
            break
    await ctx.__aexit__(None, None, None)
    _, assistant = await wait_for(lambda: stored_pair(redis, conv["id"]))
    assert (assistant["status"], assistant["content"]) == ("cancelled", "w0 w1 w2")
