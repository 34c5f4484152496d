"""The SSE response's sending loop, driven through its ASGI interface: what goes out in
one write, what is never held back, and how a vanished client ends the body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.api.sse import COALESCE_BYTES, EAGER_FRAMES, EventStream, Final

SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}


class Wire:
    """The server side of one response: what was sent, and a client that may leave."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.messages: list[dict[str, Any]] = []  # every body message, the empty ones too
        self.sent = asyncio.Event()
        self.gone = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.messages.append(message)
        if message["type"] == "http.response.body" and message["body"]:
            self.bodies.append(message["body"])
            self.sent.set()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


def stream(body: AsyncIterator[bytes]) -> EventStream:
    return EventStream(body, ping_interval=30, send_timeout=30)


async def first_write(wire: Wire, body: AsyncIterator[bytes]) -> asyncio.Task[None]:
    """The response to `body`, begun in a task, once its first write has gone out."""
    response = asyncio.create_task(stream(body)(SCOPE, wire.receive, wire.send))
    await asyncio.wait_for(wire.sent.wait(), 5)
    return response


async def test_the_first_frame_of_a_read_goes_at_once_the_rest_in_one_write():
    read = asyncio.Event()
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"start\n\n"
        await read.wait()  # the upstream read
        for i in range(50):  # its deltas, all ready together
            yield b"frame %d\n\n" % i
        await release.wait()
        yield b"last\n\n"

    wire = Wire()
    response = await first_write(wire, body())
    assert wire.bodies == [b"start\n\n"]  # sent when the body began to wait
    read.set()
    for _ in range(100):
        if len(wire.bodies) == 3:
            break
        await asyncio.sleep(0.001)
    # the first delta alone (time to first token), then the other 49 in one write, sent
    # before the body waited again, not held until it went on
    assert wire.bodies[1:] == [b"frame 0\n\n", b"".join(b"frame %d\n\n" % i for i in range(1, 50))]
    release.set()
    await asyncio.wait_for(response, 5)
    assert wire.bodies[3:] == [b"last\n\n"]


async def test_a_frame_after_a_wait_is_sent_before_the_body_goes_on():
    writes_seen: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.001)  # paced: one delta per upstream read
            yield b"frame %d\n\n" % i
            writes_seen.append(len(wire.bodies))  # writes done when the body resumes

    wire = Wire()
    await asyncio.wait_for(stream(body())(SCOPE, wire.receive, wire.send), 5)
    assert wire.bodies == [b"frame %d\n\n" % i for i in range(5)]
    assert writes_seen == [1, 2, 3, 4, 5]


async def test_the_start_and_first_content_go_at_once_when_the_upstream_had_more_ready():
    made: list[int] = []  # writes done when each frame was made

    async def body() -> AsyncIterator[bytes]:
        yield b"start\n\n"
        for i in range(50):  # one upstream read held all 50 deltas: no wait between them
            made.append(len(wire.bodies))
            yield b"frame %d\n\n" % i

    wire = Wire()
    await asyncio.wait_for(stream(body())(SCOPE, wire.receive, wire.send), 5)
    assert EAGER_FRAMES == 2
    # the start and the first delta in the first write, before the other 49 were made
    assert wire.bodies[0] == b"start\n\nframe 0\n\n"
    assert made[1] == 1
    assert wire.bodies[1:] == [b"".join(b"frame %d\n\n" % i for i in range(1, 50))]


async def test_one_write_holds_at_most_the_coalescing_limit():
    piece = b"x" * 1000 + b"\n\n"

    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield piece

    wire = Wire()
    await asyncio.wait_for(stream(body())(SCOPE, wire.receive, wire.send), 5)
    assert b"".join(wire.bodies) == piece * 100
    assert len(wire.bodies) > 1
    assert all(len(b) < COALESCE_BYTES + len(piece) for b in wire.bodies)


async def test_the_final_frames_go_in_the_write_that_ends_the_response():
    async def body(last: bytes) -> AsyncIterator[bytes]:
        yield b"start\n\n"
        await asyncio.sleep(0.001)  # the upstream read
        yield b"frame\n\n"
        await asyncio.sleep(0.001)  # the answer is recorded
        yield last

    def sent(wire: Wire) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in wire.messages]

    wire = Wire()
    await asyncio.wait_for(stream(body(Final(b"end\n\n")))(SCOPE, wire.receive, wire.send), 5)
    assert sent(wire) == [(b"start\n\n", True), (b"frame\n\n", True), (b"end\n\n", False)]
    # a frame not marked Final goes at once, as before, and the end follows on its own
    wire = Wire()
    await asyncio.wait_for(stream(body(b"end\n\n"))(SCOPE, wire.receive, wire.send), 5)
    assert sent(wire)[2:] == [(b"end\n\n", True), (b"", False)]


async def test_a_final_frame_is_not_held_when_the_body_waits_after_it():
    went_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield Final(b"end\n\n")
        await went_on.wait()  # not the body's end after all
        yield b"more\n\n"

    wire = Wire()
    response = await first_write(wire, body())
    assert wire.bodies == [b"end\n\n"]  # sent when the body began to wait
    went_on.set()
    await asyncio.wait_for(response, 5)
    sent = [(m["body"], m["more_body"]) for m in wire.messages]
    assert sent == [(b"end\n\n", True), (b"more\n\n", True), (b"", False)]


async def stalled(waiting: asyncio.Event, cleaned: asyncio.Event) -> AsyncIterator[bytes]:
    """A body that sends one frame, then waits on an upstream that never sends again; its
    finally marks it cleaned."""
    try:
        yield b"first\n\n"
        waiting.set()
        await asyncio.Event().wait()
        yield b"never\n\n"
    finally:
        await asyncio.sleep(0)  # the body may still await while it cleans up
        cleaned.set()


async def test_a_vanished_client_cancels_the_waiting_body_and_its_finally_runs():
    cleaned = asyncio.Event()
    waiting = asyncio.Event()

    wire = Wire()
    response = asyncio.create_task(
        stream(stalled(waiting, cleaned))(SCOPE, wire.receive, wire.send)
    )
    await asyncio.wait_for(waiting.wait(), 5)
    wire.gone.set()
    await asyncio.wait_for(response, 5)  # ends normally: the disconnect is ours, not an error
    assert cleaned.is_set()
    assert wire.bodies == [b"first\n\n"]


async def test_an_error_in_the_body_reaches_the_server():
    async def body() -> AsyncIterator[bytes]:
        yield b"first\n\n"
        await asyncio.sleep(0)
        raise RuntimeError("broken body")

    wire = Wire()
    try:
        await asyncio.wait_for(stream(body())(SCOPE, wire.receive, wire.send), 5)
    except RuntimeError as exc:
        assert str(exc) == "broken body"
    else:
        raise AssertionError("the body's error was swallowed")
    assert wire.bodies == [b"first\n\n"]


async def test_a_reader_that_stops_reading_mid_write_ends_the_waiting_body_cleanly():
    """Regression: the send timeout fired while a gathered write was blocked and the body's
    next step had already begun waiting; closing the body then raised "asynchronous
    generator is already running" and its finally never ran."""
    cleaned = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"start\n\n"
            await asyncio.sleep(0)
            yield b"one\n\n"  # sent alone: it came after a wait
            yield b"two\n\n"  # gathered...
            await asyncio.Event().wait()  # ...and flushed as the body starts this wait
            yield b"never\n\n"
        finally:
            await asyncio.sleep(0)
            cleaned.set()

    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            if len(sent) == 2:
                await asyncio.Event().wait()  # the client's window is full: never drains
            sent.append(message["body"])

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    response = EventStream(body(), ping_interval=0.05, send_timeout=0.05)
    await asyncio.wait_for(response(SCOPE, receive, send), 5)
    assert cleaned.is_set()
    assert sent == [b"start\n\n", b"one\n\n"]


class Connection:
    """Our server's side of the "gateway.disconnect" extension: one callback at a time."""

    def __init__(self) -> None:
        self.callback: Any = None
        self.registered = 0

    def on_disconnect(self, callback: Any) -> None:
        self.callback = callback
        self.registered += callback is not None


async def test_a_client_gone_as_told_by_the_server_cancels_the_body_without_a_listener():
    cleaned = asyncio.Event()
    waiting = asyncio.Event()

    async def receive() -> dict[str, Any]:
        raise AssertionError("receive() awaited although the server tells of a disconnect")

    wire, conn = Wire(), Connection()
    scope = {**SCOPE, "extensions": {"gateway.disconnect": conn}}
    response = asyncio.create_task(stream(stalled(waiting, cleaned))(scope, receive, wire.send))
    await asyncio.wait_for(waiting.wait(), 5)
    assert conn.registered == 1
    conn.callback()  # the connection was lost
    await asyncio.wait_for(response, 5)  # ends normally: the disconnect is ours, not an error
    assert cleaned.is_set()
    assert wire.bodies == [b"first\n\n"]
    assert conn.callback is None  # forgotten: a next request on the connection starts clean


async def test_a_stream_that_ends_forgets_its_disconnect_callback():
    async def body() -> AsyncIterator[bytes]:
        yield b"only\n\n"

    async def receive() -> dict[str, Any]:
        raise AssertionError("receive() awaited although the server tells of a disconnect")

    wire, conn = Wire(), Connection()
    scope = {**SCOPE, "extensions": {"gateway.disconnect": conn}}
    await asyncio.wait_for(stream(body())(scope, receive, wire.send), 5)
    assert conn.registered == 1 and conn.callback is None
    assert wire.bodies == [b"only\n\n"]
