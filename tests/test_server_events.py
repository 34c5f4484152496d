"""The small stand-ins EdgeProtocol gives uvicorn for its per-connection asyncio.Events and
pipeline deque: they must behave as uvicorn expects of those, or a request would hang or a
pipelined one run out of order."""

from __future__ import annotations

import asyncio

import pytest

from gateway.server import _Event, _Pipeline


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
