"""Turns in flight on this worker: stop signals from any worker (Redis pub/sub), the batched
resume log's writer, final writes waiting for Redis, and the heartbeat that tells other
workers this one is alive.

Nothing here is needed by the next request on another worker: the resume log, locks and
stop signals live in Redis; the in-memory registry only maps a message id to the cancel
scope of the turn that this worker happens to run.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.backoff import Backoff
from gateway.storage import keys
from gateway.storage.store import Store
from gateway.turn.resume_log import LogBuffer, LogWriter

log = logging.getLogger("gateway.live")

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL_MS = 6000
MAX_UNSTORED = 10_000  # final writes kept in memory while Redis is away
CLOSE_TIMEOUT = 5.0  # seconds the background tasks get to stop at shutdown
UNTIL_STORED = Backoff(first=0.5, factor=None, step=0.5, cap=5.0)  # 0.5 s, 1 s, ... 5 s, forever


@dataclass(slots=True)
class Running:
    """One turn this worker runs: how to stop it, and its not-yet-flushed deltas."""

    message_id: str
    log: LogBuffer | None  # None for a turn that cannot be resumed
    waiting: asyncio.Task[Any] | None = None  # set while the turn awaits its upstream
    stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        """Interrupt the upstream wait now; if the turn is busy sending a frame instead,
        it sees stop_reason before its next wait."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.waiting is not None:
            self.waiting.cancel()


class Live:
    def __init__(self, store: Store, *, shutdown_grace: float = 10.0) -> None:
        self.store = store
        self.shutdown_grace = shutdown_grace
        self.worker_id = secrets.token_hex(6)
        self.running: dict[str, Running] = {}
        self.writer = LogWriter(store)
        self._tasks: list[asyncio.Task[None]] = []
        self._unstored: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.store.pubsub.heartbeat(self.worker_id, HEARTBEAT_TTL_MS)
        self._tasks = [
            asyncio.create_task(self._listen_for_stops(), name="gateway-stop-listener"),
            asyncio.create_task(self._heartbeat(), name="gateway-heartbeat"),
            asyncio.create_task(self.writer.run(), name="gateway-resume-flusher"),
            asyncio.create_task(self._on_shutdown(), name="gateway-shutdown-watch"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        # bounded: a task that ignores its cancellation must not hold the shutdown forever
        _, stuck = await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
        if stuck:
            log.error("shutdown: %s did not stop", ", ".join(t.get_name() for t in stuck))
        await self.writer.flush()
        if self._unstored:  # a last chance for writes that wait for Redis
            _, lost = await asyncio.wait(self._unstored, timeout=5)
            for task in lost:
                task.cancel()
            if lost:
                log.error("STORAGE: %d answers were never stored (Redis stayed away)", len(lost))

    # -- the registry --------------------------------------------------------------------

    def register(self, message_id: str, conversation_id: str | None) -> Running:
        log = LogBuffer(conversation_id, message_id) if conversation_id is not None else None
        handle = Running(message_id, log)
        self.running[message_id] = handle
        return handle

    def unregister(self, handle: Running) -> None:
        self.running.pop(handle.message_id, None)
        if handle.log is not None:
            self.writer.forget(handle.log)

    def stop_all(self, reason: str) -> int:
        for handle in list(self.running.values()):
            handle.stop(reason)
        return len(self.running)

    async def request_stop(self, message_id: str) -> None:
        """Whichever worker runs the message stops it (this one included)."""
        handle = self.running.get(message_id)
        if handle is not None:
            handle.stop("cancelled")
            return
        await self.store.pubsub.request_stop(message_id)

    async def _missed_stops(self) -> None:
        """Once (re)subscribed: stops requested while this worker was not listening."""
        for message_id in await self.store.pubsub.stops_requested(list(self.running)):
            self._stop_requested(message_id)

    def _stop_requested(self, message_id: str) -> None:
        handle = self.running.get(message_id)
        if handle is not None:
            handle.stop("cancelled")

    async def _listen_for_stops(self) -> None:
        await self.store.pubsub.listen(
            keys.STOP_CHANNEL,
            self._stop_requested,
            what="stop listener",
            on_ready=self._missed_stops,
        )

    async def _on_shutdown(self) -> None:
        """On SIGTERM uvicorn stops accepting and waits; open streams get shutdown_grace
        to finish, then end with `end` {cancelled}, stored like any stop."""
        while not server_exiting():
            await asyncio.sleep(0.25)
        deadline = time.monotonic() + self.shutdown_grace
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.running:
            log.warning("shutdown: ending %d open streams", self.stop_all("cancelled"))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                await self.store.pubsub.heartbeat(self.worker_id, HEARTBEAT_TTL_MS)
            except Exception as exc:
                log.warning("heartbeat failed: %s", type(exc).__name__)

    @property
    def unstored(self) -> int:
        """Writes that wait for Redis to be back (retry_until_stored)."""
        return len(self._unstored)

    def retry_until_stored(self, write: Callable[[], Awaitable[Any]], message_id: str) -> None:
        """Keep a final write that Redis refused, and retry it until Redis is back."""
        if len(self._unstored) >= MAX_UNSTORED:
            log.error(
                "STORAGE: dropping message %s: %d writes already wait for Redis",
                message_id,
                len(self._unstored),
            )
            return
        task = asyncio.create_task(self._retry(write, message_id))
        self._unstored.add(task)
        task.add_done_callback(self._unstored.discard)

    async def _retry(self, write: Callable[[], Awaitable[Any]], message_id: str) -> None:
        failures = 0

        def failed(attempt: int, exc: Exception) -> None:
            nonlocal failures
            failures = attempt
            if attempt % 10 == 1:
                log.error(
                    "STORAGE: message %s still not stored (attempt %d: %s)",
                    message_id,
                    attempt,
                    type(exc).__name__,
                )

        await UNTIL_STORED.run(write, retry_on=(Exception,), on_error=failed)
        log.warning("STORAGE: message %s stored after %d attempts", message_id, failures + 1)


def server_exiting() -> bool:
    """uvicorn's Server installs its handle_exit as the SIGTERM/SIGINT handler while it
    serves, and sets should_exit when a signal arrives."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))


T = TypeVar("T")


async def detach(events: AsyncIterator[T]) -> AsyncIterator[T]:
    """Run `events` in a task of its own, so the client leaving does not stop it (the
    turn then finishes and is stored, and a client can come back through the resume log)."""
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait((False, event))
        except BaseException as exc:  # handed to the reader, if it is still there
            queue.put_nowait((True, exc))
            raise
        finally:
            queue.put_nowait((True, None))

    task = asyncio.create_task(pump())
    _detached.add(task)
    task.add_done_callback(_detached.discard)
    while True:
        done, item = await queue.get()
        if done:
            if isinstance(item, BaseException):
                raise item
            return
        yield item


_detached: set[asyncio.Task[None]] = set()  # strong references until each finishes
