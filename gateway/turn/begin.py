"""The step that begins a stored conversation's turn, the last before the provider: the
conversation's one-turn lock, the user's message and the resume log's start entry, in one
atomic script; 409 while another turn holds the lock, unless its worker is dead."""

from __future__ import annotations

import functools

from redis.exceptions import RedisError

from gateway.errors import Conflict
from gateway.settings import Settings
from gateway.storage.lane import NotSent
from gateway.storage.records import Message
from gateway.storage.store import Store
from gateway.turn import resume_log
from gateway.turn.context import HISTORY_LIMIT
from gateway.turn.known import Stale
from gateway.turn.live import Live
from gateway.turn.salvage import Salvage
from gateway.turn.turn import Turn


class Beginning:
    def __init__(self, settings: Settings, store: Store, live: Live, salvage: Salvage) -> None:
        self.settings = settings
        self.store = store
        self.live = live
        self.salvage = salvage

    async def begin(self, turn: Turn, *, known: bool) -> list[Message] | None:
        """The lock, the user's message (stored before the provider is called) and the
        resume log's start entry, atomically; 409 while another turn holds the lock. A
        `known` session's step also reads what a first turn reads before (gateway/turn/
        known.py): the history is returned; Stale, with nothing written, when the session
        or its conversation is gone or deleted."""
        assert turn.conversation is not None and turn.user_message is not None
        cid = turn.conversation.id
        turn.lock_value = f"{self.live.worker_id}:{turn.message_id}"
        held = turn.reservation
        producer = resume_log.Producer(
            worker=self.live.worker_id,
            org_id=turn.org_id,
            user_id=turn.principal.user_id,
            key_id=turn.principal.key_id,
            reserved_keys=held.keys if held else (),
            reserved_tokens=held.tokens if held else 0,
        )
        start = resume_log.start_entry(turn.start_event(), producer)
        for attempt in (1, 2):
            try:
                began, history = await self._step(turn, start, known)
            except NotSent:
                raise  # Redis away: nothing ran, no lock to release
            except RedisError:
                # the script may have run before its reply was lost (a failover, a cut
                # connection): release the lock it may hold, now or once Redis is back,
                # or the conversation stays busy for turn_lock_ttl
                self.live.retry_until_stored(
                    functools.partial(self.store.turns.break_lock, cid, turn.lock_value),
                    turn.message_id,
                )
                raise
            if began:
                return history
            holder = await self.store.turns.lock_holder(cid)
            # a lock whose worker died (crash, kill -9) is broken at once, not after its TTL,
            # once the answer it left half-written is stored in its place
            if (
                attempt == 1
                and holder
                and not await self.store.pubsub.worker_alive(holder.split(":")[0])
            ):
                await self.salvage.dead_lock(cid, holder)
                continue
            break
        raise Conflict(
            "another prompt of this conversation is still being answered",
            code="conversation_busy",
            headers={"Retry-After": "1"},
        )

    async def _step(
        self, turn: Turn, start: list[str], known: bool
    ) -> tuple[bool, list[Message] | None]:
        """The script itself: whether it took the lock, and a known session's history."""
        msg, lock = turn.user_message, turn.lock_value
        assert msg is not None and lock is not None
        read = await self.store.turns.begin(
            msg,
            answer_id=turn.message_id,
            lock_value=lock,
            lock_ttl_ms=int(self.settings.turn_lock_ttl * 1000),
            start_entry=start,
            log_ttl_s=self.settings.resume_ttl,
            history_limit=HISTORY_LIMIT if known else None,
        )
        if read.status < 0:
            raise Stale
        if read.status == 0:
            return False, None
        return True, read.history if known else None
