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
from gateway.policy import ActivePolicies, StreamGuard, Violation
from gateway.turn import resume_log
from gateway.turn.channels import Channels
from gateway.turn.events import ChatEvent, Choice, Delta, End, ErrorEvent, ToolCallDelta
from gateway.turn.live import Live, Running
from gateway.turn.record import Recorder
from gateway.turn.turn import Turn
from gateway.turn.upstream import Upstream, close
from gateway.turn.violations import blocked_event
from providers.base import (
    ANSWERED_REASONS,
    Finish,
    ProviderError,
    ProviderEvent,
    TextDelta,
    TextRun,
    Usage,
)

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
        "plain",
        "channels",
        "finishes",
        "out",
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
        # True while the answer is choice 0's text alone: the hot path. Anything else (a
        # tool call, reasoning, ...) hands the rest of the answer to Channels. Log
        # probabilities name the text's tokens, so they take that path from the start.
        self.plain = not turn.request.logprobs
        self.channels: Channels | None = None
        self.finishes: dict[int, Finish] = {}
        self.out: list[ChatEvent] = []  # events for the client from the last take()

    def take(self, event: ProviderEvent) -> str:
        """The text to send for one upstream event ("" for none; other events to send are
        left in `out`)."""
        if type(event) is TextDelta and self.plain and not event.choice:
            if self.upstream_first is None:
                self.upstream_first = time.perf_counter()
            if self.guard is None:
                return event.text
            return self._guarded(self.guard, event.text)
        if type(event) is Usage:
            self.usage = event
        elif type(event) is Finish:
            self.finishes[event.choice] = event
            if not event.choice:
                self.finish = event.reason
        else:
            if self.upstream_first is None:
                self.upstream_first = time.perf_counter()
            self.out = self._channels().take(event)
            self._check_blocked()
        return ""

    def take_run(self, texts: list[str]) -> list[str]:
        """take() for a TextRun on the hot path: the texts to send, each its own frame. The
        guard releases the run in one pass when it can, else each text takes its step."""
        if self.upstream_first is None:
            self.upstream_first = time.perf_counter()
        guard = self.guard
        if guard is None or guard.release_all(texts):
            return texts
        out = []
        for text in texts:
            emit = self._guarded(guard, text)
            if emit:
                out.append(emit)
            if self.reason is not None:
                break  # blocked: nothing after the match is read
        return out

    def _guarded(self, guard: StreamGuard, text: str) -> str:
        step = guard.step(text)  # during stage: hold only what may match
        if isinstance(step, str):
            return step  # released whole, as it came: most deltas
        self.turn.violations.extend(step.violations)
        if step.blocked is not None:
            self.reason, self.error = "policy_blocked", blocked_event(step.blocked)
        return step.emit

    def restart(self) -> None:
        """Another upstream answers from the start: what the failed one said, none of which
        reached the client, is forgotten (the policies' findings on it stay)."""
        turn = self.turn
        self.guard = turn.active.stream_guard() if turn.active is not None else None
        self.plain = not turn.request.logprobs
        self.channels = None
        self.usage, self.finish, self.finishes = None, None, {}
        self.upstream_started, self.upstream_first = time.perf_counter(), None

    def _channels(self) -> Channels:
        if self.channels is None:
            self.plain = False
            turn = self.turn
            self.channels = Channels(turn.active, turn.violations, self.guard)
        return self.channels

    def _check_blocked(self) -> None:
        channels = self.channels
        if channels is not None and channels.blocked is not None and self.reason is None:
            self.reason, self.error = "policy_blocked", blocked_event(channels.blocked)

    def finish_guard(self) -> list[ChatEvent]:
        """The stream ended, however (complete, failed, stopped, the client gone): what the
        stream guards held back is final, so it is decided now. Returns the held-back parts
        that pass. A block found in them ends an answered turn as blocked; any other ending
        keeps its reason (the violation is recorded, the matched text withheld). A second
        call returns nothing: every guard is finished once."""
        if self.reason == "policy_blocked":
            return []
        if self.channels is not None:
            events = self.channels.finish()
            blocked = self.channels.blocked
        elif self.guard is not None:
            step = self.guard.finish()
            self.turn.violations.extend(step.violations)
            events, blocked = ([Delta(step.emit)] if step.emit else []), step.blocked
        else:
            return []
        if blocked is not None and self.reason in ANSWERED_REASONS:
            self.reason, self.error = "policy_blocked", blocked_event(blocked)
        return events

    def post_check(self) -> None:
        """The post stage sees the whole answer (its text, each tool call's arguments, the
        reasoning and the refusal); a redaction changes what is stored."""
        active = self.turn.active
        if self.reason not in ANSWERED_REASONS or active is None or not active.post:
            return
        decision = active.check_answer(
            "".join(self.parts), output_tokens=self.usage.output_tokens if self.usage else None
        )
        self.turn.violations.extend(decision.violations)
        if decision.blocked is not None:
            self.reason, self.error = "policy_blocked", blocked_event(decision.blocked)
            return
        if decision.changed:
            self.parts = [decision.text]  # the store keeps the redacted answer
        if self.channels is not None:
            blocked = post_check_choices(active, self.channels.choices, self.turn.violations)
            if blocked is not None:
                self.reason, self.error = "policy_blocked", blocked_event(blocked)

    def sent(self) -> None:
        """A frame went out: the first one times the gateway's own overhead."""
        turn = self.turn
        if turn.first_sent is None and self.upstream_first is not None:
            turn.sent_first(self.upstream_first - self.upstream_started)


def post_check_choices(
    active: ActivePolicies, choices: dict[int, Choice], violations: list[Violation]
) -> Violation | None:
    """The post stage on what an answer says beside choice 0's text; redactions are kept
    in `choices`. Returns the first block."""

    def check(text: str) -> str | None:
        """The text as it may be stored, or None when a policy blocks it."""
        if not text:
            return text
        # max_output_tokens is the whole answer's: checked once, with choice 0's text
        decision = active.check_answer(text, output_tokens=0)
        violations.extend(decision.violations)
        return None if decision.blocked is not None else decision.text

    for number, choice in choices.items():
        texts = [choice.refusal] + [call.arguments for call in choice.tool_calls]
        texts += [block.get("text", "") for block in choice.reasoning]
        if number:
            texts.append(choice.text)
        checked = [check(t) for t in texts]
        if any(c is None for c in checked):
            return next(v for v in reversed(violations) if v.action == "block")
        choice.refusal = checked[0] or ""
        for call, arguments in zip(choice.tool_calls, checked[1:], strict=False):
            call.arguments = arguments or ""
        rest = checked[1 + len(choice.tool_calls) :]
        for block, text in zip(choice.reasoning, rest, strict=False):
            if "text" in block:
                block["text"] = text or ""
        if number:
            choice.text = checked[-1] or ""
    return None


class Runner:
    def __init__(
        self, upstream: Upstream, recorder: Recorder, live: Live, metrics: Metrics
    ) -> None:
        self.upstream = upstream
        self.recorder = recorder
        self.live = live
        self.metrics = metrics

    async def run(self, turn: Turn) -> AsyncIterator[ChatEvent]:  # noqa: C901  # long: the hot loop, whole: its upstream wait inline saves a coroutine per token
        await self.upstream.open(turn)
        handle = self._register(turn)
        answer = _Answer(turn)
        loop = asyncio.get_running_loop()  # a generator's loop never changes
        yield turn.start_event()
        try:
            while answer.reason is None:
                try:
                    # the next upstream event (its wait inline: a coroutine less per token);
                    # a stop from any worker cancels exactly this wait
                    if handle.stop_reason is not None:
                        raise StopAsyncIteration
                    handle.waiting = asyncio.current_task(loop)
                    try:
                        event = await anext(turn.stream)  # type: ignore[arg-type]  # opened
                    except asyncio.CancelledError:
                        if not self._stopped(handle):
                            raise
                        raise StopAsyncIteration from None
                    finally:
                        handle.waiting = None
                except StopAsyncIteration:
                    # the body ended (after Finish, read to its end so the upstream connection
                    # goes back to the pool), or a stop from any worker or the shutdown
                    answer.reason = handle.stop_reason or answer.finish or "stop"
                    break
                except ProviderError as exc:
                    if await self._fell_back(turn, answer, exc):
                        continue
                    break
                if type(event) is TextRun and answer.plain:
                    texts = answer.take_run(event.texts)
                    if texts:
                        yield self._keep_run(answer, handle, texts)
                        answer.sent()
                    continue
                text = answer.take(event)
                if text:
                    yield self._keep(answer, handle, text)
                    answer.sent()
                elif answer.out:
                    for ev in answer.out:
                        yield self._keep_event(answer, handle, ev)
                    answer.out = []
                    answer.sent()
            for ev in answer.finish_guard():
                yield self._keep_event(answer, handle, ev)
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
        for ev in late:  # the stream was cut before its tail was decided
            yield ev
        if answer.error is not None:
            yield answer.error
        yield end

    def _register(self, turn: Turn) -> Running:
        """The turn as running on this worker (a stop from any worker finds it)."""
        conversation_id = turn.conversation.id if turn.conversation else None
        handle = self.live.register(turn.message_id, conversation_id)
        self.metrics.active_streams.inc()
        return handle

    async def _fell_back(self, turn: Turn, answer: _Answer, exc: ProviderError) -> bool:
        """An upstream failure: True when the next fallback answers instead (nothing reached
        the client yet), else the answer ends with the error."""
        if turn.first_sent is None and not answer.parts:
            if await self.upstream.reopen(turn, exc):
                answer.restart()
                return True
        answer.reason = "error"
        answer.error = ErrorEvent("provider_error", exc.message)
        self.metrics.provider_errors.labels(turn.model.id, exc.kind).inc()
        return False

    def _late_tail(self, answer: _Answer, handle: Running) -> list[ChatEvent]:
        """The held-back parts of a stream cut before its tail was decided (the client left,
        or a bug of ours): kept in the answer and its resume log."""
        try:
            tail = answer.finish_guard()
        except Exception:
            log.exception("turn %s: the stream guard failed at the end", answer.turn.message_id)
            return []
        return [self._keep_event(answer, handle, ev) for ev in tail]

    async def _record(self, turn: Turn, handle: Running, answer: _Answer) -> End:
        await close(turn.stream)
        end = await self.recorder.record(
            turn,
            handle,
            "".join(answer.parts),
            answer.usage,
            answer.reason or "cancelled",
            answer.error,
            choices=answer.channels.choices if answer.channels is not None else None,
            finishes=answer.finishes,
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

    def _keep_run(self, answer: _Answer, handle: Running, texts: list[str]) -> Delta | TextRun:
        """_keep() for the texts of a TextRun, in one go."""
        answer.parts.extend(texts)
        if handle.log is not None:
            self.live.writer.extend(handle.log, texts)
        return Delta(texts[0]) if len(texts) == 1 else TextRun(texts)

    def _keep_event(self, answer: _Answer, handle: Running, ev: ChatEvent) -> ChatEvent:
        """Any other event on its way to the client: choice 0's text and tool calls are
        part of the resume log (the native stream's content and tool_call events)."""
        if type(ev) is Delta and not ev.choice:
            return self._keep(answer, handle, ev.text)
        if type(ev) is ToolCallDelta and not ev.choice and handle.log is not None:
            self.live.writer.append(handle.log, resume_log.tool_call_item(ev))
        return ev

    @staticmethod
    def _stopped(handle: Running) -> bool:
        """Whether the cancellation of a wait for the upstream was our own stop (then it is
        taken back: the stream ends normally), not the client leaving."""
        task = asyncio.current_task()
        if handle.stop_reason is not None and task is not None and task.cancelling():
            task.uncancel()
            return True
        return False
