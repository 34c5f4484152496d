"""A turn in Redis: its context read, the one-turn lock with the user's message and the
resume log's first entry (one atomic step), and the end: the assistant's message, its
counters, the log's last entries and the lock's release (another), then WAIT for replicas.
A turn costs a fixed number of round trips, never one per token. The resume log's entry
format (fields t, s, d) belongs to gateway/turn/resume_log.py; these scripts only append
entries it encoded, and recognise its `end` entry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.batch import batch
from gateway.storage.durability import Replication
from gateway.storage.events import queue_violations
from gateway.storage.quotas import Reservation
from gateway.storage.records import (
    ChatSession,
    Conversation,
    Message,
    ParsedMessages,
    Totals,
    now_ms,
)
from gateway.storage.scripts import Script
from gateway.storage.usage import Tally, Usage


# What both begin scripts write once they hold the lock: the user's message, the
# conversation's updated_at, the resume log's start entry (its fields from ARGV[first] on)
# and the log's TTL. KEYS: the lock, messages, conversation, resume log; ARGV: lock value,
# lock TTL, the user's message, its time, log TTL.
def _begin_writes(first: int) -> str:
    return f"""
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], 'updated_at', ARGV[4])
local fields = {{}}
for i = {first}, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], '*', unpack(fields))
redis.call('EXPIRE', KEYS[4], ARGV[5])
"""


# Lock, user's message and the resume log's first entry: all or nothing, one slot.
_BEGIN_TURN = f"""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
{_begin_writes(6)}
return 1
"""

# The same step for a conversation the worker has prompted before (gateway/turn/known.py):
# it also reads what the turn needs of what load_context would have read, so the turn makes
# one round trip before its provider, not two. What the worker knows never changes (org,
# creator, workspace, repository, the session's model); what can (the session, the
# conversation, its deletion) is checked first, and -1, with nothing written, sends the turn
# to the full read. KEYS: those of _BEGIN_TURN, then the sessions; ARGV: those of
# _BEGIN_TURN, then the session id and the history limit, then the start entry.
_BEGIN_KNOWN_TURN = f"""
if redis.call('HEXISTS', KEYS[5], ARGV[6]) == 0 then return {{-1}} end
local conversation = redis.call('HMGET', KEYS[3], 'id', 'deleted_at')
if not conversation[1] or (conversation[2] and conversation[2] ~= '') then return {{-1}} end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {{0}} end
local history = redis.call('LRANGE', KEYS[2], -tonumber(ARGV[7]), -1)
{_begin_writes(8)}
return {{1, history}}
"""

# The end of a turn in one atomic step of the conversation's slot: the assistant's message,
# the counters it moves, the resume log's last entries (the end entry carrying the new
# totals), and the release of the one-turn lock if this turn still holds it.
# KEYS[3] (log) and KEYS[4] (lock) equal to KEYS[1] mean "none": a placeholder in the same
# slot, as a cluster refuses keys of other slots (an empty name is slot 0).
# A retry of a write that landed but whose reply was lost (a failover, a dropped
# connection) finds the log already ended and writes nothing twice; it still touches the
# hash, so a WAIT on its connection covers the first write too.
_END_TURN = """
local has_log = KEYS[3] ~= KEYS[1]
local last = has_log and redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
local tin, tout, cost
if last and last[2][2] == 'end' then
  tin = tonumber(redis.call('HGET', KEYS[1], 'tokens_in') or '0')
  tout = tonumber(redis.call('HGET', KEYS[1], 'tokens_out') or '0')
  cost = tonumber(redis.call('HGET', KEYS[1], 'cost_nusd') or '0')
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
  tin = redis.call('HINCRBY', KEYS[1], 'tokens_in', ARGV[2])
  tout = redis.call('HINCRBY', KEYS[1], 'tokens_out', ARGV[3])
  cost = redis.call('HINCRBY', KEYS[1], 'cost_nusd', ARGV[8])
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
  if has_log then
    for i = 9, #ARGV, 3 do
      redis.call('XADD', KEYS[3], '*', 't', ARGV[i], 's', ARGV[i + 1], 'd', ARGV[i + 2])
    end
    local e = cjson.decode(ARGV[7])
    e['totals'] = {tokens_in = tin, tokens_out = tout, cost_nusd = cost}
    redis.call('XADD', KEYS[3], '*', 't', 'end', 's', '0', 'd', cjson.encode(e))
    redis.call('EXPIRE', KEYS[3], ARGV[6])
  end
end
if KEYS[4] ~= KEYS[1] and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
return {tin, tout, cost}
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

LogEntry = tuple[str, str, str]  # (t, s, d) as gateway/turn/resume_log.py encodes them


def _queue_lookup(pipe: Any, message_id: str, cid: str, ttl_s: int) -> None:
    """The answer's message -> conversation lookup, as SET itself: redis-py's `set()`
    inspects its arguments for experimental ones on every call (~3.5 us)."""
    pipe.execute_command("SET", keys.message_lookup(message_id), cid, "EX", ttl_s)


@dataclass(slots=True)
class Began:
    """What begin did: 1 began (a known session's with the history before the user's
    message), 0 busy (another turn holds the lock), -1 gone (a known session, or its
    conversation, is no more, or was deleted); nothing is written unless it began."""

    status: int
    history: list[Message] = field(default_factory=list)


class Turns:
    def __init__(self, redis: Redis | RedisCluster, replication: Replication, usage: Usage) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.replication = replication
        self.usage = usage
        self._begin = Script(redis, _BEGIN_TURN)
        self._begin_known = Script(redis, _BEGIN_KNOWN_TURN)
        self._end = Script(redis, _END_TURN)
        self._release_lock = Script(redis, _RELEASE_LOCK)
        self.parsed = ParsedMessages()

    async def load_context(
        self, cid: str, sid: str, history_limit: int
    ) -> tuple[Conversation | None, ChatSession | None, list[Message]]:
        """Conversation, session and the last history_limit messages, in one round trip."""
        pipe = batch(self.redis)
        pipe.hgetall(keys.conversation(cid))
        pipe.hget(keys.sessions(cid), sid)
        pipe.lrange(keys.messages(cid), -history_limit, -1)
        h, raw_session, raw_messages = await pipe.execute()
        conv = Conversation.from_hash(h) if h else None
        session = ChatSession.from_json(raw_session) if raw_session else None
        parsed = self.parsed
        return conv, session, [parsed(m) for m in raw_messages]

    async def begin(
        self,
        msg: Message,
        *,
        answer_id: str,
        lock_value: str,
        lock_ttl_ms: int,
        start_entry: list[str],
        log_ttl_s: int,
        history_limit: int | None = None,
    ) -> Began:
        """Take the conversation's one-turn lock, store the user's message and open the
        resume log with `start_entry` (its fields, flat), atomically (one slot); status 0,
        and nothing written, when busy. With `history_limit`, for a session the worker
        knows (_BEGIN_KNOWN_TURN), also what load_context would have read that can change:
        whether the session and the conversation are still there and not deleted (-1 when
        not), and the last `history_limit` messages before the user's."""
        cid = msg.conversation_id
        keys_ = [
            keys.turn_lock(cid),
            keys.messages(cid),
            keys.conversation(cid),
            keys.resume_log(cid, answer_id),
        ]
        args: list[Any] = [lock_value, lock_ttl_ms, msg.to_json(), msg.created_at, log_ttl_s]
        pipe = batch(self.redis)
        if history_limit is None:
            self._begin.queue(pipe, keys_, [*args, *start_entry])
        else:
            assert msg.chat_session_id is not None
            keys_.append(keys.sessions(cid))
            args += [msg.chat_session_id, history_limit]
            self._begin_known.queue(pipe, keys_, [*args, *start_entry])
        _queue_lookup(pipe, answer_id, cid, log_ttl_s)
        reply, _ = await pipe.execute()
        if history_limit is None:
            return Began(int(reply))
        if reply[0] != 1:
            return Began(int(reply[0]))
        parsed = self.parsed
        return Began(1, [parsed(m) for m in reply[1]])

    async def lock_holder(self, cid: str) -> str | None:
        return cast(str | None, await self.redis.get(keys.turn_lock(cid)))

    async def break_lock(self, cid: str, value: str) -> bool:
        """Remove a lock whose holder is gone (compare-and-delete)."""
        return bool(await self._release_lock([keys.turn_lock(cid)], [value]))

    async def end(
        self,
        msg: Message,
        tally: Tally,
        *,
        lock_value: str | None,
        log: bool,
        log_entries: list[LogEntry],
        end_data: str,
        log_ttl_s: int,
        token_windows: Sequence[tuple[str, int]] = (),
        violations: Sequence[dict[str, Any]] = (),
        reservation: Reservation | None = None,
    ) -> Totals:
        """The assistant's message, its counters (tokens, cost), the resume log's last entries
        (`end_data` is the end entry's JSON, to which the script adds the totals) and the
        lock's release (one Lua script, one slot); the org's usage counters and buckets and
        the violations ride in the same round trip. Then WAIT for the replicas that
        Durability asks for, on the script's own connection: `replicated` says whether they
        acknowledged in time. Safe to call again after an error (see _END_TURN)."""
        cid = msg.conversation_id
        key = keys.conversation(cid)
        keys_ = [
            key,
            keys.messages(cid),
            keys.resume_log(cid, msg.id) if log else key,
            keys.turn_lock(cid) if lock_value else key,
        ]
        args = [
            msg.to_json(),
            msg.input_tokens,
            msg.output_tokens,
            now_ms(),
            lock_value or "",
            log_ttl_s,
            end_data,
            msg.cost_nusd,
            *[x for entry in log_entries for x in entry],
        ]
        if self.cluster:
            counters = self.redis.pipeline(transaction=False)
            self.usage.queue(counters, msg, tally, token_windows, reservation)
            queue_violations(counters, tally.org_id, violations)
            return await self._end_on_cluster(key, keys_, args, counters)
        wait = await self.replication.replicas_to_wait()
        pipe = batch(self.redis)
        self._end.queue(pipe, keys_, args)
        self.usage.queue(pipe, msg, tally, token_windows, reservation)
        queue_violations(pipe, tally.org_id, violations)
        self.replication.queue_wait(pipe, wait)
        results = await pipe.execute()
        tin, tout, cost = results[0]
        acked = int(results[-1]) if wait else 0
        if acked < wait:
            self.replication.forget_replicas()
        return Totals(int(tin), int(tout), int(cost), replicated=acked >= wait)

    async def _end_on_cluster(
        self, key: str, keys_: list[str], args: list[Any], counters: Any
    ) -> Totals:
        """The conversation's slot on its primary's own connection (script + WAIT), the org's
        counters (another slot, maybe another node) beside it."""
        (totals, wait, acked), _ = await asyncio.gather(
            self.replication.run_on_primary(key, self._end, keys_, args), counters.execute()
        )
        tin, tout, cost = totals
        return Totals(int(tin), int(tout), int(cost), replicated=acked >= wait)

    async def message_conversation_id(self, message_id: str) -> str | None:
        return cast(str | None, await self.redis.get(keys.message_lookup(message_id)))
