"""Conversations, their chat sessions and messages, and the org's sorted-set indexes.

Each filter combination maps to one precomputed index (org, user, workspace, repository,
workspace x repository, each also crossed with user), written when a conversation is created
and removed when it is deleted, so a page costs O(log N + page size) whatever the org holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis, RedisCluster

from gateway.storage import keys
from gateway.storage.events import QueuedEvent, queue_event
from gateway.storage.records import ChatSession, Conversation, Message, now_ms
from gateway.storage.scripts import Script

SESSION_CACHE_SIZE = 50_000  # session -> conversation ids kept in memory (about 12 MB at most)

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


@dataclass(slots=True, frozen=True)
class Index:
    """One of an org's conversation indexes: the conversations of `user`, `workspace` and
    `repo` together (None: any)."""

    user: str | None = None
    workspace: str | None = None
    repo: str | None = None

    def key(self, org: str) -> str:
        user, workspace, repo = self.user, self.workspace, self.repo
        if repo is not None and workspace is not None:
            if user:
                return keys.org_index(org, "ws_repo_u", workspace, repo, user)
            return keys.org_index(org, "ws_repo", workspace, repo)
        if repo is not None:
            return (
                keys.org_index(org, "repo_u", repo, user)
                if user
                else keys.org_index(org, "repo", repo)
            )
        if workspace is not None:
            if user:
                return keys.org_index(org, "ws_u", workspace, user)
            return keys.org_index(org, "ws", workspace)
        if user is not None:
            return keys.org_index(org, "u", user)
        return keys.org_index(org)


def indexes_of(conv: Conversation) -> list[Index]:
    """Every index one conversation belongs to."""
    user, ws, repo = conv.created_by, conv.workspace_id, conv.repo_id
    found = [Index(), Index(user=user)]
    if ws:
        found += [Index(workspace=ws), Index(user=user, workspace=ws)]
    if repo:
        found += [Index(repo=repo), Index(user=user, repo=repo)]
    if repo and ws:
        found += [Index(workspace=ws, repo=repo), Index(user=user, workspace=ws, repo=repo)]
    return found


def index_keys(conv: Conversation) -> list[str]:
    return [i.key(conv.org_id) for i in indexes_of(conv)]


class Conversations:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self._ensure_default_session = Script(redis, _ENSURE_DEFAULT_SESSION)
        self._soft_delete = Script(redis, _SOFT_DELETE)
        self._session_conversations: dict[str, str] = {}  # session id -> conversation id

    # -- conversations -------------------------------------------------------------------

    async def create(self, conv: Conversation) -> Conversation:
        conv.created_at = conv.updated_at = conv.created_at or now_ms()
        await self.redis.hset(keys.conversation(conv.id), mapping=conv.to_hash())  # type: ignore[arg-type]  # dict is invariant
        # the org-tagged indexes live in another slot: a second, separate step
        pipe = self.redis.pipeline(transaction=False)
        for key in index_keys(conv):
            pipe.zadd(key, {conv.id: conv.created_at})
        await pipe.execute()
        return conv

    async def create_with_session(
        self,
        conv: Conversation,
        session: ChatSession,
        event: QueuedEvent | None = None,
    ) -> Conversation:
        """A conversation with its default chat session, in one round trip: first the
        conversation's own keys, then the session lookup, then the org's indexes and audit
        event, so an indexed conversation is always readable."""
        conv.created_at = conv.updated_at = conv.created_at or now_ms()
        session.created_at = session.updated_at = conv.created_at
        pipe = self.redis.pipeline(transaction=False)
        fields = {**conv.to_hash(), "default_session_id": session.id}
        pipe.hset(keys.conversation(conv.id), mapping=fields)  # type: ignore[arg-type]  # dict is invariant
        pipe.hset(keys.sessions(conv.id), session.id, session.to_json())
        if self.cluster:  # nodes answer in parallel there: the conversation lands first
            await pipe.execute()
        pipe.set(keys.session_lookup(session.id), conv.id)
        for key in index_keys(conv):
            pipe.zadd(key, {conv.id: conv.created_at})
        if event is not None:
            queue_event(pipe, *event)
        await pipe.execute()
        self._remember(session.id, conv.id)
        return conv

    async def get(self, cid: str) -> Conversation | None:
        h = cast(dict[str, str], await self.redis.hgetall(keys.conversation(cid)))
        return Conversation.from_hash(h) if h else None

    async def get_many(self, ids: list[str]) -> list[Conversation]:
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(keys.conversation(cid))
        return [Conversation.from_hash(h) for h in await pipe.execute() if h]

    async def get_with_default_session(self, cid: str) -> tuple[Conversation | None, str | None]:
        h = cast(dict[str, str], await self.redis.hgetall(keys.conversation(cid)))
        if not h:
            return None, None
        return Conversation.from_hash(h), h.get("default_session_id") or None

    async def soft_delete(
        self,
        conv: Conversation,
        *,
        deleted_by: str,
        event: QueuedEvent | None = None,
    ) -> int | None:
        """Mark the conversation deleted (first caller wins) and drop it from every index;
        its messages stay. Returns the deletion time, or None when it was already deleted."""
        at = now_ms()
        done = await self._soft_delete([keys.conversation(conv.id)], [at, deleted_by])
        if not done:
            return None
        pipe = self.redis.pipeline(transaction=False)
        for key in index_keys(conv):
            pipe.zrem(key, conv.id)
        if event is not None:
            queue_event(pipe, *event)
        await pipe.execute()
        return at

    # -- pages of an org's indexes -------------------------------------------------------

    async def page(
        self,
        org: str,
        index: Index,
        *,
        offset: int,
        limit: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> tuple[list[str], int]:
        """Newest first from one index: O(log N + limit)."""
        lo = "-inf" if since_ms is None else since_ms
        hi = "+inf" if until_ms is None else until_ms
        key = index.key(org)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrangebyscore(key, hi, lo, start=offset, num=limit)
        pipe.zcount(key, lo, hi)
        ids, total = await pipe.execute()
        return ids, total

    async def page_merged(
        self,
        org: str,
        indexes: list[Index],
        shared: list[Index],
        *,
        offset: int,
        limit: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> tuple[list[str], int]:
        """Newest first from the union of several indexes without building it: the top
        offset+limit of each, merged here, costs O(k * (log N + offset + limit)) whatever the
        indexes hold. The total is the sum of their counts less the counts of `shared`, the
        indexes of what they have in common. One MULTI: ranges and counts agree."""
        lo = "-inf" if since_ms is None else since_ms
        hi = "+inf" if until_ms is None else until_ms
        names = [i.key(org) for i in indexes]
        pipe = self.redis.pipeline(transaction=True)
        for key in names:
            pipe.zrevrangebyscore(key, hi, lo, start=0, num=offset + limit, withscores=True)
        for key in (*names, *(i.key(org) for i in shared)):
            pipe.zcount(key, lo, hi)
        results = await pipe.execute()
        score: dict[str, float] = {}
        for rows in results[: len(names)]:
            score.update(rows)
        # ZREVRANGE's own order: score, then member, both descending
        ordered = sorted(score, key=lambda m: (score[m], m), reverse=True)
        counts = results[len(names) :]
        total = sum(counts[: len(names)]) - sum(counts[len(names) :])
        return ordered[offset : offset + limit], total

    # -- chat sessions -------------------------------------------------------------------

    async def create_session(self, session: ChatSession) -> ChatSession:
        session.created_at = session.updated_at = now_ms()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.sessions(session.conversation_id), session.id, session.to_json())
        pipe.hset(keys.conversation(session.conversation_id), "updated_at", str(session.updated_at))
        await pipe.execute()
        await self.redis.set(keys.session_lookup(session.id), session.conversation_id)
        self._remember(session.id, session.conversation_id)
        return session

    async def ensure_default_session(self, session: ChatSession) -> str:
        """The conversation's default session: the one already set, else `session`, created
        now. The lookup key is written first, so a session id is never handed out unroutable."""
        session.created_at = session.updated_at = now_ms()
        cid = session.conversation_id
        await self.redis.set(keys.session_lookup(session.id), cid)
        sid = await self._ensure_default_session(
            [keys.conversation(cid), keys.sessions(cid)], [session.id, session.to_json()]
        )
        if sid != session.id:
            await self.redis.delete(keys.session_lookup(session.id))
        else:
            self._remember(sid, cid)
        return sid or ""

    async def session_conversation_id(self, sid: str) -> str | None:
        """A session never changes conversation, so what was read (or made) once is kept
        (the newest SESSION_CACHE_SIZE): a turn of a session seen before saves a round trip,
        the first one too when this worker made the session. A deleted conversation is
        still found gone by Turns.load_context."""
        cid = self._session_conversations.get(sid)
        if cid is None:
            cid = cast(str | None, await self.redis.get(keys.session_lookup(sid)))
            if cid is not None:
                self._remember(sid, cid)
        return cid

    def _remember(self, sid: str, cid: str) -> None:
        known = self._session_conversations
        if sid not in known and len(known) >= SESSION_CACHE_SIZE:
            del known[next(iter(known))]  # the oldest
        known[sid] = cid

    async def sessions(self, cid: str) -> list[ChatSession]:
        raw = cast(list[str], await self.redis.hvals(keys.sessions(cid)))
        found = [ChatSession.from_json(r) for r in raw]
        found.sort(key=lambda s: (s.created_at, s.id))
        return found

    # -- messages ------------------------------------------------------------------------

    async def messages(self, cid: str, *, offset: int, limit: int) -> tuple[list[Message], int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(keys.messages(cid), offset, offset + limit - 1)
        pipe.llen(keys.messages(cid))
        raw, total = await pipe.execute()
        return [Message.from_json(r) for r in raw], total

    async def append_message(self, msg: Message) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(keys.messages(msg.conversation_id), msg.to_json())
        pipe.hset(keys.conversation(msg.conversation_id), "updated_at", str(msg.created_at))
        await pipe.execute()
