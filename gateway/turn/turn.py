"""One prompt and its answer, as it runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.access.principal import Principal
from gateway.policy import ActivePolicies, Violation
from gateway.settings import ModelConfig
from gateway.storage.quotas import Reservation
from gateway.storage.records import Conversation, Message, new_id
from gateway.turn.events import Start
from providers.base import ChatRequest, Provider, ProviderEvent


@dataclass(slots=True, weakref_slot=True, eq=False)
class Turn:
    """A direct turn (the OpenAI/Anthropic-compatible routes without a conversation) has no
    conversation: only its usage is recorded. A turn holds its provider clients (weakly
    referenced by gateway/models/clients.py, which closes none while a turn holds it)."""

    principal: Principal
    org_id: str
    model: ModelConfig
    provider: Provider
    request: ChatRequest
    conversation: Conversation | None = None
    session_id: str | None = None
    user_message: Message | None = None
    message_id: str = field(default_factory=new_id)
    started: float = field(default_factory=time.perf_counter)
    request_id: str | None = None
    on_disconnect: str = "cancel"  # or "continue": keep generating for a later resume
    lock_value: str | None = None
    rate_headers: dict[str, str] = field(default_factory=dict)  # X-RateLimit-* of the admission
    reservation: Reservation | None = None  # tokens held in the budgets until the end settles
    # set when the upstream accepted the request
    stream: AsyncIterator[ProviderEvent] | None = None
    answering: ModelConfig | None = None  # the model that answers (a fallback, maybe)
    answering_provider: Provider | None = None
    # set while it streams
    first_sent: float | None = None
    overhead: float = 0.0
    # policies: those of the turn's context, and every violation of its three stages
    active: ActivePolicies | None = None
    violations: list[Violation] = field(default_factory=list)

    @property
    def resumable(self) -> bool:
        """A turn of a stored conversation has a resume log; a direct one has none."""
        return self.conversation is not None

    def sent_first(self, upstream_ttft: float) -> None:
        """The first content frame went out: the gateway's own share of the wait is the
        time to it less the upstream's time to its first token."""
        self.first_sent = time.perf_counter()
        self.overhead = (self.first_sent - self.started) - upstream_ttft

    def start_event(self) -> Start:
        return Start(
            message_id=self.message_id,
            conversation_id=self.conversation.id if self.conversation else None,
            chat_session_id=self.session_id,
            model=(self.answering or self.model).id,
            user_message_id=self.user_message.id if self.user_message else None,
        )
