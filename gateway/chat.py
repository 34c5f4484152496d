"""The turn: load context, pre-policy, provider stream, during/post policy, record.

`ChatService.prepare()` does everything that can still fail with an HTTP error (lookup,
access, pre-policy, storing the user's message); `run()` then yields the normalized events
that sse.py turns into frames. The assistant's message is stored before `End` is yielded,
and on every exit path, a vanished client included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway.auth import Principal
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.observability import Metrics, stream_log
from gateway.settings import ModelConfig, Settings
from gateway.store import ChatSession, Conversation, Message, Store, Totals, new_id, now_ms
from providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    Provider,
    ProviderError,
    TextDelta,
    Usage,
)
from providers.demo import estimate_tokens

log = logging.getLogger("gateway.chat")

HISTORY_LIMIT = 1000  # messages loaded per turn before trimming to the context window
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators per message, as chat formats count them


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
    totals: Totals | None
    usage_estimated: bool = False
    policy: list[dict[str, Any]] = field(default_factory=list)


ChatEvent = Start | Delta | ErrorEvent | End


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
    first_sent: float | None = None
    overhead: float = 0.0


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


class ChatService:
    def __init__(
        self, settings: Settings, store: Store, providers: dict[str, Provider], metrics: Metrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.metrics = metrics

    async def visible_conversation(self, principal: Principal, cid: str) -> Conversation:
        conv = await self.store.get_conversation(cid)
        if conv is None or not principal.can_see(conv):
            raise NotFound("conversation not found", code="conversation_not_found")
        return conv

    async def prepare(
        self, principal: Principal, *, chat_session_id: str, prompt: str, org_id: str | None = None,
        started: float | None = None, request_id: str | None = None,
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
        messages = build_context(
            history, prompt,
            context_window=model.context_window, max_output=model.max_output_tokens,
        )
        user_message = Message(
            id=new_id(), conversation_id=conv.id, chat_session_id=session.id, role="user",
            content=prompt, status="complete", created_at=now_ms(), model_id=model.id,
            user_id=principal.user_id,
        )
        # stored before the provider is called: a crash later still leaves the question
        await self.store.append_message(user_message)
        request = ChatRequest(
            model=model.upstream_model, messages=messages, max_output_tokens=model.max_output_tokens
        )
        return Turn(
            principal=principal, org_id=conv.org_id, model=model, provider=self.providers[model.id],
            request=request, conversation=conv, session_id=session.id, user_message=user_message,
            started=started or time.perf_counter(), request_id=request_id,
        )

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
        conv = None
        user_message = None
        if conversation_id is not None:
            conv = await self.visible_conversation(principal, conversation_id)
            if not principal.can_prompt(conv):
                raise Forbidden("only the conversation's creator may prompt it")
            user_message = Message(
                id=new_id(), conversation_id=conv.id, role="user", content=messages[-1].content,
                status="complete", created_at=now_ms(), model_id=model.id,
                user_id=principal.user_id,
            )
            await self.store.append_message(user_message)
        org_id = conv.org_id if conv else (principal.org_id or "_platform")
        limit = min(filter(None, (max_output_tokens, model.max_output_tokens)), default=None)
        request = ChatRequest(
            model=model.upstream_model, messages=messages, max_output_tokens=limit,
            temperature=temperature,
        )
        return Turn(
            principal=principal, org_id=org_id, model=model, provider=self.providers[model.id],
            request=request, conversation=conv, user_message=user_message,
            started=started or time.perf_counter(), request_id=request_id,
        )

    async def run(self, turn: Turn) -> AsyncIterator[ChatEvent]:
        yield Start(
            message_id=turn.message_id,
            conversation_id=turn.conversation.id if turn.conversation else None,
            chat_session_id=turn.session_id, model=turn.model.id,
            user_message_id=turn.user_message.id if turn.user_message else None,
        )
        parts: list[str] = []
        usage: Usage | None = None
        reason = "cancelled"  # what a vanished client leaves behind
        error: ErrorEvent | None = None
        self.metrics.active_streams.inc()
        upstream_started = time.perf_counter()
        stream = turn.provider.stream(turn.request)
        try:
            async for event in stream:
                if type(event) is TextDelta:
                    parts.append(event.text)
                    if len(parts) == 1:
                        upstream_first = time.perf_counter()
                        yield Delta(event.text)
                        # resumed once the first frame went out: the gateway's own share
                        turn.first_sent = time.perf_counter()
                        turn.overhead = (turn.first_sent - turn.started) - (upstream_first - upstream_started)
                        continue
                    yield Delta(event.text)
                elif type(event) is Usage:
                    usage = event
                elif type(event) is Finish:
                    reason = event.reason
            if reason == "cancelled":  # the adapter ended without a Finish
                reason = "stop"
        except ProviderError as exc:
            reason = "error"
            error = ErrorEvent("provider_error", exc.message)
            self.metrics.provider_errors.labels(turn.model.id, exc.kind).inc()
        except Exception:
            # a bug of ours must still end the stream by the contract and keep the partial text
            log.exception("turn %s failed", turn.message_id)
            reason = "error"
            error = ErrorEvent("internal_error", "the gateway failed while streaming")
        finally:
            # shielded: a client that vanished cancels us, and the answer must still be kept
            with anyio.CancelScope(shield=True):
                await _close(stream)
                end = await self._record(turn, "".join(parts), usage, reason, error)
                self.metrics.active_streams.dec()
                self._observe(turn, end)
        if error is not None:
            yield error
        yield end

    def _observe(self, turn: Turn, end: End) -> None:
        m, model = self.metrics, turn.model.id
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

    async def _record(
        self, turn: Turn, text: str, usage: Usage | None, reason: str, error: ErrorEvent | None
    ) -> End:
        estimated = usage is None
        if usage is None:
            usage = Usage(
                sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in turn.request.messages),
                estimate_tokens(text),
            )
        status = {"stop": "complete", "length": "complete"}.get(reason, reason)
        message = Message(
            id=turn.message_id, conversation_id=turn.conversation.id if turn.conversation else "",
            chat_session_id=turn.session_id, role="assistant", content=text, status=status,
            created_at=now_ms(), model_id=turn.model.id, user_id=turn.principal.user_id,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            finish_reason=reason, usage_estimated=estimated,
            error={"code": error.code, "message": error.message} if error else None,
        )
        if turn.conversation is None:
            await self.store.record_usage(message, turn.org_id, turn.principal.key_id)
            totals = None
        else:
            totals = await self.store.finish_turn(message, turn.org_id, turn.principal.key_id)
        return End(
            message_id=turn.message_id, finish_reason=reason, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, totals=totals, usage_estimated=estimated,
        )


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except (ProviderError, asyncio.CancelledError, RuntimeError):
            pass
