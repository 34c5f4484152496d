"""Resume followers: the clients that attach to a running or finished answer through the
resume routes. Each message followed on this worker has one reader (a Feed): it reads the
log once from its start, then waits on Redis for what lands next, on a connection of the
readers' own pool (never the requests' pool), and hands every entry to all of the message's
followers in memory. So 2,000 followers of one message cost one blocking read, not 2,000.

Followers are capped per user and per message on this worker (`resume_followers_per_user`,
`resume_followers_per_message`): beyond, 429 with Retry-After before the stream starts.

A producer is declared lost only when its heartbeat key is absent (read on the control
connections, gateway/storage/store.py), never because our own reads were slow: quiet
for PRODUCER_CHECK_AFTER seconds, the reader asks; if the worker is gone it looks at the log
once more, then stores the partial answer in the producer's place (gateway/turn/salvage.py),
whose error and end entries every follower then reads like any others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

from redis.exceptions import RedisError

from gateway.backoff import Backoff
from gateway.errors import RateLimited
from gateway.settings import Settings
from gateway.storage.store import Store
from gateway.turn.events import ChatEvent
from gateway.turn.resume_log import Entry, replay
from gateway.turn.salvage import LOST, Salvage

log = logging.getLogger("gateway.resume")

FOLLOW_BLOCK_MS = 1000
PRODUCER_CHECK_AFTER = 3.0  # seconds without a new entry before asking whether the producer lives
RETRY_AFTER = "5"  # seconds a refused follower is told to wait (followers leave as answers end)
READ_AGAIN = Backoff(first=0.2, factor=2.0, cap=2.0)  # Redis away: followers wait, with pings


class Feed:
    """One message's reader on this worker, and the log as read so far (from its start)."""

    def __init__(self, store: Store, salvage: Salvage, cid: str, mid: str) -> None:
        self.store, self.salvage, self.cid, self.mid = store, salvage, cid, mid
        self.entries: list[Entry] = []
        self.followers = 0
        self.done = False
        self.opened: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._next: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._read(), name=f"gateway-feed-{mid}")

    async def batches(self) -> AsyncIterator[list[Entry]]:
        """Every entry from the log's start, in order, as it comes."""
        seen = 0
        while True:
            if seen < len(self.entries):
                batch, seen = self.entries[seen:], len(self.entries)
                yield batch
            elif self.done:
                return
            else:
                await asyncio.shield(self._next)  # shared: one follower leaving cancels no other

    def _add(self, entries: list[Entry]) -> None:
        if entries:
            self.entries.extend(entries)
            self._wake()

    def _wake(self) -> None:
        woken, self._next = self._next, asyncio.get_running_loop().create_future()
        woken.set_result(None)

    @property
    def ended(self) -> bool:
        return bool(self.entries) and self.entries[-1][1].get("t") == "end"

    async def _read(self) -> None:
        logs = self.store.resume_readers
        try:
            try:
                self._add(await logs.read(self.cid, self.mid))
            except Exception as exc:  # the route answers it (503 for Redis away)
                self.opened.set_exception(exc)
                return
            self.opened.set_result(bool(self.entries))
            quiet_since = time.monotonic()
            failures = 0
            while self.entries and not self.ended:
                try:
                    found = await logs.follow(
                        self.cid, self.mid, self.entries[-1][0], FOLLOW_BLOCK_MS
                    )
                except RedisError as exc:
                    failures += 1
                    log.warning("resume reader of %s: %s", self.mid, type(exc).__name__)
                    await asyncio.sleep(READ_AGAIN.delay(failures))
                    continue
                failures = 0
                if found:
                    self._add(found)
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > PRODUCER_CHECK_AFTER:
                    if await self._producer_alive():
                        quiet_since = time.monotonic()
                    else:
                        await asyncio.shield(self._producer_lost())
        finally:
            if not self.opened.done():  # cancelled before its first read (shutdown)
                self.opened.cancel()
            self.done = True
            self._wake()

    async def _producer_alive(self) -> bool:
        start = self.entries[0][1]
        worker = _worker_of(start)
        if worker is None:
            return False
        try:
            return await self.store.pubsub.worker_alive(worker)
        except RedisError:
            return True  # we cannot tell: never declare it lost for a failure of our own

    async def _producer_lost(self) -> None:
        """Its heartbeat is gone: one last look at the log (its end may just have landed),
        then its answer so far is stored in its place; the script's error and end entries
        reach the followers through the next read. If Redis refuses the write, the
        followers are told so (stored: false) and the next prompt's lock check retries it."""
        try:
            late = await self.store.resume_readers.read(self.cid, self.mid, self.entries[-1][0])
            if late:
                self._add(late)
                return
            if await self.salvage.lost_answer(self.cid, self.entries) is not None:
                return
        except RedisError as exc:
            log.error(
                "message %s: its producer is gone and its answer could not be stored yet (%s)",
                self.mid,
                type(exc).__name__,
            )
        self._add(_unstored_end(self.mid, self.entries[-1][0]))


def _worker_of(start: dict[str, str]) -> str | None:
    worker = json.loads(start.get("d") or "{}").get("worker") if start.get("t") == "start" else None
    return str(worker) if worker else None


def _unstored_end(mid: str, last_id: str) -> list[Entry]:
    """The error and end a follower gets when the lost answer could not be stored now."""
    end = {
        "message_id": mid,
        "finish_reason": "error",
        "input_tokens": 0,
        "output_tokens": 0,
        "usage_estimated": True,
        "stored": False,
    }
    return [
        (
            last_id,
            {"t": "error", "s": "0", "d": json.dumps({"code": LOST.code, "message": LOST.message})},
        ),
        (last_id, {"t": "end", "s": "0", "d": json.dumps(end)}),
    ]


class Ticket:
    """One follower's place: taken before its stream starts, given back when it ends."""

    def __init__(self, hub: Followers, feed: Feed, who: str) -> None:
        self.hub, self.feed, self.who = hub, feed, who
        self.released = False

    async def open(self) -> bool:
        """Whether the log exists (its first read done); a Redis failure raises."""
        return await asyncio.shield(self.feed.opened)

    def events(self, after: int) -> AsyncIterator[ChatEvent]:
        return replay(self.feed.batches(), after)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub._left(self)


class Followers:
    def __init__(self, settings: Settings, store: Store, salvage: Salvage) -> None:
        self.per_user = settings.resume_followers_per_user
        self.per_message = settings.resume_followers_per_message
        self.store = store
        self.salvage = salvage
        self.feeds: dict[tuple[str, str], Feed] = {}
        self.users: dict[str, int] = {}

    def admit(self, cid: str, mid: str, who: str) -> Ticket:
        """A place for one more follower of `mid` (of conversation `cid`) for `who` (the
        caller's org and user), or 429."""
        feed = self.feeds.get((cid, mid))
        if feed is not None and feed.followers >= self.per_message:
            raise _refused(f"this answer has {self.per_message} followers on this server already")
        if self.users.get(who, 0) >= self.per_user:
            raise _refused(f"you follow {self.per_user} answers on this server already")
        if feed is None:
            feed = self.feeds[(cid, mid)] = Feed(self.store, self.salvage, cid, mid)
        feed.followers += 1
        self.users[who] = self.users.get(who, 0) + 1
        return Ticket(self, feed, who)

    def _left(self, ticket: Ticket) -> None:
        feed = ticket.feed
        feed.followers -= 1
        left = self.users.get(ticket.who, 1) - 1
        if left:
            self.users[ticket.who] = left
        else:
            self.users.pop(ticket.who, None)
        if feed.followers == 0:
            if self.feeds.get((feed.cid, feed.mid)) is feed:
                del self.feeds[(feed.cid, feed.mid)]
            feed.task.cancel()  # no one reads it any more (a salvage in progress is shielded)

    async def close(self) -> None:
        feeds = list(self.feeds.values())
        self.feeds.clear()
        for feed in feeds:
            feed.task.cancel()
        for feed in feeds:
            with contextlib.suppress(BaseException):
                await feed.task


def _refused(message: str) -> RateLimited:
    return RateLimited(message, code="too_many_followers", headers={"Retry-After": RETRY_AFTER})
