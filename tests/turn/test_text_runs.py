"""Deltas that come in one read of the upstream's body go through the turn as one TextRun
(providers/base.py): the policies and the encoders take them in one pass, and the client
still gets each delta as its own frame, numbered, stored and replayable as one by one."""

from __future__ import annotations

from gateway.api.compat.openai import ChunkFrames
from gateway.api.sse import ContentFrames
from tests.api.compat.support import make_key, openai_client  # noqa: F401  # a fixture
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse
from tests.turn.test_stream_faults import session_for, stored

WORDS = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)} " for i in range(40)]  # no digits
KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_0-9"


async def test_each_delta_of_a_read_is_its_own_frame_stored_and_replayed(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=WORDS, together=True))
    events = await client.chat(alice, session["id"], "count")
    content = events.of("content")
    mid = events.events[0].json["message_id"]
    assert [e.json["delta"] for e in content] == WORDS
    assert [e.id for e in content] == [f"{mid}:{n}" for n in range(1, len(WORDS) + 1)]
    assert events.names[-1] == "end" and events.events[-1].json["finish_reason"] == "stop"
    answer = (await stored(redis, conv["id"]))[-1]
    assert answer["role"] == "assistant" and answer["content"] == "".join(WORDS)
    # a client that saw 15 frames comes back: the resume log replays the other 25
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}",
        headers={**bearer(alice), "Last-Event-ID": f"{mid}:15"},
    )
    assert r.status_code == 200, r.text
    replayed = parse_sse(r.content).of("content")
    assert [e.json["delta"] for e in replayed] == WORDS[15:]
    assert replayed[0].id == f"{mid}:16"


async def test_a_secret_inside_a_read_is_blocked_before_its_first_character(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    pieces = WORDS[:6] + ["here: ", KEY[:5], KEY[5:12], KEY[12:30], KEY[30:]] + WORDS[6:12]
    upstream.script(Reply(chunks=pieces, together=True))
    r, raw = await client.stream_chat(alice, session["id"], "leak it")
    events = parse_sse(raw)
    assert KEY[:3].encode() not in raw and b"Ab3d" not in raw
    sent = "".join(e.json["delta"] for e in events.of("content"))
    assert sent == "".join(WORDS[:6]) + "here: "
    assert events.of("error")[0].json["code"] == "policy_blocked"
    assert events.events[-1].json["finish_reason"] == "policy_blocked"
    answer = (await stored(redis, conv["id"]))[-1]
    assert answer["finish_reason"] == "policy_blocked" and KEY[:8] not in answer["content"]


async def test_a_card_inside_a_read_is_redacted_in_the_frames_and_the_store(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    pieces = ["pay with ", "4111 ", "1111 ", "1111 ", "1111", " today", " please"]
    upstream.script(Reply(chunks=pieces, together=True))
    events = await client.chat(alice, session["id"], "card")
    sent = "".join(e.json["delta"] for e in events.of("content"))
    assert sent == "pay with [REDACTED:card] today please"
    answer = (await stored(redis, conv["id"]))[-1]
    assert answer["content"] == sent


async def test_the_openai_sdk_gets_every_delta_of_a_read(
    gateway_server,
    upstream,
    make_key,  # noqa: F811  # the fixture imported above
):
    key = await make_key()
    upstream.script(Reply(chunks=WORDS, together=True))
    async with openai_client(gateway_server, key.key) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "count"}], stream=True
        )
        deltas = [c.choices[0].delta.content async for c in stream if c.choices]
    assert [d for d in deltas if d] == WORDS


def test_a_runs_frames_are_the_frames_of_its_texts_one_by_one():
    """The encoders' one pass over a TextRun writes what a frame per text would: the same
    JSON escapes (line separators too) and the same numbering."""
    texts = ["plain ", 'quote" and \\ ', "\u2028 line sep", "été\n", "\x85", "😀"]
    whole, single = ContentFrames("m1", 3), ContentFrames("m1", 3)
    assert whole.run(texts) == b"".join(single(t) for t in texts)
    assert whole.seq == single.seq == 3 + len(texts)
    chunks = ChunkFrames("chatcmpl-1", 1, "gpt", include_usage=True)
    assert chunks.run(texts) == b"".join(chunks.content(t) for t in texts)
    assert b"\xe2\x80\xa8" not in whole.run(texts) + chunks.run(texts)
