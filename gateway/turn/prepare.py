"""Everything a turn does before the provider is called, all of which can still be an HTTP
error: lookup and access, size, quotas, the pre-stage policies, and the one atomic step that
takes the conversation's lock and stores the user's message."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from redis.exceptions import RedisError

from gateway.access.principal import Principal
from gateway.access.quotas import OUTPUT_RESERVE, Admitted, RateLimits, key_budgets
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    PolicyBlocked,
)
from gateway.governance import Governance
from gateway.models.connections import Connections
from gateway.models.registry import ModelEntry
from gateway.policy import ActivePolicies, Violation
from gateway.settings import ModelConfig, Settings
from gateway.storage.quotas import Reservation
from gateway.storage.records import ChatSession, Conversation, Message, new_id, now_ms
from gateway.storage.store import Store
from gateway.turn import bounds, parts
from gateway.turn.begin import Beginning
from gateway.turn.context import HISTORY_LIMIT, build_context, estimated_input_tokens
from gateway.turn.known import KnownSessions, Stale
from gateway.turn.live import Live
from gateway.turn.salvage import Salvage
from gateway.turn.turn import Turn
from gateway.turn.violations import violation_context
from providers.base import (
    MESSAGE_OVERHEAD_TOKENS,
    ChatMessage,
    ChatRequest,
    Provider,
    estimate_tokens,
)

log = logging.getLogger("gateway.chat")

NO_ORG = "_platform"  # where the usage of callers without an org (the admin) is counted
# what a known session's turn carries until the step that begins it has read the history
_UNREAD = ChatRequest(model="", messages=[])


@dataclass(slots=True, frozen=True)
class Prompt:
    """What a route asks for. The native routes send `text` to a stored conversation's
    session; the compatible routes send the whole `messages` list for `model_id`, appended
    to `conversation_id` when they name one."""

    principal: Principal
    text: str | None = None
    session_id: str | None = None
    org_id: str | None = None  # the org the native route names: another org's session is 404
    messages: list[ChatMessage] | None = None
    # the compatible routes' whole normalized request (tools, sampling, structured output,
    # ...; its messages are `messages` when that is not set): the turn sets its model,
    # its messages as the pre stage left them and its output limit
    request: ChatRequest | None = None
    model_id: str | None = None
    conversation_id: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    on_disconnect: str = "cancel"
    started: float | None = None
    request_id: str | None = None


@dataclass(slots=True)
class _Context:
    conversation: Conversation | None
    session: ChatSession | None
    # None: a known session's (gateway/turn/known.py), read by the step that begins the turn
    history: list[Message] | None
    entry: ModelEntry
    messages: list[ChatMessage] = field(default_factory=list)  # a compatible route's own

    @property
    def model(self) -> ModelConfig:
        return self.entry.config


def _direct_messages(ask: Prompt) -> list[ChatMessage]:
    if ask.messages is not None:
        return ask.messages
    return list(ask.request.messages) if ask.request is not None else []


def _request(
    ask: Prompt, ctx: _Context, prompt: str, messages: list[ChatMessage] | None = None
) -> ChatRequest:
    """What the provider gets: the stored history plus the prompt (trimmed to the context
    window) for a native route, the client's own request for a compatible one; the prompt
    as the pre stage left it (redacted, maybe)."""
    model = ctx.model
    limit = min(filter(None, (ask.max_output_tokens, model.max_output_tokens)), default=None)
    if ask.text is None:
        template = ask.request or ChatRequest(model="", messages=[], temperature=ask.temperature)
        return replace(
            template,
            model=model.upstream_model,
            messages=messages or [],
            max_output_tokens=limit,
        )
    assert ctx.history is not None
    history = build_context(
        ctx.history,
        prompt,
        context_window=model.context_window,
        max_output=model.max_output_tokens,
    )
    return ChatRequest(
        model=model.upstream_model,
        messages=history,
        max_output_tokens=limit,
        temperature=ask.temperature,
    )


async def _keep_blocked(
    store: Store,
    governance: Governance,
    principal: Principal,
    model: ModelConfig,
    conv: Conversation | None,
    session_id: str | None,
    content: str,
    violations: list[Violation],
    *,
    parts_kept: list[dict[str, Any]] | None = None,
) -> None:
    """A blocked prompt: kept (redacted, marked blocked) with its violations."""
    org_id = conv.org_id if conv else (principal.org_id or NO_ORG)
    blocked = Message(
        id=new_id(),
        conversation_id=conv.id if conv else "",
        chat_session_id=session_id,
        role="user",
        content=content,
        status="blocked",
        created_at=now_ms(),
        model_id=model.id,
        user_id=principal.user_id,
        policy=[{"id": v.policy_id, "action": v.action, "stage": "pre"} for v in violations],
        parts=parts_kept or [],
    )
    context = violation_context(principal, org_id, conv, blocked.id, model.id)
    records = governance.records(violations, context)
    if conv is not None:
        await store.conversations.append_message(blocked)
    await store.events.record_violations(org_id, records)


async def _pre_check(
    store: Store,
    governance: Governance,
    active: ActivePolicies,
    principal: Principal,
    model: ModelConfig,
    prompt: str,
    ctx: _Context,
) -> tuple[str, list[Violation]]:
    """Pre stage: the prompt as the provider and the store may see it (redacted), or
    400 policy_blocked with the provider never called and the prompt kept as blocked (once
    a full read has found its conversation still there: a known session's reads it first)."""
    if not active.pre:
        return prompt, []
    decision = active.check_prompt(prompt)
    if decision.blocked is None:
        return decision.text, list(decision.violations)
    if ctx.history is None:
        raise Stale
    conv, session_id = ctx.conversation, ctx.session.id if ctx.session else None
    violations = list(decision.violations)
    await _keep_blocked(
        store,
        governance,
        principal,
        model,
        conv,
        session_id,
        decision.text,
        violations,
    )
    raise PolicyBlocked(
        f"the prompt was blocked by policy {decision.blocked.policy_id!r} "
        f"({decision.blocked.label})"
    )


async def _pre_check_parts(
    store: Store,
    governance: Governance,
    active: ActivePolicies,
    principal: Principal,
    model: ModelConfig,
    ctx: _Context,
    conv: Conversation | None,
) -> parts.Checked:
    """Pre stage of a compatible route: every part the model will read, redacted where
    a policy says so; blocked: 400 policy_blocked, the new input kept as blocked."""
    messages = ctx.messages
    if not active.pre:
        return parts.Checked(messages, [], None)
    checked = parts.pre_check(active, messages)
    if checked.blocked is None:
        return checked
    content, kept = parts.stored_input(parts.new_input(checked.messages))
    await _keep_blocked(
        store,
        governance,
        principal,
        model,
        conv,
        None,
        content,
        checked.violations,
        parts_kept=kept,
    )
    raise PolicyBlocked(
        f"the prompt was blocked by policy {checked.blocked.policy_id!r} ({checked.blocked.label})"
    )


def _user_message(turn: Turn, content: str, parts_kept: list[dict[str, Any]]) -> Message:
    """The user's message of a stored conversation's turn, as the begin step stores it."""
    assert turn.conversation is not None
    return Message(
        id=new_id(),
        conversation_id=turn.conversation.id,
        chat_session_id=turn.session_id,
        role="user",
        content=content,
        status="complete",
        created_at=now_ms(),
        model_id=turn.model.id,
        user_id=turn.principal.user_id,
        parts=parts_kept,
    )


def reservation_for(ask: Prompt, ctx: _Context) -> int:
    """The tokens a prompt reserves in its token budgets: its input as estimated from what
    it sends (the stored history and the prompt, at most the context window; or the client's
    messages) and its output bound (the request's or the model's, else OUTPUT_RESERVE)."""
    model = ctx.model
    if ask.text is not None:
        assert ctx.history is not None  # a known session's turn counts no tokens
        sent = [m.content for m in ctx.history] + [ask.text]
        estimate = sum(estimate_tokens(t) + MESSAGE_OVERHEAD_TOKENS for t in sent)
        if model.context_window is not None:
            estimate = min(estimate, model.context_window)
    else:
        estimate = estimated_input_tokens(_direct_messages(ask))
    bound = min(filter(None, (ask.max_output_tokens, model.max_output_tokens)), default=None)
    return estimate + (bound or OUTPUT_RESERVE)


async def model_entry(
    connections: Connections, principal: Principal, model_id: str, org_id: str
) -> ModelEntry:
    """The entry `model_id` names in the org: 404 when there is none (or it was deleted),
    403 when the caller's API key is not allowed to use it."""
    entry = await connections.model(model_id, org_id)
    if entry is None:
        raise NotFound(f"model {model_id!r} is not served", code="model_not_found")
    if not principal.may_use_model(entry.id):
        raise Forbidden(f"this API key may not use model {model_id!r}", code="model_not_allowed")
    return entry


class Preparation:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        connections: Connections,
        governance: Governance,
        limits: RateLimits,
        live: Live,
        salvage: Salvage,
    ) -> None:
        self.settings = settings
        self.store = store
        self.connections = connections
        self.governance = governance
        self.limits = limits
        self.live = live
        self.known = KnownSessions()
        self.beginning = Beginning(settings, store, live, salvage)

    async def visible_conversation(self, principal: Principal, cid: str) -> Conversation:
        conv = await self.store.conversations.get(cid)
        if conv is None or not principal.can_see(conv):
            raise NotFound("conversation not found", code="conversation_not_found")
        return conv

    async def prepare(self, ask: Prompt) -> Turn:
        if ask.text is not None:
            known = await self._known_context(ask)
            if known is not None:
                try:
                    return await self._prepare(ask, known)
                except Stale:
                    assert ask.session_id is not None
                    self.known.forget(ask.session_id)
            ctx = await self._stored_context(ask)
        else:
            ctx = await self._direct_context(ask)
        return await self._prepare(ask, ctx)

    async def _prepare(self, ask: Prompt, ctx: _Context) -> Turn:
        conv, principal = ctx.conversation, ask.principal
        org_id = conv.org_id if conv else (principal.org_id or NO_ORG)
        # the client the turn keeps to its end, whatever happens to the entry meanwhile
        try:
            provider = await self.connections.provider(
                ctx.entry, org_id, conv.repo_id if conv else None
            )
        except GatewayError:
            if ctx.history is None:  # refused on what was known: the full read answers
                raise Stale from None
            raise
        # the rate limits: counted once the prompt is known to be valid, before the
        # pre-policy (which may store a blocked prompt) and before anything else is stored
        budgets = key_budgets(principal)
        reserve = reservation_for(ask, ctx) if self.limits.counts_tokens(org_id, budgets) else 0
        admitted = await self.limits.admit(org_id, principal.user_id, budgets, reserve=reserve)
        try:
            if conv is None and not admitted.headers and not self.store.answered_lately():
                # a direct turn that has not spoken to Redis yet: its usage must be
                # recordable, so a Redis that is away is a 503 now, before the upstream
                # (unless Redis answered on the shared connection a moment ago)
                await self.store.ping()
            return await self._admitted(ask, ctx, org_id, admitted, provider)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._give_back(admitted.reservation)
            raise

    async def _give_back(self, reservation: Reservation | None) -> None:
        """The reservation of a prompt that goes no further (blocked, busy, refused)."""
        try:
            await self.limits.release(reservation)
        except RedisError as exc:  # it expires with its window
            log.warning("token reservation not given back: %s", type(exc).__name__)

    async def _admitted(
        self, ask: Prompt, ctx: _Context, org_id: str, admitted: Admitted, provider: Provider
    ) -> Turn:
        """The rest of the preparation, once the limits let the prompt through."""
        conv, model, principal = ctx.conversation, ctx.model, ask.principal
        active = self.governance.active(
            org_id=org_id,
            workspace_id=conv.workspace_id if conv else None,
            repo_id=conv.repo_id if conv else None,
            model_id=model.id,
        )
        session_id = ctx.session.id if ctx.session else None
        parts_kept: list[dict[str, Any]]
        request = _UNREAD
        if ask.text is not None:
            prompt, pre = await _pre_check(
                self.store, self.governance, active, principal, model, ask.text, ctx
            )
            if ctx.history is not None:
                request = _request(ask, ctx, prompt)
            content, parts_kept = prompt, []
        else:
            checked = await _pre_check_parts(
                self.store, self.governance, active, principal, model, ctx, conv
            )
            pre, request = checked.violations, _request(ask, ctx, "", checked.messages)
            content, parts_kept = parts.stored_input(parts.new_input(checked.messages))
        turn = Turn(
            principal=principal,
            org_id=org_id,
            model=model,
            provider=provider,
            request=request,
            conversation=conv,
            session_id=session_id,
            on_disconnect=ask.on_disconnect,
            rate_headers=admitted.headers,
            reservation=admitted.reservation,
            active=active,
            violations=pre,
            request_id=ask.request_id,
        )
        self.connections.hold(turn, provider)
        if ask.started is not None:
            turn.started = ask.started
        if conv is not None:
            turn.user_message = _user_message(turn, content, parts_kept)
            history = await self.beginning.begin(turn, known=ctx.history is None)
            if request is _UNREAD:  # a known session's: the history the step read
                ctx.history = history
                turn.request = _request(ask, ctx, content)
        return turn

    def remember(self, conversation: Conversation, session: ChatSession) -> None:
        """A session just made: its first turn is a known one too."""
        self.known.remember(conversation, session)

    async def _known_context(self, ask: Prompt) -> _Context | None:
        """A native turn of a session this worker knows, checked on what it knew; None (the
        full read answers, as always) when it knows none, when the prompt would be refused,
        or when the rate limits count it (their order against the checks stays as it is)."""
        assert ask.session_id is not None
        known = self.known.get(ask.session_id)
        if known is None or self.limits.counts(key_budgets(ask.principal)):
            return None
        conv, session = known
        try:
            return await self._checked(ask, conv, session, None)
        except GatewayError:
            return None

    async def _stored_context(self, ask: Prompt) -> _Context:
        """A native route's turn: the session's conversation and its history."""
        assert ask.session_id is not None and ask.text is not None
        cid = await self.store.conversations.session_conversation_id(ask.session_id)
        if cid is None:
            raise NotFound("chat session not found", code="session_not_found")
        conv, session, history = await self.store.turns.load_context(
            cid, ask.session_id, HISTORY_LIMIT
        )
        ctx = await self._checked(ask, conv, session, history)
        assert ctx.conversation is not None and ctx.session is not None
        self.known.remember(ctx.conversation, ctx.session)
        return ctx

    async def _checked(
        self,
        ask: Prompt,
        conv: Conversation | None,
        session: ChatSession | None,
        history: list[Message] | None,
    ) -> _Context:
        """404 for a session the caller may not see, 403 when they may not prompt it, the
        session's model (404, 403) and the prompt's size (400)."""
        assert ask.text is not None
        principal = ask.principal
        if (
            conv is None
            or session is None
            or not principal.can_see(conv)
            or (ask.org_id is not None and conv.org_id != ask.org_id)
        ):
            raise NotFound("chat session not found", code="session_not_found")
        if not principal.can_prompt(conv):
            raise Forbidden("only the conversation's creator may prompt it")
        entry = await self.model(principal, session.model_id, conv.org_id)
        if len(ask.text) > self.settings.max_prompt_chars:
            raise BadRequest(
                f"prompt is longer than {self.settings.max_prompt_chars} characters",
                code="prompt_too_long",
            )
        return _Context(conv, session, history, entry)

    async def _direct_context(self, ask: Prompt) -> _Context:
        """A compatible route's turn: the client sends the history itself."""
        assert ask.model_id is not None
        entry = await self.model(ask.principal, ask.model_id, ask.principal.org_id or NO_ORG)
        messages = _direct_messages(ask)
        if not messages or messages[-1].role not in ("user", "tool"):
            raise BadRequest(
                "the last message must be the user's or a tool's result", code="validation_error"
            )
        if ask.request is not None:
            bounds.check(ask.request, self.settings)
        if parts.size(messages) > self.settings.max_prompt_chars:
            raise BadRequest(
                f"messages are longer than {self.settings.max_prompt_chars} characters in all "
                "(images and documents counted by their bytes)",
                code="prompt_too_long",
            )
        conv = None
        if ask.conversation_id is not None:
            conv = await self.visible_conversation(ask.principal, ask.conversation_id)
            if not ask.principal.can_prompt(conv):
                raise Forbidden("only the conversation's creator may prompt it")
        return _Context(conv, None, [], entry, messages)

    async def model(self, principal: Principal, model_id: str, org_id: str) -> ModelEntry:
        return await model_entry(self.connections, principal, model_id, org_id)
