"""The only module that speaks Redis: key layout, atomic writes, counters and indexes.

Every key of one conversation shares the hash tag {c:<id>}, every org-wide index and
counter the tag {o:<org>}, so a Redis Cluster needs no data migration and no atomic
operation spans two slots. A turn costs a fixed number of round trips, never one per token.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

P = "gw:"


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def new_id() -> str:
    return str(uuid.uuid4())


# -- keys ---------------------------------------------------------------------------------

def conv_key(cid: str) -> str:
    return f"{P}{{c:{cid}}}"


def sessions_key(cid: str) -> str:
    return f"{P}{{c:{cid}}}:s"


def messages_key(cid: str) -> str:
    return f"{P}{{c:{cid}}}:m"


def session_lookup_key(sid: str) -> str:
    return f"{P}sess:{sid}"


def org_index_key(org: str, dimension: str = "", value: str = "") -> str:
    suffix = f":{dimension}:{value}" if dimension else ""
    return f"{P}{{o:{org}}}:convs{suffix}"


def org_usage_key(org: str) -> str:
    return f"{P}{{o:{org}}}:usage"


def api_key_key(digest: str) -> str:
    return f"{P}key:{digest}"


def turn_lock_key(cid: str) -> str:
    return f"{P}{{c:{cid}}}:lock"


def resume_log_key(cid: str, message_id: str) -> str:
    return f"{P}{{c:{cid}}}:r:{message_id}"


def message_lookup_key(message_id: str) -> str:
    return f"{P}msg:{message_id}"


def worker_key(worker_id: str) -> str:
    return f"{P}worker:{worker_id}"


def violations_key(org: str) -> str:
    return f"{P}{{o:{org}}}:violations"


def violation_counts_key(org: str) -> str:
    return f"{P}{{o:{org}}}:violation_counts"


POLICIES_KEY = f"{P}{{policies}}"
POLICIES_VERSION_KEY = f"{P}{{policies}}:version"
VIOLATIONS_MAXLEN = 100_000

KEYS_INDEX = f"{P}keys"
ADMIN_TOKEN_KEY = f"{P}admin_token_sha256"


# -- records ------------------------------------------------------------------------------

@dataclass(slots=True)
class Creator:
    id: str
    name: str | None = None
    last_name: str | None = None
    email: str | None = None


@dataclass(slots=True)
class Conversation:
    id: str
    org_id: str
    title: str
    created_by: str
    creator: Creator
    workspace_id: str | None = None
    repo_id: str | None = None
    is_archived: bool = False
    created_at: int = 0
    updated_at: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    deleted_at: int | None = None

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "org_id": self.org_id,
            "title": self.title,
            "created_by": self.created_by,
            "creator": json.dumps(asdict(self.creator)),
            "workspace_id": self.workspace_id or "",
            "repo_id": self.repo_id or "",
            "is_archived": "1" if self.is_archived else "0",
            "created_at": str(self.created_at),
            "updated_at": str(self.updated_at),
            "tokens_in": str(self.tokens_in),
            "tokens_out": str(self.tokens_out),
        }

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Conversation:
        return cls(
            id=h["id"],
            org_id=h["org_id"],
            title=h.get("title", ""),
            created_by=h["created_by"],
            creator=Creator(**json.loads(h.get("creator") or '{"id": ""}')),
            workspace_id=h.get("workspace_id") or None,
            repo_id=h.get("repo_id") or None,
            is_archived=h.get("is_archived") == "1",
            created_at=int(h.get("created_at", 0)),
            updated_at=int(h.get("updated_at", 0)),
            tokens_in=int(h.get("tokens_in", 0)),
            tokens_out=int(h.get("tokens_out", 0)),
            deleted_at=int(h["deleted_at"]) if h.get("deleted_at") else None,
        )


@dataclass(slots=True)
class ChatSession:
    id: str
    conversation_id: str
    model_id: str
    status: str = "active"
    created_at: int = 0
    updated_at: int = 0


@dataclass(slots=True)
class Message:
    id: str
    conversation_id: str
    role: str  # user | assistant
    content: str
    status: str  # complete | error | cancelled | blocked
    created_at: int
    chat_session_id: str | None = None
    model_id: str | None = None
    user_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    usage_estimated: bool = False
    policy: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Message:
        return cls(**json.loads(raw))


@dataclass(slots=True)
class Totals:
    tokens_in: int
    tokens_out: int


# The end of a turn in one atomic step of the conversation's slot: the assistant's message,
# the counters it moves, the resume log's last entries (the end entry carrying the new
# totals), and the release of the one-turn lock if this turn still holds it.
_END_TURN = """
redis.call('RPUSH', KEYS[2], ARGV[1])
local tin = redis.call('HINCRBY', KEYS[1], 'tokens_in', ARGV[2])
local tout = redis.call('HINCRBY', KEYS[1], 'tokens_out', ARGV[3])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
if KEYS[3] ~= '' then
  for i = 8, #ARGV, 3 do
    redis.call('XADD', KEYS[3], '*', 't', ARGV[i], 's', ARGV[i + 1], 'd', ARGV[i + 2])
  end
  local e = cjson.decode(ARGV[7])
  e['totals'] = {tokens_in = tin, tokens_out = tout}
  redis.call('XADD', KEYS[3], '*', 't', 'end', 's', '0', 'd', cjson.encode(e))
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
return {tin, tout}
"""


# Lock, user's message and the resume log's first entry: all or nothing, one slot.
_BEGIN_TURN = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], 'updated_at', ARGV[4])
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], '*', unpack(fields))
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Store:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._end_turn = redis.register_script(_END_TURN)
        self._begin_turn = redis.register_script(_BEGIN_TURN)
        self._release_lock = redis.register_script(_RELEASE_LOCK)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def aclose(self) -> None:
        await self.redis.aclose()

    # -- conversations ------------------------------------------------------------------

    async def create_conversation(self, conv: Conversation, index_keys: list[str]) -> Conversation:
        conv.created_at = conv.updated_at = conv.created_at or now_ms()
        await self.redis.hset(conv_key(conv.id), mapping=conv.to_hash())
        # the org-tagged indexes live in another slot: a second, separate step
        pipe = self.redis.pipeline(transaction=False)
        for key in index_keys:
            pipe.zadd(key, {conv.id: conv.created_at})
        await pipe.execute()
        return conv

    async def get_conversation(self, cid: str) -> Conversation | None:
        h = await self.redis.hgetall(conv_key(cid))
        return Conversation.from_hash(h) if h else None

    async def get_conversations(self, ids: list[str]) -> list[Conversation]:
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(conv_key(cid))
        return [Conversation.from_hash(h) for h in await pipe.execute() if h]

    async def page_index(
        self, groups: list[list[str]], *, offset: int, limit: int,
        since_ms: int | None = None, until_ms: int | None = None,
    ) -> tuple[list[str], int]:
        """Newest first from a union of intersections of org indexes (all in one slot).
        One key: O(log N + limit). Several: a temporary key, built and dropped in one
        MULTI, costing the size of the sets involved."""
        lo = "-inf" if since_ms is None else since_ms
        hi = "+inf" if until_ms is None else until_ms
        if len(groups) == 1 and len(groups[0]) == 1:
            key = groups[0][0]
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrevrangebyscore(key, hi, lo, start=offset, num=limit)
            pipe.zcount(key, lo, hi)
            ids, total = await pipe.execute()
            return ids, total
        tmp = f"{groups[0][0]}:tmp:{uuid.uuid4().hex}"
        pipe = self.redis.pipeline(transaction=True)
        parts = []
        for i, keys in enumerate(groups):
            if len(keys) == 1:
                parts.append(keys[0])
            else:
                part = f"{tmp}:{i}"
                pipe.zinterstore(part, keys, aggregate="MIN")
                parts.append(part)
        pipe.zunionstore(tmp, parts, aggregate="MIN")
        pipe.zrevrangebyscore(tmp, hi, lo, start=offset, num=limit)
        pipe.zcount(tmp, lo, hi)
        pipe.delete(tmp, *[p for p in parts if p.startswith(tmp)])
        results = await pipe.execute()
        return results[-3], results[-2]

    # -- chat sessions ------------------------------------------------------------------

    async def create_session(self, session: ChatSession) -> ChatSession:
        session.created_at = session.updated_at = now_ms()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(sessions_key(session.conversation_id), session.id, json.dumps(asdict(session)))
        pipe.hset(conv_key(session.conversation_id), "updated_at", str(session.updated_at))
        await pipe.execute()
        await self.redis.set(session_lookup_key(session.id), session.conversation_id)
        return session

    async def session_conversation_id(self, sid: str) -> str | None:
        return await self.redis.get(session_lookup_key(sid))

    async def get_sessions(self, cid: str) -> list[ChatSession]:
        raw = await self.redis.hvals(sessions_key(cid))
        sessions = [ChatSession(**json.loads(r)) for r in raw]
        sessions.sort(key=lambda s: (s.created_at, s.id))
        return sessions

    async def load_turn_context(
        self, cid: str, sid: str, history_limit: int
    ) -> tuple[Conversation | None, ChatSession | None, list[Message]]:
        """Conversation, session and the last history_limit messages, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(conv_key(cid))
        pipe.hget(sessions_key(cid), sid)
        pipe.lrange(messages_key(cid), -history_limit, -1)
        h, raw_session, raw_messages = await pipe.execute()
        conv = Conversation.from_hash(h) if h else None
        session = ChatSession(**json.loads(raw_session)) if raw_session else None
        return conv, session, [Message.from_json(m) for m in raw_messages]

    # -- messages -----------------------------------------------------------------------

    async def append_message(self, msg: Message) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(messages_key(msg.conversation_id), msg.to_json())
        pipe.hset(conv_key(msg.conversation_id), "updated_at", str(msg.created_at))
        await pipe.execute()

    async def record_usage(
        self, msg: Message, org_id: str, key_id: str | None = None, *,
        token_windows: Sequence[tuple[str, int]] = (),
    ) -> None:
        """A turn outside any conversation: only its usage is kept."""
        pipe = self.redis.pipeline(transaction=False)
        self._count_usage(pipe, msg, org_id, key_id, token_windows)
        await pipe.execute()

    @staticmethod
    def _count_usage(
        pipe: Any, msg: Message, org_id: str, key_id: str | None,
        token_windows: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Usage per org, per model, per user and per API key, in the org's hash; and the
        turn's tokens in each rate-limit token window (key, EXPIREAT), see gateway/limits.py."""
        for key, expire_at in token_windows:
            pipe.incrby(key, msg.input_tokens + msg.output_tokens)
            pipe.expireat(key, expire_at)
        usage = org_usage_key(org_id)
        scopes = ["", f":{msg.model_id}"] if msg.model_id else [""]
        if msg.user_id:
            scopes.append(f":user:{msg.user_id}")
        if key_id:
            scopes.append(f":key:{key_id}")
        for scope in scopes:
            pipe.hincrby(usage, f"tokens_in{scope}", msg.input_tokens)
            pipe.hincrby(usage, f"tokens_out{scope}", msg.output_tokens)

    async def get_messages(self, cid: str, *, offset: int, limit: int) -> tuple[list[Message], int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(messages_key(cid), offset, offset + limit - 1)
        pipe.llen(messages_key(cid))
        raw, total = await pipe.execute()
        return [Message.from_json(r) for r in raw], total

    async def org_usage(self, org: str) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.redis.hgetall(org_usage_key(org))).items()}

    # -- turns in flight: lock, resume log, stop signals, worker heartbeats --------------

    async def begin_turn(
        self, msg: Message, *, answer_id: str, lock_value: str, lock_ttl_ms: int,
        log_key: str, start_data: dict[str, Any], log_ttl_s: int,
    ) -> bool:
        """Take the conversation's one-turn lock, store the user's message and open the
        resume log, atomically (one slot); False, and nothing written, when busy."""
        cid = msg.conversation_id
        pipe = self.redis.pipeline(transaction=False)
        await self._begin_turn(
            keys=[turn_lock_key(cid), messages_key(cid), conv_key(cid), log_key],
            args=[lock_value, lock_ttl_ms, msg.to_json(), msg.created_at, log_ttl_s,
                  "t", "start", "s", "0", "d", json.dumps(start_data)],
            client=pipe,
        )
        pipe.set(message_lookup_key(answer_id), cid, ex=log_ttl_s)
        began, _ = await pipe.execute()
        return bool(began)

    async def turn_lock_holder(self, cid: str) -> str | None:
        return await self.redis.get(turn_lock_key(cid))

    async def break_turn_lock(self, cid: str, value: str) -> bool:
        """Remove a lock whose holder is gone (compare-and-delete)."""
        return bool(await self._release_lock(keys=[turn_lock_key(cid)], args=[value]))

    async def end_turn(
        self, msg: Message, org_id: str, key_id: str | None, *, lock_value: str | None,
        log_key: str | None, log_entries: list[tuple[str, str, str]], end_data: dict[str, Any],
        log_ttl_s: int, token_windows: Sequence[tuple[str, int]] = (),
        violations: Sequence[dict[str, Any]] = (),
    ) -> Totals:
        """The assistant's message, its counters, the resume log's last entries and the
        lock's release (one Lua script, one slot); the org's usage counters and the
        rate-limit token windows ride in the same round trip."""
        cid = msg.conversation_id
        pipe = self.redis.pipeline(transaction=False)
        await self._end_turn(  # queued in the pipeline, not sent yet
            keys=[conv_key(cid), messages_key(cid), log_key or "", turn_lock_key(cid) if lock_value else ""],
            args=[msg.to_json(), msg.input_tokens, msg.output_tokens, now_ms(), lock_value or "",
                  log_ttl_s, json.dumps(end_data), *[x for entry in log_entries for x in entry]],
            client=pipe,
        )
        self._count_usage(pipe, msg, org_id, key_id, token_windows)
        self._add_violations(pipe, org_id, violations)
        results = await pipe.execute()
        tin, tout = results[0]
        return Totals(int(tin), int(tout))

    async def append_deltas(self, batches: list[tuple[str, tuple[int, list[str]]]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key, (first_seq, texts) in batches:
            pipe.xadd(key, {"t": "c", "s": str(first_seq), "d": json.dumps(texts, separators=(",", ":"))})
        await pipe.execute()

    async def message_conversation_id(self, message_id: str) -> str | None:
        return await self.redis.get(message_lookup_key(message_id))

    async def read_log(self, key: str, after: str = "-") -> list[tuple[str, dict[str, str]]]:
        start = "-" if after == "-" else f"({after}"
        return await self.redis.xrange(key, start, "+")

    async def last_log_entry(self, key: str) -> dict[str, str] | None:
        rows = await self.redis.xrevrange(key, "+", "-", count=1)
        return rows[0][1] if rows else None

    async def shared_secret(self, name: str) -> bytes:
        """A random secret every worker and replica agrees on (first writer wins)."""
        key = f"{P}secret:{name}"
        await self.redis.set(key, secrets.token_hex(32), nx=True)
        return bytes.fromhex(await self.redis.get(key))

    async def follow_log(self, key: str, after: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply = await self.redis.xread({key: after}, block=block_ms, count=1000)
        return reply[0][1] if reply else []

    async def heartbeat(self, worker_id: str, ttl_ms: int) -> None:
        await self.redis.set(worker_key(worker_id), "1", px=ttl_ms)

    async def worker_alive(self, worker_id: str) -> bool:
        return bool(await self.redis.exists(worker_key(worker_id)))

    async def publish(self, channel: str, message: str) -> int:
        return await self.redis.publish(channel, message)

    async def subscribe(self, channel: str) -> AsyncIterator[str]:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield message["data"]
        finally:
            await pubsub.aclose()

    # -- policies and violations --------------------------------------------------------

    async def load_policies(self) -> tuple[str | None, dict[str, str]]:
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(POLICIES_VERSION_KEY)
        pipe.hgetall(POLICIES_KEY)
        version, raw = await pipe.execute()
        return version, raw

    async def policies_version(self) -> str | None:
        return await self.redis.get(POLICIES_VERSION_KEY)

    async def put_policy(self, policy_id: str, spec_json: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(POLICIES_KEY, policy_id, spec_json)
        pipe.incr(POLICIES_VERSION_KEY)
        await pipe.execute()

    async def delete_policy(self, policy_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(POLICIES_KEY, policy_id)
        pipe.incr(POLICIES_VERSION_KEY)
        deleted, _ = await pipe.execute()
        return bool(deleted)

    @staticmethod
    def _add_violations(pipe: Any, org_id: str, records: Sequence[dict[str, Any]]) -> None:
        counts = violation_counts_key(org_id)
        for r in records:
            pipe.xadd(violations_key(org_id), {"v": json.dumps(r, separators=(",", ":"))},
                      maxlen=VIOLATIONS_MAXLEN, approximate=True)
            pipe.hincrby(counts, f"policy:{r['policy_id']}", 1)
            if r.get("user_id"):
                pipe.hincrby(counts, f"user:{r['user_id']}", 1)

    async def record_violations(self, org_id: str, records: list[dict[str, Any]]) -> None:
        if records:
            pipe = self.redis.pipeline(transaction=False)
            self._add_violations(pipe, org_id, records)
            await pipe.execute()

    async def read_violations(
        self, org_id: str, *, since_ms: int | None, until_ms: int | None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """Newest first, within the time range (stream ids are times)."""
        hi = "+" if until_ms is None else str(until_ms)
        lo = "-" if since_ms is None else str(since_ms)
        rows = await self.redis.xrevrange(violations_key(org_id), hi, lo, count=limit)
        return [json.loads(fields["v"]) for _, fields in rows]

    async def violation_counts(self, org_id: str) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.redis.hgetall(violation_counts_key(org_id))).items()}

    # -- credentials --------------------------------------------------------------------

    async def admin_token_digest(self) -> str | None:
        return await self.redis.get(ADMIN_TOKEN_KEY)

    async def set_admin_token_digest(self, digest: str) -> bool:
        """First writer wins, so two workers starting together agree on one token."""
        return bool(await self.redis.set(ADMIN_TOKEN_KEY, digest, nx=True))

    async def save_api_key(self, digest: str, record: dict[str, Any]) -> None:
        await self.redis.set(api_key_key(digest), json.dumps(record))
        await self.redis.hset(KEYS_INDEX, record["key_id"], json.dumps({**record, "digest": digest}))

    async def get_api_key(self, digest: str) -> dict[str, Any] | None:
        raw = await self.redis.get(api_key_key(digest))
        return json.loads(raw) if raw else None

    async def list_api_keys(self) -> list[dict[str, Any]]:
        rows = [json.loads(v) for v in (await self.redis.hvals(KEYS_INDEX))]
        for row in rows:
            row.pop("digest", None)
        return sorted(rows, key=lambda r: r.get("created_at", 0))

    async def revoke_api_key(self, key_id: str) -> bool:
        raw = await self.redis.hget(KEYS_INDEX, key_id)
        if raw is None:
            return False
        record = json.loads(raw)
        await self.redis.delete(api_key_key(record["digest"]))
        await self.redis.hdel(KEYS_INDEX, key_id)
        return True

    # -- repository-style API: repositories, conversation lifecycle, audit events --------
    # (used by gateway/repositories.py, gateway/audit.py, gateway/routes/repository.py)

    async def create_conversation_with_session(
        self, conv: Conversation, session: ChatSession, index_keys: list[str],
        event: tuple[str, dict[str, str], int] | None = None,
    ) -> Conversation:
        """A conversation with its default chat session, in one round trip: first the
        conversation's own keys (one MULTI on its hash tag), then the session lookup, then
        the org's indexes and audit event, so an indexed conversation is always readable."""
        conv.created_at = conv.updated_at = conv.created_at or now_ms()
        session.created_at = session.updated_at = conv.created_at
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(conv_key(conv.id), mapping={**conv.to_hash(), "default_session_id": session.id})
        pipe.hset(sessions_key(conv.id), session.id, json.dumps(asdict(session)))
        pipe.set(session_lookup_key(session.id), conv.id)
        for key in index_keys:
            pipe.zadd(key, {conv.id: conv.created_at})
        if event is not None:
            self._queue_event(pipe, *event)
        await pipe.execute()
        return conv

    async def get_conversation_with_default_session(
        self, cid: str
    ) -> tuple[Conversation | None, str | None]:
        h = await self.redis.hgetall(conv_key(cid))
        if not h:
            return None, None
        return Conversation.from_hash(h), h.get("default_session_id") or None

    async def ensure_default_session(self, session: ChatSession) -> str:
        """The conversation's default session: the one already set, else `session`, created
        now. The lookup key is written first, so a session id is never handed out unroutable."""
        session.created_at = session.updated_at = now_ms()
        cid = session.conversation_id
        await self.redis.set(session_lookup_key(session.id), cid)
        sid = await self.redis.register_script(_ENSURE_DEFAULT_SESSION)(
            keys=[conv_key(cid), sessions_key(cid)],
            args=[session.id, json.dumps(asdict(session))],
        )
        if sid != session.id:
            await self.redis.delete(session_lookup_key(session.id))
        return sid or ""

    async def soft_delete_conversation(
        self, conv: Conversation, index_keys: list[str], *, deleted_by: str,
        event: tuple[str, dict[str, str], int] | None = None,
    ) -> int | None:
        """Mark the conversation deleted (first caller wins) and drop it from every index;
        its messages stay. Returns the deletion time, or None when it was already deleted."""
        at = now_ms()
        done = await self.redis.register_script(_SOFT_DELETE)(
            keys=[conv_key(conv.id)], args=[at, deleted_by]
        )
        if not done:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for key in index_keys:
            pipe.zrem(key, conv.id)
        if event is not None:
            self._queue_event(pipe, *event)
        await pipe.execute()
        return at

    async def page_merged(
        self, keys: list[str], shared_keys: list[str], *, offset: int, limit: int,
        since_ms: int | None = None, until_ms: int | None = None,
    ) -> tuple[list[str], int]:
        """Newest first from the union of several org indexes without building it: the top
        offset+limit of each, merged here, costs O(k * (log N + offset + limit)) whatever the
        indexes hold. The total is the sum of their counts less the counts of `shared_keys`,
        the indexes of what they have in common. One MULTI: ranges and counts agree."""
        lo = "-inf" if since_ms is None else since_ms
        hi = "+inf" if until_ms is None else until_ms
        pipe = self.redis.pipeline(transaction=True)
        for key in keys:
            pipe.zrevrangebyscore(key, hi, lo, start=0, num=offset + limit, withscores=True)
        for key in (*keys, *shared_keys):
            pipe.zcount(key, lo, hi)
        results = await pipe.execute()
        score: dict[str, float] = {}
        for rows in results[:len(keys)]:
            score.update(rows)
        # ZREVRANGE's own order: score, then member, both descending
        ordered = sorted(score, key=lambda m: (score[m], m), reverse=True)
        counts = results[len(keys):]
        total = sum(counts[:len(keys)]) - sum(counts[len(keys):])
        return ordered[offset:offset + limit], total

    async def get_repository(self, rid: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(REPOSITORIES_KEY, rid)
        return json.loads(raw) if raw else None

    async def list_repositories(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in await self.redis.hvals(REPOSITORIES_KEY)]

    async def put_repository(self, record: dict[str, Any]) -> bool:
        """Create or replace; True when it was created."""
        return bool(await self.redis.hset(REPOSITORIES_KEY, record["id"], json.dumps(record)))

    async def delete_repository(self, rid: str) -> bool:
        return bool(await self.redis.hdel(REPOSITORIES_KEY, rid))

    async def get_api_key_record(self, key_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(KEYS_INDEX, key_id)
        if raw is None:
            return None
        record = json.loads(raw)
        record.pop("digest", None)
        return record

    @staticmethod
    def _queue_event(pipe: Any, org: str, fields: dict[str, str], maxlen: int) -> None:
        pipe.xadd(events_key(org), fields, maxlen=maxlen, approximate=True)

    async def append_event(self, org: str, fields: dict[str, str], maxlen: int) -> str:
        """One audit event on the org's capped stream; the stream id carries the time."""
        return await self.redis.xadd(events_key(org), fields, maxlen=maxlen, approximate=True)

    async def read_events(
        self, org: str, *, newest: str = "+", oldest: str = "-", count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Newest first, between two stream ids (a leading "(" excludes that id)."""
        return await self.redis.xrevrange(events_key(org), newest, oldest, count=count)


# -- keys and scripts of the repository-style API ----------------------------------------

REPOSITORIES_KEY = f"{P}repos"


def events_key(org: str) -> str:
    return f"{P}{{o:{org}}}:events"


_ENSURE_DEFAULT_SESSION = """
local current = redis.call('HGET', KEYS[1], 'default_session_id')
if current then return current end
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'default_session_id', ARGV[1])
return ARGV[1]
"""

_SOFT_DELETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'deleted_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'deleted_at', ARGV[1], 'deleted_by', ARGV[2])
return 1
"""
