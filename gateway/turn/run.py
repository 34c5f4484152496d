"""The stream of a turn: the provider's events through the during-stage policies to the
client, then the post stage, and the answer stored before `end` on every exit path (a
vanished client, a stop from any worker, a provider failure, or a bug of ours)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import anyio

from gateway.observability import Metrics
from gateway.policy import StreamGuard
from gateway.turn.events import ChatEvent, Delta, End, ErrorEvent
from gateway.turn.live import Live, Running
from gateway.turn.record import Recorder
from gateway.turn.turn import Turn
from gateway.turn.upstream import Upstream, close
from gateway.turn.violations import blocked_event
from providers.base import Finish, ProviderError, ProviderEvent, TextDelta, Usage

log = logging.getLogger("gateway.chat")


class _Answer:
    """What a turn has streamed so far, and how it ends."""

    __slots__ = (
        "turn",
        "guard",
        "parts",
        "usage",
        "finish",
        "reason",
        "error",
        "upstream_started",
        "upstream_first",
        "attempt",
    )

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.guard: StreamGuard | None = (
            turn.active.stream_guard() if turn.active is not None else None
        )
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.reason: str | None = None
        self.error: ErrorEvent | None = None
        self.upstream_started = time.perf_counter()
        self.upstream_first: float | None = None
        self.attempt = 0

    def take(self, event: ProviderEvent) -> str:
        """The text to send for one upstream event ("" for none)."""
        if type(event) is TextDelta:
            if self.upstream_first is None:
                self.upstream_first = time.perf_counter()
            if self.guard is None:
                return event.text
            step = self.guard.feed(event.text)  # during stage: hold only what may match
            self.turn.violations.extend(step.violations)
            if step.blocked is not None:
                self.reason, self.error = "policy_blocked", blocked_event(step.blocked)
            return step.emit
        if type(event) is Usage:
            self.usage = event
        elif type(event) is Finish:
            self.finish = event.reason
        return ""

    def finish_guard(self) -> str:
        """The stream ended, however (complete, failed, stopped, the client gone): what the
        stream guard held back is final, so it is decided now. Returns the held-back text
        that passes. A block found in it ends a complete answer as blocked; any other
        ending keeps its reason (the violation is recorded, the matched text withheld)."""
        if self.guard is None or self.reason == "policy_blocked":
            return ""
        step = self.guard.finish()  # a second call returns nothing: finished once
        self.turn.violations.extend(step.violations)
        if step.blocked is not None and self.reason in ("stop", "length"):
            self.reason, self.error = "policy_blocked", blocked_event(step.blocked)
        return step.emit

    def post_check(self) -> None:
        """The post stage sees the whole answer; a redaction changes what is stored."""
        active = self.turn.active
        if self.reason not in ("stop", "length") or active is None or not active.post:
            return
        decision = active.check_answer(
            "".join(self.parts), output_tokens=self.usage.output_tokens if self.usage else None
        )
        self.turn.violations.extend(decision.violations)
        if decision.blocked is not None:
            self.reason, self.error = "policy_blocked", blocked_event(decision.blocked)
        elif decision.changed:
            self.parts = [decision.text]  # the store keeps the redacted answer

    def sent(self) -> None:
        """A content frame went out: the first one times the gateway's own overhead."""
        turn = self.turn
        if turn.first_sent is None and self.upstream_first is not None:
            turn.sent_first(self.upstream_first - self.upstream_started)


class Runner:
    def __init__(
        self, upstream: Upstream, recorder: Recorder, live: Live, metrics: Metrics
    ) -> None:
        self.upstream = upstream
        self.recorder = recorder
        self.live = live
        self.metrics = metrics

    async def run(self, turn: Turn) -> AsyncIterator[ChatEvent]:
        await self.upstream.open(turn)
        handle = self.live.register(
            turn.message_id, turn.conversation.id if turn.conversation else None
        )
        self.metrics.active_streams.inc()
        answer = _Answer(turn)
        yield turn.start_event()
        try:
            while answer.reason is None:
                try:
                    event = await self._next(turn, handle)
                except StopAsyncIteration:
                    # the body ended (after Finish, read to its end so the upstream connection
                    # goes back to the pool), or a stop from any worker or the shutdown
                    answer.reason = handle.stop_reason or answer.finish or "stop"
                    break
                except ProviderError as exc:
                    if not answer.parts:
                        answer.attempt += 1
                        if await self.upstream.reopen(turn, exc, answer.attempt):
                            continue
                    answer.reason = "error"
                    answer.error = ErrorEvent("provider_error", exc.message)
                    self.metrics.provider_errors.labels(turn.model.id, exc.kind).inc()
                    break
                text = answer.take(event)
                if text:
                    yield self._keep(answer, handle, text)
                    answer.sent()
            tail = answer.finish_guard()
            if tail:
                yield self._keep(answer, handle, tail)
                answer.sent()
            answer.post_check()
        except Exception:
            # a bug of ours must still end the stream by the contract and keep the partial text
            log.exception("turn %s failed", turn.message_id)
            answer.reason = "error"
            answer.error = ErrorEvent("internal_error", "the gateway failed while streaming")
        finally:
            # shielded: a client that vanished cancels us, and the answer must still be kept
            with anyio.CancelScope(shield=True):
                late = self._late_tail(answer, handle)
                end = await self._record(turn, handle, answer)
        if late is not None:  # a bug of ours cut the stream before the tail was decided
            yield late
        if answer.error is not None:
            yield answer.error
        yield end

    def _late_tail(self, answer: _Answer, handle: Running) -> Delta | None:
        """The held-back text of a stream cut before its tail was decided (the client left,
        or a bug of ours): kept in the answer and its resume log."""
        try:
            tail = answer.finish_guard()
        except Exception:
            log.exception("turn %s: the stream guard failed at the end", answer.turn.message_id)
            return None
        return self._keep(answer, handle, tail) if tail else None

    async def _record(self, turn: Turn, handle: Running, answer: _Answer) -> End:
        await close(turn.stream)
        end = await self.recorder.record(
            turn,
            handle,
            "".join(answer.parts),
            answer.usage,
            answer.reason or "cancelled",
            answer.error,
        )
        self.live.unregister(handle)
        self.metrics.active_streams.dec()
        self.recorder.observe(turn, end)
        return end

    def _keep(self, answer: _Answer, handle: Running, text: str) -> Delta:
        """Text on its way to the client: part of the answer and of its resume log."""
        answer.parts.append(text)
        if handle.log is not None:
            self.live.writer.append(handle.log, text)
        return Delta(text)

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
