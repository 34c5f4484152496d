"""What EdgeProtocol changes of uvicorn's per-connection state: the small stand-ins for its
asyncio.Events and pipeline deque must behave as uvicorn expects of those, or a request would
hang or a pipelined one run out of order; and the disconnect it tells a stream of (no
listener task per stream) must reach a stream that began after the client left."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gateway.api.sse import EventStream
from gateway.server import Edge, EdgeLimits, ServerConfig, _Event, _Pipeline

LIMITS = EdgeLimits(
    max_head_bytes=16_384,
    max_headers=100,
    header_timeout=10,
    body_timeout=10,
    max_connections=100,
    max_pending_per_client=10,
)


async def test_set_wakes_every_waiter_and_a_set_event_does_not_wait():
    event = _Event()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    event.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert event.is_set()
    assert await asyncio.wait_for(event.wait(), 1) is True


async def test_clear_makes_the_next_wait_wait_again():
    event = _Event()
    event.set()
    event.clear()
    assert not event.is_set()
    waiter = asyncio.create_task(event.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    event.set()
    assert await asyncio.wait_for(waiter, 1) is True


async def test_a_cancelled_waiter_is_forgotten_and_the_others_still_wake():
    event = _Event()
    gone = asyncio.create_task(event.wait())
    stays = asyncio.create_task(event.wait())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert event._waiters is not None and len(event._waiters) == 1
    event.set()
    assert await asyncio.wait_for(stays, 1) is True


def test_the_pipeline_is_first_in_first_out_as_uvicorn_uses_it():
    pipeline = _Pipeline()
    assert not pipeline
    pipeline.appendleft("first")
    pipeline.appendleft("second")
    assert pipeline.pop() == "first"
    assert pipeline.pop() == "second"
    assert not pipeline


async def test_a_client_gone_before_its_stream_began_ends_that_stream_at_once():
    """The connection closed while the app was still preparing the response (a turn's auth
    and Redis work): the stream, registered after the loss, must still be told of it.
    Nothing else would end it: a ping to a lost connection is dropped without an error."""
    began = asyncio.Event()
    cleaned = asyncio.Event()
    client_left = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"event: start\n\n"
            await asyncio.Event().wait()  # an upstream that never sends again
            yield b"never\n\n"
        finally:
            cleaned.set()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the whole request
        began.set()
        await client_left.wait()
        await EventStream(body(), ping_interval=30, send_timeout=30)(scope, receive, send)

    config = ServerConfig(app, edge=Edge(LIMITS), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}")
        await asyncio.wait_for(began.wait(), 5)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)  # the server has seen the end of the connection
        client_left.set()
        await asyncio.wait_for(cleaned.wait(), 2)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
