"""Everything a turn does before the provider is called, all of which can still be an HTTP
error: lookup and access, size, quotas, the pre-stage policies, and the one atomic step that
takes the conversation's lock and stores the user's message."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from redis.exceptions import RedisError

from gateway.access.principal import Principal
from gateway.access.quotas import OUTPUT_RESERVE, Admitted, RateLimits, key_budgets
from gateway.errors import BadRequest, Conflict, Forbidden, NotFound, PolicyBlocked
from gateway.governance import Governance
from gateway.models.connections import Connections
from gateway.models.registry import ModelEntry
from gateway.policy import ActivePolicies, Violation
from gateway.settings import ModelConfig, Settings
from gateway.storage.quotas import Reservation
from gateway.storage.records import ChatSession, Conversation, Message, new_id, now_ms
from gateway.storage.store import Store
from gateway.turn import bounds, parts, resume_log
from gateway.turn.context import HISTORY_LIMIT, build_context, estimated_input_tokens
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
    history: list[Message]
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
    conv: Conversation | None,
    session_id: str | None,
) -> tuple[str, list[Violation]]:
    """Pre stage: the prompt as the provider and the store may see it (redacted), or
    400 policy_blocked with the provider never called and the prompt kept as blocked."""
    if not active.pre:
        return prompt, []
    decision = active.check_prompt(prompt)
    if decision.blocked is None:
        return decision.text, list(decision.violations)
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


def reservation_for(ask: Prompt, ctx: _Context) -> int:
    """The tokens a prompt reserves in its token budgets: its input as estimated from what
    it sends (the stored history and the prompt, at most the context window; or the client's
    messages) and its output bound (the request's or the model's, else OUTPUT_RESERVE)."""
    model = ctx.model
    if ask.text is not None:
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
        self.salvage = salvage
        self.settings = settings
        self.store = store
        self.connections = connections
        self.governance = governance
        self.limits = limits
        self.live = live

    async def visible_conversation(self, principal: Principal, cid: str) -> Conversation:
        conv = await self.store.conversations.get(cid)
        if conv is None or not principal.can_see(conv):
            raise NotFound("conversation not found", code="conversation_not_found")
        return conv

    async def prepare(self, ask: Prompt) -> Turn:
        if ask.text is not None:
            ctx = await self._stored_context(ask)
        else:
            ctx = await self._direct_context(ask)
        conv, principal = ctx.conversation, ask.principal
        org_id = conv.org_id if conv else (principal.org_id or NO_ORG)
        # the client the turn keeps to its end, whatever happens to the entry meanwhile
        provider = await self.connections.provider(
            ctx.entry, org_id, conv.repo_id if conv else None
        )
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
        if ask.text is not None:
            prompt, pre = await _pre_check(
                self.store, self.governance, active, principal, model, ask.text, conv, session_id
            )
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
            turn.user_message = Message(
                id=new_id(),
                conversation_id=conv.id,
                chat_session_id=session_id,
                role="user",
                content=content,
                status="complete",
                created_at=now_ms(),
                model_id=model.id,
                user_id=principal.user_id,
                parts=parts_kept,
            )
            await self._begin(turn)
        return turn

    async def _stored_context(self, ask: Prompt) -> _Context:
        """A native route's turn: the session's conversation and its history."""
        assert ask.session_id is not None and ask.text is not None
        principal = ask.principal
        cid = await self.store.conversations.session_conversation_id(ask.session_id)
        if cid is None:
            raise NotFound("chat session not found", code="session_not_found")
        conv, session, history = await self.store.turns.load_context(
            cid, ask.session_id, HISTORY_LIMIT
        )
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

    async def _begin(self, turn: Turn) -> None:
        """The lock, the user's message (stored before the provider is called) and the
        resume log's start entry, atomically; 409 while another turn holds the lock."""
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
                began = await self.store.turns.begin(
                    turn.user_message,
                    answer_id=turn.message_id,
                    lock_value=turn.lock_value,
                    lock_ttl_ms=int(self.settings.turn_lock_ttl * 1000),
                    start_entry=start,
                    log_ttl_s=self.settings.resume_ttl,
                )
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
                return
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
