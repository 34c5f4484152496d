"""A stop is shared state, not only a pub/sub message: a worker whose subscription was down
when the stop was published still finds it (gw:stop:<id>) once it listens again."""

from __future__ import annotations

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.support import parse_sse
from tests.turn.test_stream_faults import open_stream, read_until, session_for, stored


async def test_a_stop_published_while_the_worker_was_not_listening_still_stops_it(
    client, alice, upstream, redis
):
    conv, session = await session_for(client, alice)
    upstream.script(Reply(chunks=[f"t{i} " for i in range(400)], delay=0.02))
    ctx, _, chunks = await open_stream(client, alice, session["id"], "long")
    got = await read_until(chunks, b"event: content", 3)
    mid = parse_sse(got.split(b"event: content")[0]).events[0].json["message_id"]
    # the worker's subscriptions drop; a stop is requested meanwhile, its message lost
    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await redis.set(keys.stop_request(mid), "1", ex=600)
    async for chunk in chunks:  # the listener comes back within ~1 s and finds the request
        got += chunk
    await ctx.__aexit__(None, None, None)
    stream = parse_sse(got)
    assert stream.events[-1].json["finish_reason"] == "cancelled"
    assert len(stream.of("content")) < 200
    assert (await stored(redis, conv["id"]))[1]["status"] == "cancelled"
