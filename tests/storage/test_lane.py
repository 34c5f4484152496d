"""The Lane: every batch of a client on one shared connection, each answered with its own
replies in order, and failures that fail only the batches they reach."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import hiredis
import pytest
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from gateway.storage import client, lane
from gateway.storage.batch import Batch
from tests.redis_proxy import RedisProxy


@pytest.fixture
async def plain(redis_url: str, redis) -> AsyncIterator[object]:
    """A gateway client of the test Redis (decoded replies), closed with its Lane."""
    r = client.connect(redis_url)
    yield r
    await client.close(r)


async def lane_id(r) -> int:
    """The id Redis gives the client's Lane connection (asked on the Lane itself)."""
    (found,) = await lane.lane(r).call(hiredis.pack_command(("CLIENT", "ID")), 1)
    return int(found)


async def connections_received(redis) -> int:
    return int((await redis.info("stats"))["total_connections_received"])


async def test_concurrent_batches_share_one_connection_and_get_their_own_replies(plain, redis):
    async def turn(i: int) -> list:
        b = Batch(plain)
        b.set(f"k{i}", i)
        b.incrby(f"k{i}", 1000)
        b.get(f"k{i}")
        b.hgetall("missing")
        return await b.execute()

    first = await lane_id(plain)
    opened = await connections_received(redis)
    answers = await asyncio.gather(*(turn(i) for i in range(300)))

    assert answers == [[True, 1000 + i, str(1000 + i), {}] for i in range(300)]
    assert await connections_received(redis) == opened  # no connection opened for them
    assert await lane_id(plain) == first


async def test_a_cancelled_batch_leaves_the_next_one_in_step(plain, redis):
    await redis.set("big", "x" * 2_000_000)
    slow = Batch(plain)
    slow.get("big")
    waiting = asyncio.ensure_future(slow.execute())
    await asyncio.sleep(0)  # written; its reply is on its way
    waiting.cancel()
    after = Batch(plain)
    after.set("small", "1")
    after.get("small")

    assert await after.execute() == [True, "1"]
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_large_batch_and_a_large_reply_cross_many_reads_and_writes(plain, redis):
    value = "é" * 3_000_000  # 6 MB each way: the transport pauses the writer
    b = Batch(plain)
    for i in range(3):
        b.set(f"v{i}", value)
    for i in range(3):
        b.strlen(f"v{i}")
    b.get("v2")

    assert await b.execute() == [True] * 3 + [6_000_000] * 3 + [value]


async def test_an_error_reply_fails_its_batch_only(plain, redis):
    await redis.rpush("list", "x")
    bad, good = Batch(plain), Batch(plain)
    bad.hget("list", "f")  # WRONGTYPE
    bad.set("after-bad", "1")
    good.get("after-bad")

    results = await asyncio.gather(bad.execute(), good.execute(), return_exceptions=True)

    assert isinstance(results[0], ResponseError) and "command #1 (HGET)" in str(results[0])
    assert results[1] in (["1"], [None])  # whichever Redis ran first; answered either way
    assert await redis.get("after-bad") == b"1"


async def test_a_lost_connection_is_opened_again_for_the_next_batch(plain, redis):
    first = Batch(plain)
    first.set("x", "1")
    await first.execute()
    before = await lane_id(plain)
    await redis.client_kill_filter(_id=before)
    await asyncio.sleep(0.05)  # the lane sees the close before it writes again

    again = Batch(plain)
    again.get("x")
    assert await again.execute() == ["1"]
    assert await lane_id(plain) != before


async def test_a_connection_redis_answered_on_lately_is_taken_as_up_and_no_longer(redis_url, redis):
    # What lets a direct turn skip its PING (Store.answered_lately): Redis sent something on
    # the open connection within the window; not before a first answer, not once the
    # connection is lost, not once Redis has been silent for longer than the window.
    proxy = await RedisProxy(redis_url).start()
    r = client.connect(proxy.url, socket_timeout=2)
    shared = lane.lane(r)
    try:
        assert not shared.answered_within(60)  # never opened
        warm = Batch(r)
        warm.execute_command("PING")
        await warm.execute()
        assert shared.answered_within(0.5)
        proxy.hold_replies = 1.0  # Redis hangs: the connection stays open, nothing comes
        hung = asyncio.ensure_future(Batch(r).set("h", "1").execute())
        await asyncio.sleep(0.3)
        assert shared.answered_within(0.5) and not shared.answered_within(0.2)
        await asyncio.sleep(0.3)
        assert not shared.answered_within(0.5)  # silent for longer than the window
        proxy.hold_replies = 0.0
        await hung
        assert shared.answered_within(0.5)
        await redis.client_kill_filter(_id=await lane_id(r))
        await asyncio.sleep(0.05)
        assert not shared.answered_within(60)  # lost: known at once
    finally:
        await client.close(r)
        await proxy.stop()


async def test_a_silent_redis_fails_the_waiting_batches_with_a_timeout(redis_url, redis):
    proxy = await RedisProxy(redis_url).start()
    slow = client.connect(proxy.url, socket_timeout=0.3)
    try:
        warm = Batch(slow)
        warm.set("t", "1")
        await warm.execute()  # the connection is open and its handshake done
        proxy.hold_replies = 1.0
        batches = []
        for _ in range(3):
            b = Batch(slow)
            b.incr("t")
            batches.append(b.execute())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = await asyncio.gather(*batches, return_exceptions=True)

        assert all(isinstance(r, TimeoutError) for r in results), results
        assert loop.time() - t0 < 0.9  # by the socket timeout, not by the late replies
        proxy.hold_replies = 0.0
        after = Batch(slow)
        after.get("t")
        # a new connection; the late replies of the old one went nowhere
        assert await after.execute() == ["4"]  # the three INCRs ran: Redis got them
    finally:
        await client.close(slow)
        await proxy.stop()


async def test_a_closed_redis_fails_the_waiting_batches_and_nothing_else(redis_url, redis):
    proxy = await RedisProxy(redis_url, hold_replies=0.0).start()
    gone = client.connect(proxy.url)
    try:
        warm = Batch(gone)
        warm.execute_command("PING")
        await warm.execute()
        proxy.hold_replies = 0.5
        b = Batch(gone)
        b.set("during", "1")
        waiting = asyncio.ensure_future(b.execute())
        await asyncio.sleep(0.1)
        await proxy.stop()  # closes every link: the reply never comes

        with pytest.raises(ConnectionError) as cut:
            await waiting
        # written before the cut: Redis may have run it (a turn's begin step then releases
        # the lock it may hold once Redis is back)
        assert not isinstance(cut.value, lane.NotSent)
        after = Batch(gone)
        after.get("during")
        with pytest.raises(lane.NotSent):  # nothing listens there any more: never written
            await after.execute()
    finally:
        await client.close(gone)


async def test_a_blocking_command_takes_a_connection_of_its_own(plain, redis):
    waits = Batch(plain)
    waits.set("w", "1")
    waits.execute_command("WAIT", 1, 400)  # no replica: blocks its connection 400 ms
    assert waits.own_connection
    blocked = asyncio.ensure_future(waits.execute())
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    quick = Batch(plain)
    quick.get("w")

    assert await quick.execute() == ["1"]
    assert loop.time() - t0 < 0.3  # not behind the WAIT
    assert await blocked == [True, 0]


async def test_a_sentinel_managed_client_keeps_its_pool(redis_url):
    from redis.asyncio.sentinel import Sentinel

    managed = Sentinel([("127.0.0.1", 1)]).master_for("mymaster")
    assert lane.lane(managed) is None
    assert lane.lane(client.connect(redis_url)) is not None


@pytest.fixture
async def wired(redis_url: str) -> AsyncIterator[tuple[lane._Wire, socket.socket]]:
    """A Lane's wire on one end of a real socket pair; the test speaks for Redis on the other."""
    here, there = socket.socketpair()
    conn = client.connect(redis_url).connection_pool.make_connection()
    loop = asyncio.get_running_loop()
    wire = lane._Wire(loop, lane._reader(conn), 1.0, "the peer")
    wire.transport, _ = await loop.connect_accepted_socket(lambda: wire, here)
    there.setblocking(False)
    yield wire, there
    there.close()
    if wire.open:
        wire.fail(ConnectionError("the test is over"))


async def test_a_reply_nothing_asked_for_drops_the_connection(wired):
    wire, peer = wired
    peer.send(b"+OK\r\n")  # no batch is waiting for it
    for _ in range(50):
        await asyncio.sleep(0.01)
        if not wire.open:
            break
    assert not wire.open
    with pytest.raises(ConnectionError, match="closed"):
        await wire.call(b"*1\r\n$4\r\nPING\r\n", 1)


async def test_a_protocol_error_fails_the_waiting_batch(wired):
    wire, peer = wired
    waiting = asyncio.ensure_future(wire.call(b"*1\r\n$4\r\nPING\r\n", 1))
    await asyncio.sleep(0.01)
    assert peer.recv(100) == b"*1\r\n$4\r\nPING\r\n"
    peer.send(b"?not RESP\r\n")

    with pytest.raises(ConnectionError, match="Protocol error"):
        await waiting
    assert not wire.open


async def test_replies_split_anywhere_reach_their_batches_in_order(wired):
    wire, peer = wired
    first = asyncio.ensure_future(wire.call(b"<two commands>", 2))
    second = asyncio.ensure_future(wire.call(b"<one command>", 1))
    await asyncio.sleep(0.01)
    replies = b":1\r\n$5\r\nhello\r\n*2\r\n:7\r\n-ERR no such thing\r\n"
    for i in range(len(replies)):  # a byte at a time: every split a read can make
        peer.send(replies[i : i + 1])
        await asyncio.sleep(0)

    assert await first == [1, "hello"]
    (array,) = await second
    assert array[0] == 7 and isinstance(array[1], ResponseError)
    assert wire.open
