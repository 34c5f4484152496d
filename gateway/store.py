"""The only module that speaks Redis: key layout, atomic writes, counters and indexes.

Every key of one conversation shares the hash tag {c:<id>}, every org-wide index and
counter the tag {o:<org>}, so a Redis Cluster needs no data migration and no atomic
operation spans two slots. A turn costs a fixed number of round trips, never one per token.
Keys without a tag (gw:sess:, gw:msg:, gw:key:, gw:worker:, gw:stop:, ...) are only ever
used by single-key commands. On a cluster, pipelines run scripts with EVAL (a replica
promoted by a failover may not know the script's SHA), and the end of a turn runs with its
WAIT on the connection of the primary that holds the conversation (see `end_turn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    RedisError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from gateway import redis_client

log = logging.getLogger("gateway.store")
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


def stop_key(message_id: str) -> str:
    """A stop request that outlives a missed pub/sub message (see Store.request_stop)."""
    return f"{P}stop:{message_id}"


def violations_key(org: str) -> str:
    return f"{P}{{o:{org}}}:violations"


def violation_counts_key(org: str) -> str:
    return f"{P}{{o:{org}}}:violation_counts"


POLICIES_KEY = f"{P}{{policies}}"
POLICIES_VERSION_KEY = f"{P}{{policies}}:version"
VIOLATIONS_MAXLEN = 100_000

KEYS_INDEX = f"{P}keys"
KEYS_REVOKED_CHANNEL = f"{P}keys-revoked"
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
    replicated: bool = True  # False: the replicas WAIT asked for did not acknowledge in time


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must acknowledge an answer's write before its `end` goes out:
    "auto" waits for one whenever the primary has a replica (INFO replication, re-read every
    REPLICA_CHECK_INTERVAL seconds), 0 never waits."""

    replicas: Literal["auto"] | int = "auto"
    timeout_ms: int = 1000


REPLICA_CHECK_INTERVAL = 5.0
NODE_CONNECTIONS = 256  # per cluster primary, for the end of turns and their WAIT
SESSION_CACHE_SIZE = 50_000  # session -> conversation ids kept in memory (about 12 MB at most)
STOP_REQUEST_TTL = 600  # seconds a stop request waits for a worker that missed the message
_CLUSTER_MOVES = (ConnectionError, TimeoutError, AskError, ClusterDownError, TryAgainError)


class NotReplicated(RedisError):
    """The write is on the primary, but its replicas did not acknowledge it in time."""


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
local tin, tout
if last and last[2][2] == 'end' then
  tin = tonumber(redis.call('HGET', KEYS[1], 'tokens_in') or '0')
  tout = tonumber(redis.call('HGET', KEYS[1], 'tokens_out') or '0')
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
else
  redis.call('RPUSH', KEYS[2], ARGV[1])
  tin = redis.call('HINCRBY', KEYS[1], 'tokens_in', ARGV[2])
  tout = redis.call('HINCRBY', KEYS[1], 'tokens_out', ARGV[3])
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
  if has_log then
    for i = 8, #ARGV, 3 do
      redis.call('XADD', KEYS[3], '*', 't', ARGV[i], 's', ARGV[i + 1], 'd', ARGV[i + 2])
    end
    local e = cjson.decode(ARGV[7])
    e['totals'] = {tokens_in = tin, tokens_out = tout}
    redis.call('XADD', KEYS[3], '*', 't', 'end', 's', '0', 'd', cjson.encode(e))
    redis.call('EXPIRE', KEYS[3], ARGV[6])
  end
end
if KEYS[4] ~= KEYS[1] and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
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

# The org-wide counters of one message, applied once (the marker makes a retry harmless).
_COUNT_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local tin, tout, nf = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, nf do
  redis.call('HINCRBY', KEYS[2], 'tokens_in' .. ARGV[4 + i], tin)
  redis.call('HINCRBY', KEYS[2], 'tokens_out' .. ARGV[4 + i], tout)
end
for k = 3, #KEYS do
  redis.call('INCRBY', KEYS[k], tin + tout)
  redis.call('EXPIREAT', KEYS[k], ARGV[4 + nf + k - 2])
end
return 1
"""
COUNTED_TTL = 3600  # a retry after a lost reply comes within seconds; an hour is ample

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A write that changes nothing but is replicated, so that a WAIT after it means something.
_TOUCH = "return redis.call('HINCRBY', KEYS[1], 'tokens_in', 0)"


class Store:
    def __init__(self, redis: Redis | RedisCluster, *, durability: Durability | None = None) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.durability = durability or Durability()
        self._end_turn = redis.register_script(_END_TURN)
        self._begin_turn = redis.register_script(_BEGIN_TURN)
        self._release_lock = redis.register_script(_RELEASE_LOCK)
        self._count_once = redis.register_script(_COUNT_ONCE)
        self._touch = redis.register_script(_TOUCH)
        self._node_clients: dict[str, Redis] = {}  # cluster: a plain client per primary, for WAIT
        self._replica_counts: dict[str, tuple[int, float]] = {}  # node ("" = the one server) -> (n, until)
        self._pubsub_turn = secrets.randbelow(1 << 16)  # workers spread their subscriptions
        self._session_conversations: dict[str, str] = {}  # session id -> conversation id

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def aclose(self) -> None:
        for client in self._node_clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        await redis_client.close(self.redis)  # type: ignore[arg-type]

    # -- cluster plumbing and durability --------------------------------------------------

    @staticmethod
    def _queue_script(pipe: Any, script: Any, keys: list[str], args: list[Any]) -> None:
        """A script in a pipeline, as EVAL of its body: the server caches it by SHA all the
        same, and nothing has to be loaded first. (redis-py's own way sends SCRIPT EXISTS
        before every pipeline holding a script: one more round trip per turn; a server
        that restarted, or a replica promoted by a failover, may lack the SHA anyway.)"""
        pipe.eval(script.script, len(keys), *keys, *args)

    async def _primary_of(self, key: str) -> Any:
        await self.redis.initialize()  # type: ignore[union-attr]  # a no-op once the slots are known
        try:
            return self.redis.get_node_from_key(key)  # type: ignore[union-attr]
        except SlotNotCoveredError as exc:  # mid-failover: a RedisError, retried like one
            await self._refresh_topology()
            raise ClusterDownError(str(exc)) from exc

    def _node_client(self, node: Any) -> Redis:
        """A plain client on one cluster node (its own pool, same options), so that a write
        and the WAIT after it share one connection. Its pool waits for a free connection
        rather than failing at once (a burst of turns ending together)."""
        client = self._node_clients.get(node.name)
        if client is None:
            pool = BlockingConnectionPool(
                connection_class=node.connection_class, max_connections=NODE_CONNECTIONS, timeout=5,
                **node.connection_kwargs,
            )
            client = self._node_clients[node.name] = Redis.from_pool(pool)
        return client

    async def _refresh_topology(self) -> None:
        """After a failover the client's slot map is stale until something refreshes it."""
        with contextlib.suppress(Exception):
            await self.redis.nodes_manager.initialize()  # type: ignore[union-attr]

    async def _replicas_to_wait(self, node: Any = None) -> int:
        wanted = self.durability.replicas
        if wanted != "auto":
            return wanted
        name = node.name if node is not None else ""
        now = time.monotonic()
        cached = self._replica_counts.get(name)
        if cached is None or cached[1] < now:
            client = self._node_client(node) if node is not None else self.redis
            info = await client.info("replication")
            count = int(info.get("connected_slaves", 0)) if info.get("role") == "master" else 0
            cached = self._replica_counts[name] = (count, now + REPLICA_CHECK_INTERVAL)
        return min(1, cached[0])

    def _forget_replicas(self, node: Any = None) -> None:
        self._replica_counts.pop(node.name if node is not None else "", None)

    async def _run_on_primary(
        self, key: str, script: Any, keys: list[str], args: list[Any]
    ) -> tuple[Any, int, int]:
        """Cluster: the script, then WAIT, pipelined on one connection to the primary of
        `key`'s slot. Returns (script result, replicas wanted, replicas that acknowledged)."""
        node = await self._primary_of(key)
        try:
            wait = await self._replicas_to_wait(node)
            pipe = self._node_client(node).pipeline(transaction=False)
            self._queue_script(pipe, script, keys, args)
            if wait:
                pipe.execute_command("WAIT", wait, self.durability.timeout_ms)
            results = await pipe.execute()
            acked = int(results[1]) if wait else 0
            if acked < wait:
                self._forget_replicas(node)
            return results[0], wait, acked
        except RedisError as exc:
            if isinstance(exc, _CLUSTER_MOVES):  # MovedError is an AskError
                self._forget_replicas(node)
                await self._refresh_topology()
            raise

    async def confirm_replicated(self, cid: str, *, required: bool = False) -> bool:
        """Ask the replicas again, for a turn whose WAIT fell short: a tiny write in the
        conversation's slot, then WAIT, on one connection (replication offsets only grow,
        so an acknowledgement of this write covers every earlier one). With `required`,
        raise NotReplicated instead of answering False (for a retry loop)."""
        key = conv_key(cid)
        if self.cluster:
            _, wait, acked = await self._run_on_primary(key, self._touch, [key], [])
        else:
            wait = await self._replicas_to_wait()
            acked = 0
            if wait:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hincrby(key, "tokens_in", 0)
                pipe.execute_command("WAIT", wait, self.durability.timeout_ms)
                acked = int((await pipe.execute())[1])
                if acked < wait:
                    self._forget_replicas()
        if acked < wait and required:
            raise NotReplicated(f"{acked} of {wait} replicas acknowledged conversation {cid}")
        return acked >= wait

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
        """A session never changes conversation, so what was read once is kept (the
        newest SESSION_CACHE_SIZE): a turn of a session seen before saves a round trip.
        A deleted conversation is still found gone by load_turn_context."""
        cid = self._session_conversations.get(sid)
        if cid is None:
            cid = await self.redis.get(session_lookup_key(sid))
            if cid is not None:
                if len(self._session_conversations) >= SESSION_CACHE_SIZE:
                    del self._session_conversations[next(iter(self._session_conversations))]
                self._session_conversations[sid] = cid
        return cid

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

    def _count_usage(
        self, pipe: Any, msg: Message, org_id: str, key_id: str | None,
        token_windows: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Usage per org, per model, per user and per API key, in the org's hash; and the
        turn's tokens in each rate-limit token window (key, EXPIREAT), see gateway/limits.py.
        Once per message: a write retried after Redis came back does not count it twice."""
        scopes = ["", f":{msg.model_id}"] if msg.model_id else [""]
        if msg.user_id:
            scopes.append(f":user:{msg.user_id}")
        if key_id:
            scopes.append(f":key:{key_id}")
        self._queue_script(
            pipe, self._count_once,
            [f"{P}{{o:{org_id}}}:counted:{msg.id}", org_usage_key(org_id),
             *[key for key, _ in token_windows]],
            [COUNTED_TTL, msg.input_tokens, msg.output_tokens, len(scopes), *scopes,
             *[expire_at for _, expire_at in token_windows]],
        )

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
        self._queue_script(
            pipe, self._begin_turn,
            [turn_lock_key(cid), messages_key(cid), conv_key(cid), log_key],
            [lock_value, lock_ttl_ms, msg.to_json(), msg.created_at, log_ttl_s,
             "t", "start", "s", "0", "d", json.dumps(start_data)],
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
        rate-limit token windows ride in the same round trip. Then WAIT for the replicas
        that Durability asks for, on the script's own connection: `replicated` says whether
        they acknowledged in time. Safe to call again after an error (see _END_TURN)."""
        cid = msg.conversation_id
        key = conv_key(cid)
        keys = [key, messages_key(cid), log_key or key, turn_lock_key(cid) if lock_value else key]
        args = [msg.to_json(), msg.input_tokens, msg.output_tokens, now_ms(), lock_value or "",
                log_ttl_s, json.dumps(end_data), *[x for entry in log_entries for x in entry]]
        if self.cluster:
            # the conversation's slot on its primary's own connection (script + WAIT), the
            # org's counters (another slot, maybe another node) beside it
            counters = self.redis.pipeline(transaction=False)
            self._count_usage(counters, msg, org_id, key_id, token_windows)
            self._add_violations(counters, org_id, violations)
            (totals, wait, acked), _ = await asyncio.gather(
                self._run_on_primary(key, self._end_turn, keys, args), counters.execute()
            )
            tin, tout = totals
            return Totals(int(tin), int(tout), replicated=acked >= wait)
        wait = await self._replicas_to_wait()
        pipe = self.redis.pipeline(transaction=False)
        self._queue_script(pipe, self._end_turn, keys, args)
        self._count_usage(pipe, msg, org_id, key_id, token_windows)
        self._add_violations(pipe, org_id, violations)
        if wait:
            pipe.execute_command("WAIT", wait, self.durability.timeout_ms)
        results = await pipe.execute()
        tin, tout = results[0]
        acked = int(results[-1]) if wait else 0
        if acked < wait:
            self._forget_replicas()
        return Totals(int(tin), int(tout), replicated=acked >= wait)

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

    async def subscribe(
        self, channel: str, on_ready: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[str]:
        """Messages of `channel` until the connection fails (the caller subscribes again).
        `on_ready` runs once subscribed: the moment to catch up on what was missed.
        On a cluster PUBLISH reaches every node, so any node will do: each new
        subscription takes the next one, and a dead node is left behind by the retry."""
        if self.cluster:
            await self.redis.initialize()  # type: ignore[union-attr]
            nodes = sorted(self.redis.get_nodes(), key=lambda n: n.name)  # type: ignore[union-attr]
            node = nodes[self._pubsub_turn % len(nodes)]
            self._pubsub_turn += 1
            pubsub = self.redis.pubsub(node=node, ignore_subscribe_messages=True)
        else:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if on_ready is not None:
                await on_ready()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield message["data"]
        finally:
            await pubsub.aclose()

    async def listen(
        self, channel: str, on_message: Callable[[str], None], *, what: str,
        on_ready: Callable[[], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """Forever (until cancelled): on_message for each message of `channel`, subscribing
        again whenever the subscription ends; on_ready runs on each new subscription,
        on_lost when one ends, and a Redis that went away is retried every second."""
        while True:
            try:
                async for message in self.subscribe(channel, on_ready):
                    on_message(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s lost Redis (%s); retrying", what, type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if on_lost is not None:
                    on_lost()

    async def request_stop(self, channel: str, message_id: str) -> None:
        """A stop for a turn another worker runs: a key it finds even if it missed the
        message (its subscription was reconnecting), then the message itself."""
        await self.redis.set(stop_key(message_id), "1", ex=STOP_REQUEST_TTL)
        await self.redis.publish(channel, message_id)

    async def stops_requested(self, message_ids: Sequence[str]) -> list[str]:
        if not message_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for mid in message_ids:
            pipe.exists(stop_key(mid))
        found = await pipe.execute()
        return [mid for mid, hit in zip(message_ids, found, strict=True) if hit]

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
        """Deleted, then announced to every worker that keeps keys in memory."""
        raw = await self.redis.hget(KEYS_INDEX, key_id)
        if raw is None:
            return False
        record = json.loads(raw)
        await self.redis.delete(api_key_key(record["digest"]))
        await self.redis.hdel(KEYS_INDEX, key_id)
        await self.redis.publish(KEYS_REVOKED_CHANNEL, record["digest"])
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
        if self.cluster:  # nodes answer in parallel there: the conversation lands first
            await pipe.execute()
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

    async def append_events(self, events: Sequence[tuple[str, dict[str, str], int]]) -> None:
        """Audit events (org, fields, maxlen) in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for org, fields, maxlen in events:
            self._queue_event(pipe, org, fields, maxlen)
        await pipe.execute()

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
