"""The Responses API's server-side state, kept as conversations: a stored response is an
answer (an assistant message) of a conversation, its id that message's; a response made
with `store` opens a conversation of its own, and `previous_response_id` continues the
conversation of that answer, its history loaded from Redis as the model's turns.

A conversation is one line of turns: only its latest answer can be continued (a branch
from an earlier one is refused). Who may not see the conversation gets 404, as for any
stored object; who may see it but not prompt it (an admin reading a user's) gets 403."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.access.principal import Principal
from gateway.errors import BadRequest, Conflict, NotFound
from gateway.storage.records import Conversation, Creator, Message, new_id
from gateway.storage.store import Store
from gateway.turn.context import HISTORY_LIMIT
from gateway.turn.parts import consistent, history_turns
from gateway.turn.prepare import NO_ORG
from providers.base import ChatMessage

TITLE_CHARS = 80


@dataclass(slots=True)
class Stored:
    """A stored response: its conversation, the answer, and the history up to it."""

    conversation: Conversation
    answer: Message
    history: list[Message]  # up to the answer, oldest first
    later: list[Message]  # what the conversation holds after it

    def turns(self) -> list[ChatMessage]:
        """The history as the model's turns (tool calls, their results, reasoning handed
        back); join() makes them consistent with what follows."""
        usable = [
            m
            for m in self.history
            if (m.role == "user" and m.status == "complete")
            or (m.role == "assistant" and m.status in ("complete", "cancelled"))
        ]
        return [turn for m in usable for turn in history_turns(m)]


def join(prior: list[ChatMessage], turns: list[ChatMessage]) -> list[ChatMessage]:
    """The stored turns, then the new input: a stored tool call that the input's first
    tool results answer keeps them; one left unanswered is the answer's text alone (the
    providers refuse an unanswered call). A result the input sends for no call is refused
    rather than dropped."""
    head = 0
    while head < len(turns) and turns[head].role == "tool":
        head += 1
    joined = consistent([*prior, *turns[:head]])
    for i, result in enumerate(turns[:head]):
        if not any(m is result for m in joined):
            raise BadRequest(
                f"input.{i}: function_call_output answers no function call of the previous "
                f"response ({result.tool_call_id!r})",
                code="invalid_value",
                param=("input", i),
            )
    return [*joined, *turns[head:]]


class StoredResponses:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, principal: Principal, message_id: str) -> Stored:
        """The stored answer `message_id` that `principal` may see: 404 otherwise (another
        org's, a user's own only, a deleted conversation, a response made without store)."""
        missing = NotFound(
            f"response 'resp_{message_id.replace('-', '')}' not found", code="response_not_found"
        )
        cid = await self.store.turns.message_conversation_id(message_id)
        if cid is None:
            raise missing
        conv, _, history = await self.store.turns.load_context(cid, "", HISTORY_LIMIT)
        if conv is None or conv.deleted_at is not None or not principal.can_see(conv):
            raise missing
        for i in range(len(history) - 1, -1, -1):
            if history[i].id == message_id:
                if history[i].role != "assistant":
                    raise missing
                return Stored(conv, history[i], history[: i + 1], history[i + 1 :])
        # the lookup is written when the answer begins, the message when it ends
        holder = await self.store.turns.lock_holder(cid)
        if holder is not None and holder.endswith(f":{message_id}"):
            raise Conflict(
                "that response is still being generated",
                code="response_in_progress",
                headers={"Retry-After": "1"},
            )
        raise missing  # older than the HISTORY_LIMIT messages a turn reads

    async def continued(self, principal: Principal, message_id: str) -> Stored:
        """The stored answer that a new response continues: the latest of its conversation."""
        stored = await self.find(principal, message_id)
        later = [m.id.replace("-", "") for m in stored.later if m.role == "assistant"]
        if later:
            raise BadRequest(
                "previous_response_id: that response was continued already; this gateway keeps "
                f"one line per conversation, continue from the latest (resp_{later[-1]})",
                code="unsupported_parameter",
                param=("previous_response_id",),
            )
        return stored

    async def open(self, principal: Principal, title: str) -> Conversation:
        """A conversation for a response stored anew, in the caller's org (and its only
        workspace, as the Conversation Service does)."""
        workspaces = principal.workspaces
        conv = Conversation(
            id=new_id(),
            org_id=principal.org_id or NO_ORG,
            title=" ".join(title.split())[:TITLE_CHARS] or "response",
            created_by=principal.user_id,
            creator=Creator(
                principal.user_id, principal.name, principal.family_name, principal.email
            ),
            workspace_id=next(iter(workspaces)) if len(workspaces) == 1 else None,
        )
        return await self.store.conversations.create(conv)

    async def abandon(self, principal: Principal, conv: Conversation) -> None:
        """A conversation opened for a response that never began (refused before its
        prompt was stored): dropped from every listing."""
        await self.store.conversations.soft_delete(conv, deleted_by=principal.user_id)
