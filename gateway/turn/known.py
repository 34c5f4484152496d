"""The sessions a worker has prompted or made, so that their next turn makes one round trip
to Redis before its provider instead of two.

A native turn needs its conversation (for access and for the policies of its workspace and
repository) and its session (for the model) before it can check the prompt, and the
history only to build the provider's request. What access and the policies read of a
conversation never changes once it is made (its org, creator, workspace and repository), nor
does a session's model; so for a session seen before, those checks run on what this worker
read last time, and the turn's one atomic step (gateway/storage/turns.py, Turns.begin with
a history limit) checks what can change (the session and the conversation still there, not
deleted), reads the history and takes the lock, in one round trip; the turn reads nothing
else of its conversation (its title or running totals, kept as they were, are never looked
at before the end-of-turn script returns the new totals). Any other worker's deletion is seen there:
nothing is written, and the turn is prepared again from a full read, as on its first turn.

Bounded: the newest KNOWN_SESSIONS sessions (a conversation and a session each, about
1 KB); the oldest is dropped first."""

from __future__ import annotations

from gateway.storage.records import ChatSession, Conversation

KNOWN_SESSIONS = 10_000


class KnownSessions:
    def __init__(self, limit: int = KNOWN_SESSIONS) -> None:
        self.limit = limit
        self._known: dict[str, tuple[Conversation, ChatSession]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def get(self, session_id: str) -> tuple[Conversation, ChatSession] | None:
        return self._known.get(session_id)

    def remember(self, conversation: Conversation, session: ChatSession) -> None:
        """A session and its conversation as just read (or made); a deleted one is not kept."""
        if conversation.deleted_at is not None or session.conversation_id != conversation.id:
            return
        known = self._known
        if session.id not in known and len(known) >= self.limit:
            del known[next(iter(known))]  # the oldest
        known[session.id] = (conversation, session)

    def forget(self, session_id: str) -> None:
        self._known.pop(session_id, None)


class Stale(Exception):
    """What this worker knew of a session no longer holds (the session or its conversation
    is gone or deleted), or its prompt is to be refused on what it knew: nothing was
    written, so the turn is prepared again from a full read, which answers exactly as a
    first turn does."""
