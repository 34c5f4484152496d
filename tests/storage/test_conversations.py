"""The session -> conversation lookup a turn starts with: kept in memory once read or made by
this worker (a session never changes conversation), the newest SESSION_CACHE_SIZE only."""

from __future__ import annotations

from gateway.storage import conversations, keys
from gateway.storage.records import ChatSession, Conversation, Creator


def conversation(cid: str = "c1") -> Conversation:
    return Conversation(
        id=cid, org_id="acme", title="t", created_by="alice", creator=Creator("alice")
    )


async def test_a_session_made_here_is_found_without_asking_redis(store, redis):
    made = ChatSession(id="s1", conversation_id="c1", model_id="gpt")
    await store.conversations.create_with_session(conversation(), made)
    extra = await store.conversations.create_session(
        ChatSession(id="s2", conversation_id="c1", model_id="gpt")
    )
    # the lookup keys are written all the same (other workers read them) ...
    assert await redis.get(keys.session_lookup("s1")) == b"c1"
    assert await redis.get(keys.session_lookup(extra.id)) == b"c1"
    await redis.delete(keys.session_lookup("s1"), keys.session_lookup("s2"))
    # ... but this worker answers from what it made
    assert await store.conversations.session_conversation_id("s1") == "c1"
    assert await store.conversations.session_conversation_id("s2") == "c1"
    assert await store.conversations.session_conversation_id("s3") is None


async def test_the_default_session_is_remembered_only_when_it_won(store, redis):
    await store.conversations.create(conversation("c2"))
    won = await store.conversations.ensure_default_session(
        ChatSession(id="first", conversation_id="c2", model_id="gpt")
    )
    lost = await store.conversations.ensure_default_session(
        ChatSession(id="second", conversation_id="c2", model_id="gpt")
    )
    assert (won, lost) == ("first", "first")
    await redis.delete(keys.session_lookup("first"))
    assert await store.conversations.session_conversation_id("first") == "c2"
    assert await store.conversations.session_conversation_id("second") is None


async def test_the_cache_holds_the_newest_sessions_only(store, redis, monkeypatch):
    monkeypatch.setattr(conversations, "SESSION_CACHE_SIZE", 3)
    for i in range(10):
        await store.conversations.create_session(
            ChatSession(id=f"s{i}", conversation_id="c1", model_id="gpt")
        )
    assert list(store.conversations._session_conversations) == ["s7", "s8", "s9"]  # noqa: SLF001
    # a session seen again takes no one's place
    await store.conversations.session_conversation_id("s8")
    assert len(store.conversations._session_conversations) == 3  # noqa: SLF001
