"""The small stand-ins EdgeProtocol gives uvicorn for its per-connection asyncio.Events and
pipeline deque: they must behave as uvicorn expects of those, or a request would hang or a
pipelined one run out of order; and the disconnect EdgeProtocol tells a stream of, also when
the client left before the stream began."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from gateway.api.sse import EventStream
from gateway.server import Edge, EdgeLimits, ServerConfig, _Event, _Pipeline
from gateway.settings import load_settings


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


async def test_a_client_gone_before_its_stream_began_ends_the_stream_at_once():
    """Under our server an EventStream learns of a vanished client from the connection; one
    that left while its request was being prepared is gone before the stream registers, and
    must end it at once (an upstream would otherwise stream a whole answer to nobody)."""
    may_answer, answered = asyncio.Event(), asyncio.Event()

    async def never_ends() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        await asyncio.Event().wait()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await may_answer.wait()  # the request's preparation, while the client leaves
        await EventStream(never_ends(), ping_interval=30, send_timeout=30)(scope, receive, send)
        answered.set()

    settings = load_settings(env={"GATEWAY_REDIS_URL": "redis://unused"})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = ServerConfig(
        app, edge=Edge(EdgeLimits.of(settings)), lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # the server has seen the connection go
        may_answer.set()
        await asyncio.wait_for(answered.wait(), 3)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
