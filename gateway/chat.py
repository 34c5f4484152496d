"""The turn: load context, pre-policy, provider stream, during/post policy, record.

`prepare()` does everything that can still fail with an HTTP error: lookup, access, the
one-turn lock and the user's message (one atomic step). `open()` calls the upstream and
waits for it to accept (so an upstream 401 is still an HTTP 502, and fallbacks are tried
before any byte is sent). `run()` then yields the normalized events that sse.py frames.
The assistant's message is stored before `End` is yielded, on every exit path: a vanished
client, a stop from any worker, a provider failure, or a bug of ours.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import anyio
from redis.exceptions import RedisError

from gateway.auth import Principal
from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PolicyBlocked,
    RateLimited,
    UpstreamFailed,
)
from gateway.governance import Governance, fired
from gateway.limits import RateLimits
from gateway.live import Live, Running
from gateway.observability import Metrics, stream_log
from gateway.policy import ActivePolicies, Violation
from gateway.settings import ModelConfig, Settings
from gateway.store import (
    Conversation,
    Message,
    Store,
    Totals,
    new_id,
    now_ms,
    resume_log_key,
)
from providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    Opened,
    Provider,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Usage,
)
from providers.demo import estimate_tokens

log = logging.getLogger("gateway.chat")

HISTORY_LIMIT = 1000  # messages loaded per turn before trimming to the context window
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per message, as chat formats count them
RETRY_BEFORE_FIRST_TOKEN = 1  # our own retries of a failure after Opened but before any text


# -- the normalized events a turn yields ---------------------------------------------------

@dataclass(slots=True)
class Start:
    message_id: str
    conversation_id: str | None
    chat_session_id: str | None
    model: str
    user_message_id: str | None


@dataclass(slots=True)
class Delta:
    text: str


@dataclass(slots=True)
class ErrorEvent:
    code: str
    message: str


@dataclass(slots=True)
class End:
    message_id: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    totals: Totals | None = None
    usage_estimated: bool = False
    policy: list[dict[str, Any]] = field(default_factory=list)
    stored: bool = True


ChatEvent = Start | Delta | ErrorEvent | End


@dataclass(slots=True)
class Collected:
    """A whole turn, for a request that did not ask to stream."""

    start: Start
    text: str
    error: ErrorEvent | None
    end: End


async def collect(events: AsyncIterator[ChatEvent]) -> Collected:
    start: Start | None = None
    parts: list[str] = []
    error: ErrorEvent | None = None
    end: End | None = None
    async for ev in events:
        if type(ev) is Delta:
            parts.append(ev.text)
        elif type(ev) is Start:
            start = ev
        elif type(ev) is ErrorEvent:
            error = ev
        elif type(ev) is End:
            end = ev
    assert start is not None and end is not None  # run() always yields both
    return Collected(start, "".join(parts), error, end)


@dataclass(slots=True)
class Turn:
    """One prompt and its answer. A direct turn (the OpenAI/Anthropic-compatible routes
    without a conversation) has no conversation: only its usage is recorded."""

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
    log_key: str | None = None
    rate_headers: dict[str, str] = field(default_factory=dict)  # X-RateLimit-* of the admission
    # set by open()
    stream: AsyncIterator[ProviderEvent] | None = None
    answering: ModelConfig | None = None  # the model that answers (a fallback, maybe)
    # set by run()
    first_sent: float | None = None
    overhead: float = 0.0
    # policies: those of the turn's context, and every violation of its three stages
    active: ActivePolicies | None = None
    violations: list[Violation] = field(default_factory=list)

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


def build_context(
    history: list[Message], prompt: str, *, context_window: int | None, max_output: int | None
) -> list[ChatMessage]:
    """Earlier messages of the conversation (all sessions, oldest first) plus the new
    prompt, trimmed oldest-first so the estimate fits the model's context window."""
    usable = [
        m for m in history
        if m.content and (
            (m.role == "user" and m.status == "complete")
            or (m.role == "assistant" and m.status in ("complete", "cancelled"))
        )
    ]
    messages = [ChatMessage(m.role, m.content) for m in usable]  # type: ignore[arg-type]
    messages.append(ChatMessage("user", prompt))
    if context_window is None:
        return messages
    budget = context_window - (max_output or 0)
    cost = [estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages]
    if cost[-1] > budget:
        raise BadRequest(
            f"prompt needs about {cost[-1]} tokens; the model's context window leaves {budget}",
            code="prompt_too_long",
        )
    keep, used = 0, 0
    for c in reversed(cost):
        if used + c > budget:
            break
        used += c
        keep += 1
    return messages[-keep:]


def violation_context(
    principal: Principal, org_id: str, conv: Conversation | None, message_id: str, model_id: str
) -> dict[str, Any]:
    """Where a violation happened, for tracking and for the role rules of its listing."""
    return {
        "org_id": org_id, "user_id": principal.user_id, "model_id": model_id,
        "conversation_id": conv.id if conv else None, "message_id": message_id,
        "workspace_id": conv.workspace_id if conv else None,
        "repo_id": conv.repo_id if conv else None,
        "conversation_creator": conv.created_by if conv else principal.user_id,
    }


def blocked_event(v: Violation) -> ErrorEvent:
    return ErrorEvent("policy_blocked", f"blocked by policy {v.policy_id!r} ({v.label})")


def http_error_for(exc: ProviderError) -> Exception:
    """How an upstream refusal before any byte was sent reaches the client."""
    if exc.kind == "auth":
        return UpstreamFailed(f"the provider refused the gateway's credentials: {exc.message}",
                              code="provider_auth")
    if exc.kind == "rate_limit":
        retry = max(1, round(exc.retry_after or 1))
        return RateLimited(f"the provider is rate limiting: {exc.message}",
                           code="provider_rate_limited", headers={"Retry-After": str(retry)})
    return UpstreamFailed(f"the provider failed: {exc.message}", code="provider_error")


class ChatService:
    def __init__(
        self, settings: Settings, store: Store, providers: dict[str, Provider], metrics: Metrics,
        live: Live, governance: Governance,
    ) -> None:
        self.settings = settings
        self.governance = governance
        self.store = store
        self.providers = providers
        self.metrics = metrics
        self.live = live
        self.limits = RateLimits(settings.limits, store.redis)

    async def visible_conversation(self, principal: Principal, cid: str) -> Conversation:
        conv = await self.store.get_conversation(cid)
        if conv is None or not principal.can_see(conv):
            raise NotFound("conversation not found", code="conversation_not_found")
        return conv

    # -- prepare: everything that can still be an HTTP error ------------------------------

    async def prepare(
        self, principal: Principal, *, chat_session_id: str, prompt: str, org_id: str | None = None,
        started: float | None = None, request_id: str | None = None, on_disconnect: str = "cancel",
    ) -> Turn:
        cid = await self.store.session_conversation_id(chat_session_id)
        if cid is None:
            raise NotFound("chat session not found", code="session_not_found")
        conv, session, history = await self.store.load_turn_context(
            cid, chat_session_id, HISTORY_LIMIT
        )
        if (
            conv is None or session is None or not principal.can_see(conv)
            or (org_id is not None and conv.org_id != org_id)
        ):
            raise NotFound("chat session not found", code="session_not_found")
        if not principal.can_prompt(conv):
            raise Forbidden("only the conversation's creator may prompt it")
        model = self.settings.model(session.model_id)
        if model is None:
            raise NotFound(f"model {session.model_id!r} is not served", code="model_not_found")
        if len(prompt) > self.settings.max_prompt_chars:
            raise BadRequest(
                f"prompt is longer than {self.settings.max_prompt_chars} characters",
                code="prompt_too_long",
            )
        # the rate limits: counted once the prompt is known to be valid, before the
        # pre-policy (which may store a blocked prompt) and before anything else is stored
        rate_headers = await self.limits.admit(conv.org_id, principal.user_id)
        active = self.governance.active(
            org_id=conv.org_id, workspace_id=conv.workspace_id, repo_id=conv.repo_id, model_id=model.id
        )
        prompt, pre = await self._pre_check(active, principal, model, prompt, conv, session.id)
        messages = build_context(
            history, prompt,
            context_window=model.context_window, max_output=model.max_output_tokens,
        )
        turn = Turn(
            principal=principal, org_id=conv.org_id, model=model, provider=self.providers[model.id],
            request=ChatRequest(
                model=model.upstream_model, messages=messages,
                max_output_tokens=model.max_output_tokens,
            ),
            conversation=conv, session_id=session.id,
            user_message=Message(
                id=new_id(), conversation_id=conv.id, chat_session_id=session.id, role="user",
                content=prompt, status="complete", created_at=now_ms(), model_id=model.id,
                user_id=principal.user_id,
            ),
            started=started or time.perf_counter(), request_id=request_id,
            on_disconnect=on_disconnect, rate_headers=rate_headers, active=active, violations=pre,
        )
        await self._begin(turn)
        return turn

    async def prepare_direct(
        self, principal: Principal, *, model_id: str, messages: list[ChatMessage],
        conversation_id: str | None = None, max_output_tokens: int | None = None,
        temperature: float | None = None, started: float | None = None,
        request_id: str | None = None,
    ) -> Turn:
        """A turn whose history the client sends itself (the OpenAI/Anthropic-compatible
        routes). With conversation_id the exchange is appended to that conversation."""
        model = self.settings.model(model_id)
        if model is None:
            raise NotFound(f"model {model_id!r} is not served", code="model_not_found")
        if not messages or messages[-1].role != "user":
            raise BadRequest("the last message must be the user's", code="validation_error")
        if sum(len(m.content) for m in messages) > self.settings.max_prompt_chars:
            raise BadRequest(
                f"messages are longer than {self.settings.max_prompt_chars} characters in all",
                code="prompt_too_long",
            )
        conv = None
        if conversation_id is not None:
            conv = await self.visible_conversation(principal, conversation_id)
            if not principal.can_prompt(conv):
                raise Forbidden("only the conversation's creator may prompt it")
        org_id = conv.org_id if conv else (principal.org_id or "_platform")
        rate_headers = await self.limits.admit(org_id, principal.user_id)  # before anything is stored
        active = self.governance.active(
            org_id=org_id, workspace_id=conv.workspace_id if conv else None,
            repo_id=conv.repo_id if conv else None, model_id=model.id,
        )
        prompt, pre = await self._pre_check(active, principal, model, messages[-1].content, conv, None)
        messages = [*messages[:-1], ChatMessage("user", prompt)]
        limit = min(filter(None, (max_output_tokens, model.max_output_tokens)), default=None)
        turn = Turn(
            principal=principal, org_id=org_id, model=model, provider=self.providers[model.id],
            request=ChatRequest(
                model=model.upstream_model, messages=messages, max_output_tokens=limit,
                temperature=temperature,
            ),
            conversation=conv,
            started=started or time.perf_counter(), request_id=request_id,
            rate_headers=rate_headers, active=active, violations=pre,
        )
        if conv is not None:
            turn.user_message = Message(
                id=new_id(), conversation_id=conv.id, role="user", content=messages[-1].content,
                status="complete", created_at=now_ms(), model_id=model.id,
                user_id=principal.user_id,
            )
            await self._begin(turn)
        return turn

    async def _pre_check(
        self, active: ActivePolicies, principal: Principal, model: ModelConfig, prompt: str,
        conv: Conversation | None, session_id: str | None,
    ) -> tuple[str, list[Violation]]:
        """Pre stage: the prompt as the provider and the store may see it (redacted), or
        400 policy_blocked with the provider never called and the prompt kept as blocked."""
        if not active.pre:
            return prompt, []
        decision = active.check_prompt(prompt)
        if decision.blocked is None:
            return decision.text, list(decision.violations)
        org_id = conv.org_id if conv else (principal.org_id or "_platform")
        blocked = Message(
            id=new_id(), conversation_id=conv.id if conv else "", chat_session_id=session_id,
            role="user", content=decision.text, status="blocked", created_at=now_ms(),
            model_id=model.id, user_id=principal.user_id,
            policy=[{"id": v.policy_id, "action": v.action, "stage": "pre"} for v in decision.violations],
        )
        context = violation_context(principal, org_id, conv, blocked.id, model.id)
        records = self.governance.records(decision.violations, context)
        if conv is not None:
            await self.store.append_message(blocked)
        await self.store.record_violations(org_id, records)
        raise PolicyBlocked(f"the prompt was blocked by policy {decision.blocked.policy_id!r} "
                            f"({decision.blocked.label})")

    async def _begin(self, turn: Turn) -> None:
        """The lock, the user's message (stored before the provider is called) and the
        resume log's start entry, atomically; 409 while another turn holds the lock."""
        assert turn.conversation is not None and turn.user_message is not None
        cid = turn.conversation.id
        turn.lock_value = f"{self.live.worker_id}:{turn.message_id}"
        turn.log_key = resume_log_key(cid, turn.message_id)
        start = {**asdict(turn.start_event()), "worker": self.live.worker_id}
        for attempt in (1, 2):
            try:
                began = await self.store.begin_turn(
                    turn.user_message, answer_id=turn.message_id, lock_value=turn.lock_value,
                    lock_ttl_ms=int(self.settings.turn_lock_ttl * 1000), log_key=turn.log_key,
                    start_data=start, log_ttl_s=self.settings.resume_ttl,
                )
            except RedisError:
                # the script may have run before its reply was lost (a failover, a cut
                # connection): release the lock it may hold, now or once Redis is back,
                # or the conversation stays busy for turn_lock_ttl
                self.live.retry_until_stored(
                    functools.partial(self.store.break_turn_lock, cid, turn.lock_value), turn.message_id
                )
                raise
            if began:
                return
            holder = await self.store.turn_lock_holder(cid)
            # a lock whose worker died (crash, kill -9) is broken at once, not after its TTL
            if attempt == 1 and holder and not await self.store.worker_alive(holder.split(":")[0]):
                await self.store.break_turn_lock(cid, holder)
                continue
            break
        raise Conflict("another prompt of this conversation is still being answered",
                       code="conversation_busy", headers={"Retry-After": "1"})

    # -- open: the upstream accepts, or we try the fallbacks, or it is an HTTP error -------

    async def open(self, turn: Turn) -> None:
        if turn.stream is not None:
            return
        candidates = [(turn.model, turn.provider)] + [
            (m, self.providers[m.id])
            for m in (self.settings.model(f) for f in turn.model.fallbacks) if m is not None
        ]
        failure: ProviderError | None = None
        for model, provider in candidates:
            try:
                turn.stream = await _connect(provider, replace(turn.request, model=model.upstream_model))
            except ProviderError as exc:
                self.metrics.provider_errors.labels(model.id, exc.kind).inc()
                failure = exc
                continue
            turn.answering = model
            return
        assert failure is not None
        await self._record(
            turn, None, "", None, "error", ErrorEvent("provider_error", failure.message)
        )
        raise http_error_for(failure)

    async def _reopen(self, turn: Turn, exc: ProviderError, attempt: int) -> bool:
        """A failure after Opened but before any text reached the client: retry once
        with backoff and jitter (honouring Retry-After), so nothing is ever duplicated."""
        if attempt > RETRY_BEFORE_FIRST_TOKEN or not exc.retryable:
            return False
        delay = min(exc.retry_after or 0.25 * 2 ** attempt, 5.0) * (0.5 + random.random())
        await asyncio.sleep(delay)
        model = turn.answering or turn.model
        await _close(turn.stream)
        turn.stream = None
        provider = turn.provider if model is turn.model else self.providers[model.id]
        try:
            turn.stream = await _connect(provider, replace(turn.request, model=model.upstream_model))
        except ProviderError:
            return False
        return True

    # -- run: the stream ---------------------------------------------------------------

    async def run(self, turn: Turn) -> AsyncIterator[ChatEvent]:
        await self.open(turn)
        handle = self.live.register(turn.message_id, turn.log_key)
        self.metrics.active_streams.inc()
        parts: list[str] = []
        usage: Usage | None = None
        reason: str | None = None
        error: ErrorEvent | None = None
        upstream_started = time.perf_counter()
        upstream_first: float | None = None
        finish: str | None = None
        guard = turn.active.stream_guard() if turn.active is not None else None
        attempt = 0
        yield turn.start_event()
        try:
            while reason is None:
                try:
                    event = await self._next(turn, handle)
                except StopAsyncIteration:
                    # the body ended (after Finish, read to its end so the upstream connection
                    # goes back to the pool), or a stop from any worker or the shutdown
                    reason = handle.stop_reason or finish or "stop"
                    break
                except ProviderError as exc:
                    if not parts:
                        attempt += 1
                        if await self._reopen(turn, exc, attempt):
                            continue
                    reason = "error"
                    error = ErrorEvent("provider_error", exc.message)
                    self.metrics.provider_errors.labels(turn.model.id, exc.kind).inc()
                    break
                if type(event) is TextDelta:
                    if upstream_first is None:
                        upstream_first = time.perf_counter()
                    text = event.text
                    if guard is not None:  # during-stage policies: hold only what may match
                        step = guard.feed(text)
                        text = step.emit
                        if step.violations:
                            turn.violations.extend(step.violations)
                        if step.blocked is not None:
                            reason, error = "policy_blocked", blocked_event(step.blocked)
                    if text:
                        parts.append(text)
                        self.live.append(handle, text)
                        yield Delta(text)
                        if turn.first_sent is None:
                            turn.sent_first(upstream_first - upstream_started)
                elif type(event) is Usage:
                    usage = event
                elif type(event) is Finish:
                    finish = event.reason
            if reason in ("stop", "length") and guard is not None:
                step = guard.finish()  # what was held back is decided now
                if step.violations:
                    turn.violations.extend(step.violations)
                if step.emit:
                    parts.append(step.emit)
                    self.live.append(handle, step.emit)
                    yield Delta(step.emit)
                    if turn.first_sent is None and upstream_first is not None:
                        turn.sent_first(upstream_first - upstream_started)  # all of it was held
                if step.blocked is not None:
                    reason, error = "policy_blocked", blocked_event(step.blocked)
            if reason in ("stop", "length") and turn.active is not None and turn.active.post:
                decision = turn.active.check_answer(
                    "".join(parts), output_tokens=usage.output_tokens if usage else None
                )
                turn.violations.extend(decision.violations)
                if decision.blocked is not None:
                    reason, error = "policy_blocked", blocked_event(decision.blocked)
                elif decision.changed:
                    parts = [decision.text]  # the store keeps the redacted answer
        except Exception:
            # a bug of ours must still end the stream by the contract and keep the partial text
            log.exception("turn %s failed", turn.message_id)
            reason = "error"
            error = ErrorEvent("internal_error", "the gateway failed while streaming")
        finally:
            # shielded: a client that vanished cancels us, and the answer must still be kept
            with anyio.CancelScope(shield=True):
                await _close(turn.stream)
                end = await self._record(
                    turn, handle, "".join(parts), usage, reason or "cancelled", error
                )
                self.live.unregister(handle)
                self.metrics.active_streams.dec()
                self._observe(turn, end)
        if error is not None:
            yield error
        yield end

    async def _next(self, turn: Turn, handle: Running) -> ProviderEvent:
        """The next upstream event; a stop from any worker cancels exactly this wait."""
        assert turn.stream is not None
        if handle.stop_reason is not None:
            raise StopAsyncIteration
        handle.waiting = asyncio.current_task()
        try:
            return await anext(turn.stream)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if handle.stop_reason is not None and task is not None and task.cancelling():
                task.uncancel()  # our own stop, not the client leaving: end the stream normally
                raise StopAsyncIteration from None
            raise
        finally:
            handle.waiting = None

    def _observe(self, turn: Turn, end: End) -> None:
        m, model = self.metrics, (turn.answering or turn.model).id
        m.tokens.labels(model, "in").inc(end.input_tokens)
        m.tokens.labels(model, "out").inc(end.output_tokens)
        m.streams.labels(model, end.finish_reason).inc()
        if turn.first_sent is not None:
            m.ttft.labels(model).observe(turn.first_sent - turn.started)
            m.overhead.labels(model).observe(max(turn.overhead, 0.0))
        if stream_log.isEnabledFor(logging.INFO):
            p = turn.principal
            stream_log.info("stream", extra={"fields": {
                "message_id": end.message_id,
                "conversation_id": turn.conversation.id if turn.conversation else None,
                "user": p.user_id, "org": turn.org_id, "model": model, "key_id": p.key_id,
                "finish_reason": end.finish_reason, "input_tokens": end.input_tokens,
                "output_tokens": end.output_tokens,
                "duration_ms": round((time.perf_counter() - turn.started) * 1000, 3),
                "ttft_ms": None if turn.first_sent is None else round((turn.first_sent - turn.started) * 1000, 3),
                "overhead_ms": None if turn.first_sent is None else round(turn.overhead * 1000, 3),
                "request_id": turn.request_id,
            }})

    def _violation_records(self, turn: Turn) -> list[dict[str, Any]]:
        model_id = (turn.answering or turn.model).id
        records = []
        for v in turn.violations:
            # a prompt's violation belongs to the user's message, the others to the answer
            target = turn.user_message.id if v.stage == "pre" and turn.user_message else turn.message_id
            context = violation_context(turn.principal, turn.org_id, turn.conversation, target, model_id)
            records += self.governance.records([v], context)
        return records

    async def _record(
        self, turn: Turn, handle: Running | None, text: str, usage: Usage | None, reason: str,
        error: ErrorEvent | None,
    ) -> End:
        estimated = usage is None
        if usage is None:
            usage = Usage(
                sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in turn.request.messages),
                estimate_tokens(text),
            )
        status = {"stop": "complete", "length": "complete", "policy_blocked": "blocked"}.get(reason, reason)
        message = Message(
            id=turn.message_id, conversation_id=turn.conversation.id if turn.conversation else "",
            chat_session_id=turn.session_id, role="assistant", content=text, status=status,
            created_at=now_ms(), model_id=(turn.answering or turn.model).id,
            user_id=turn.principal.user_id, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, finish_reason=reason, usage_estimated=estimated,
            error={"code": error.code, "message": error.message} if error else None,
        )
        end = End(
            message_id=turn.message_id, finish_reason=reason, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, usage_estimated=estimated,
            policy=fired(turn.violations),
        )
        message.policy = [{"id": v.policy_id, "action": v.action, "stage": v.stage} for v in turn.violations]
        records = self._violation_records(turn)
        token_windows = self.limits.token_windows(turn.org_id, turn.principal.user_id)
        if turn.conversation is None:
            await self.store.record_usage(
                message, turn.org_id, turn.principal.key_id, token_windows=token_windows
            )
            await self.store.record_violations(turn.org_id, records)
            return end
        entries: list[tuple[str, str, str]] = []
        if handle is not None:
            await self.live.settle()  # a batch in flight lands before this turn's last one
            batch = self.live.take(handle)
            if batch is not None:
                entries.append(("c", str(batch[0]), json_dumps(batch[1])))
        if error is not None:
            entries.append(("error", "0", json_dumps({"code": error.code, "message": error.message})))
        end_data = {k: v for k, v in asdict(end).items() if k not in ("totals", "policy", "stored")}
        if end.policy:
            end_data["policy"] = end.policy
        write = functools.partial(
            self.store.end_turn, message, turn.org_id, turn.principal.key_id,
            lock_value=turn.lock_value, log_key=turn.log_key, log_entries=entries,
            end_data=end_data, log_ttl_s=self.settings.resume_ttl, token_windows=token_windows,
            violations=records,
        )
        end.totals = await self._durably(write, message)
        end.stored = end.totals is not None
        return end

    async def _durably(self, write: Callable[[], Awaitable[Totals]], message: Message) -> Totals | None:
        """Redis may vanish mid-stream: retry the final write for final_write_timeout;
        then hand it to a background retry that lasts until Redis is back (the client's
        `end` says stored=false, so nothing it was told is stored can be lost).
        A write that the replicas did not acknowledge in time (see Durability) is confirmed
        the same way, without writing it twice."""
        deadline = time.monotonic() + self.settings.final_write_timeout
        delay = 0.05
        while True:
            try:
                totals = await write()
                break
            except RedisError as exc:
                if time.monotonic() + delay > deadline:
                    log.error("STORAGE: message %s of conversation %s not stored yet (%s); "
                              "retrying in the background until Redis is back",
                              message.id, message.conversation_id, type(exc).__name__)
                    self.live.retry_until_stored(write, message.id)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        confirm = functools.partial(self.store.confirm_replicated, message.conversation_id, required=True)
        while not totals.replicated:
            try:
                await confirm()
                totals.replicated = True
            except RedisError as exc:
                if time.monotonic() + delay > deadline:
                    log.error("STORAGE: message %s is on the primary but no replica acknowledged "
                              "it (%s); asking again in the background", message.id, type(exc).__name__)
                    self.live.retry_until_stored(confirm, message.id)
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        return totals


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _connect(provider: Provider, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
    """The provider's stream once the upstream accepted the request (its Opened event);
    closed again on any failure, a cancellation included."""
    stream = provider.stream(request)
    try:
        if type(await anext(stream)) is not Opened:
            raise ProviderError("adapter yielded before Opened", kind="protocol")
    except BaseException:
        await _close(stream)
        raise
    return stream


async def _close(stream: AsyncIterator[Any] | None) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except (ProviderError, asyncio.CancelledError, RuntimeError):
            pass
