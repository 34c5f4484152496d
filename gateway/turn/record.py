"""The end of a turn: the assistant's message, its usage, violations and resume-log tail in
one write, made durable even when Redis goes away mid-stream."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from gateway.access.quotas import RateLimits, key_budgets
from gateway.backoff import Backoff
from gateway.governance import Governance, fired
from gateway.models.prices import prices_of
from gateway.observability import Metrics, stream_log
from gateway.settings import Settings
from gateway.storage.records import Message, Totals, now_ms
from gateway.storage.store import Store
from gateway.storage.usage import Tally
from gateway.turn import resume_log
from gateway.turn.context import estimated_input_tokens
from gateway.turn.events import Choice, ChoiceEnd, End, ErrorEvent
from gateway.turn.live import Live, Running
from gateway.turn.turn import Turn
from gateway.turn.violations import violation_records
from providers.base import ANSWERED_REASONS, Finish, Usage, estimate_tokens

log = logging.getLogger("gateway.chat")

FINAL_WRITE = Backoff(first=0.05, factor=2.0, cap=1.0)  # within final_write_timeout
STATUS = {reason: "complete" for reason in ANSWERED_REASONS} | {"policy_blocked": "blocked"}


class Recorder:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        live: Live,
        governance: Governance,
        limits: RateLimits,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.live = live
        self.governance = governance
        self.limits = limits
        self.metrics = metrics

    async def record(
        self,
        turn: Turn,
        handle: Running | None,
        text: str,
        usage: Usage | None,
        reason: str,
        error: ErrorEvent | None,
        *,
        choices: dict[int, Choice] | None = None,
        finishes: dict[int, Finish] | None = None,
    ) -> End:
        """choices: what the answer said beside choice 0's text (tool calls, reasoning, a
        refusal, the other choices); finishes: the provider's Finish of each choice."""
        estimated = usage is None
        if usage is None:
            usage = Usage(estimated_input_tokens(turn.request.messages), estimate_tokens(text))
        end = end_event(turn, usage, reason, finishes or {}, estimated=estimated)
        message = answer_message(turn, text, end, error, choices or {})
        records = violation_records(self.governance, turn)
        principal, conv = turn.principal, turn.conversation
        token_windows = self.limits.token_windows(
            turn.org_id, principal.user_id, key_budgets(principal)
        )
        tally = Tally.of(turn.org_id, principal.key_id, conv)
        if turn.conversation is None:
            count = functools.partial(
                self.store.usage.record,
                message,
                tally,
                token_windows=token_windows,
                violations=records,
                reservation=turn.reservation,
            )
            end.stored = await self._counted(count, message)
            return end
        write = functools.partial(
            self.store.turns.end,
            message,
            tally,
            lock_value=turn.lock_value,
            log=True,
            log_entries=await self._log_tail(handle, error),
            end_data=resume_log.end_data(end),
            log_ttl_s=self.settings.resume_ttl,
            token_windows=token_windows,
            violations=records,
            reservation=turn.reservation,
        )
        end.totals = await self._durably(write, message)
        end.stored = end.totals is not None
        return end

    async def _log_tail(
        self, handle: Running | None, error: ErrorEvent | None
    ) -> list[resume_log.LogEntry]:
        """The resume log's entries still to write before its end: the last deltas, the error."""
        entries: list[resume_log.LogEntry] = []
        if handle is not None and handle.log is not None:
            await self.live.writer.settle()  # a batch in flight lands before this turn's last one
            batch = self.live.writer.take(handle.log)
            if batch is not None:
                entries.append(batch)
        if error is not None:
            entries.append(resume_log.error_entry(error))
        return entries

    async def _counted(self, count: Callable[[], Awaitable[None]], message: Message) -> bool:
        """A direct turn's usage and violations (one round trip, counted once however often it
        is retried): retried like an answer's write while Redis is away, so the client that
        got its answer loses nothing; False when the write was left to the background."""
        deadline = time.monotonic() + self.settings.final_write_timeout
        try:
            await FINAL_WRITE.run(count, retry_on=(RedisError,), deadline=deadline)
        except RedisError as exc:
            log.error(
                "STORAGE: usage of message %s not counted yet (%s); retrying in the background",
                message.id,
                type(exc).__name__,
            )
            self.live.retry_until_stored(count, message.id)
            return False
        return True

    async def _durably(
        self, write: Callable[[], Awaitable[Totals]], message: Message
    ) -> Totals | None:
        """Redis may vanish mid-stream: retry the final write for final_write_timeout;
        then hand it to a background retry that lasts until Redis is back (the client's
        `end` says stored=false, so nothing it was told is stored can be lost).
        A write that the replicas did not acknowledge in time (see Durability) is confirmed
        the same way, without writing it twice."""
        deadline = time.monotonic() + self.settings.final_write_timeout
        try:
            totals = await FINAL_WRITE.run(write, retry_on=(RedisError,), deadline=deadline)
        except RedisError as exc:
            log.error(
                "STORAGE: message %s of conversation %s not stored yet (%s); "
                "retrying in the background until Redis is back",
                message.id,
                message.conversation_id,
                type(exc).__name__,
            )
            self.live.retry_until_stored(write, message.id)
            return None
        if not totals.replicated:
            confirm = functools.partial(
                self.store.replication.confirm, message.conversation_id, required=True
            )
            try:
                await FINAL_WRITE.run(confirm, retry_on=(RedisError,), deadline=deadline)
            except RedisError as exc:
                log.error(
                    "STORAGE: message %s is on the primary but no replica acknowledged "
                    "it (%s); asking again in the background",
                    message.id,
                    type(exc).__name__,
                )
                self.live.retry_until_stored(confirm, message.id)
                return None
            totals.replicated = True
        return totals

    def observe(self, turn: Turn, end: End) -> None:
        m, model = self.metrics, (turn.answering or turn.model).id
        m.tokens.labels(model, "in").inc(end.input_tokens)
        m.tokens.labels(model, "out").inc(end.output_tokens)
        m.streams.labels(model, end.finish_reason).inc()
        if turn.first_sent is not None:
            m.ttft.labels(model).observe(turn.first_sent - turn.started)
            m.overhead.labels(model).observe(max(turn.overhead, 0.0))
        if stream_log.isEnabledFor(logging.INFO):
            p = turn.principal
            ms = (
                None
                if turn.first_sent is None
                else round((turn.first_sent - turn.started) * 1000, 3)
            )
            stream_log.info(
                "stream",
                extra={
                    "fields": {
                        "message_id": end.message_id,
                        "conversation_id": turn.conversation.id if turn.conversation else None,
                        "user": p.user_id,
                        "org": turn.org_id,
                        "model": model,
                        "key_id": p.key_id,
                        "finish_reason": end.finish_reason,
                        "input_tokens": end.input_tokens,
                        "output_tokens": end.output_tokens,
                        "duration_ms": round((time.perf_counter() - turn.started) * 1000, 3),
                        "ttft_ms": ms,
                        "overhead_ms": None
                        if turn.first_sent is None
                        else round(turn.overhead * 1000, 3),
                        "request_id": turn.request_id,
                    }
                },
            )


def end_event(
    turn: Turn, usage: Usage, reason: str, finishes: dict[int, Finish], *, estimated: bool
) -> End:
    """The turn's End, before the conversation's totals are known; priced now at the
    answering entry's prices (a later price change rewrites nothing)."""
    first = finishes.get(0)
    return End(
        message_id=turn.message_id,
        finish_reason=reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        usage_estimated=estimated,
        policy=fired(turn.violations),
        cost_nusd=prices_of(turn.answering or turn.model).cost_nusd(
            usage.input_tokens, usage.output_tokens
        ),
        native=first.native if first is not None and reason == first.reason else None,
        stop_sequence=first.stop_sequence if first is not None else None,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_input_tokens=usage.cache_write_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        choices=tuple(
            ChoiceEnd(n, f.reason, f.native, f.stop_sequence)
            for n, f in sorted(finishes.items())
            if n
        ),
    )


def answer_message(
    turn: Turn, text: str, end: End, error: ErrorEvent | None, choices: dict[int, Choice]
) -> Message:
    """The assistant's message as it is stored, with the cost its End was priced at."""
    reason = end.finish_reason
    first = choices.get(0) or Choice()
    answering = turn.answering or turn.model
    return Message(
        id=turn.message_id,
        conversation_id=turn.conversation.id if turn.conversation else "",
        chat_session_id=turn.session_id,
        role="assistant",
        content=text,
        status=STATUS.get(reason, reason),
        created_at=now_ms(),
        model_id=answering.id,
        user_id=turn.principal.user_id,
        input_tokens=end.input_tokens,
        output_tokens=end.output_tokens,
        finish_reason=reason,
        usage_estimated=end.usage_estimated,
        cost_nusd=end.cost_nusd,
        error={"code": error.code, "message": error.message} if error else None,
        policy=[{"id": v.policy_id, "action": v.action, "stage": v.stage} for v in turn.violations],
        tool_calls=[
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in first.tool_calls
        ],
        reasoning=first.reasoning,
        refusal=first.refusal or None,
        alternatives=[_alternative(n, c, end) for n, c in sorted(choices.items()) if n],
        native_finish=end.native,
        stop_sequence=end.stop_sequence,
        cached_input_tokens=end.cached_input_tokens,
        cache_write_input_tokens=end.cache_write_input_tokens,
        reasoning_tokens=end.reasoning_tokens,
    )


def _alternative(number: int, choice: Choice, end: End) -> dict[str, Any]:
    """Choice `number` of an n > 1 answer, as the message keeps it."""
    finish = next((c.finish_reason for c in end.choices if c.choice == number), None)
    alternative: dict[str, Any] = {"choice": number, "content": choice.text}
    if choice.tool_calls:
        alternative["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in choice.tool_calls
        ]
    if choice.refusal:
        alternative["refusal"] = choice.refusal
    if finish is not None:
        alternative["finish_reason"] = finish
    return alternative
