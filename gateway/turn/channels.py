"""What an answer says beyond plain text: each tool call's arguments, reasoning, a refusal,
the text of the other choices (n > 1), and log probabilities.

Each of these streams through a StreamGuard of its own (one per tool call's arguments), so
a secret is blocked or redacted however the provider fragments it, exactly as in text.
A channel's guard is finished when the next channel of its choice begins (providers stream
a choice's blocks one after another: text, then each call) or when the answer ends, so its
held-back tail comes out in its place. Log probabilities name the very tokens of the text,
so they are released only once the guard has released the text they describe, without the
tokens that a redaction or a block covered.

Only a turn whose answer is more than choice 0's text gets here (Answer.take keeps that hot
path apart), so plain streaming pays nothing for any of it.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from gateway.policy import ActivePolicies, GuardStep, StreamGuard, Violation
from gateway.turn.events import (
    ChatEvent,
    Choice,
    Delta,
    Logprobs,
    ReasoningDelta,
    ReasoningEnd,
    RefusalDelta,
    ToolCallDelta,
    assemble,
)
from providers import base

TEXT, REFUSAL, REASONING, TOOL = "text", "refusal", "reasoning", "tool"
Key = tuple[str, int, int]  # (kind, choice, tool call index)


@dataclass(slots=True)
class _Pending:
    """Log probabilities waiting for their text: it ends at `end` in the channel's raw text."""

    end: int
    event: base.LogprobsDelta


@dataclass(slots=True)
class Channel:
    key: Key
    guard: StreamGuard | None
    call_id: str | None = None
    name: str | None = None
    opened: bool = False  # a tool call: its first piece (id, name) went out
    received: int = 0  # raw characters fed
    finished: bool = False
    # log probabilities not yet released, and the raw spans a redaction or block covered
    pending: deque[_Pending] = field(default_factory=deque)
    covered: list[tuple[int, int]] = field(default_factory=list)

    @property
    def released(self) -> int:
        """Raw characters the guard has let go of (sent, or replaced by a redaction)."""
        return self.received - (self.guard.held if self.guard is not None else 0)


class Channels:
    """The structured part of one answer. take() an upstream event, get the events to send;
    finish() once the answer is complete. `choices` holds what was sent, per choice;
    `violations` receives every guard's violations, `blocked` the first block."""

    def __init__(
        self,
        active: ActivePolicies | None,
        violations: list[Violation],
        text_guard: StreamGuard | None,
    ) -> None:
        self.active = active
        self.violations = violations
        self.blocked: Violation | None = None
        self.channels: dict[Key, Channel] = {}
        self.current: dict[int, Channel] = {}  # per choice: the channel streaming now
        self.choices: dict[int, Choice] = {}
        # choice 0's text continues through the guard that has seen its beginning
        self.channels[(TEXT, 0, 0)] = Channel((TEXT, 0, 0), text_guard)
        self.current[0] = self.channels[(TEXT, 0, 0)]

    def _guard(self) -> StreamGuard | None:
        return self.active.stream_guard() if self.active is not None else None

    def take(self, event: base.ProviderEvent) -> list[ChatEvent]:  # noqa: C901 - one branch per event kind
        if self.blocked is not None:
            return []
        kind = type(event)
        out: list[ChatEvent] = []
        if kind is base.TextDelta:
            self._feed(out, (TEXT, event.choice, 0), event.text)  # type: ignore[union-attr]
        elif kind is base.TextRun:
            for text in event.texts:  # type: ignore[union-attr]
                self._feed(out, (TEXT, 0, 0), text)
                if self.blocked is not None:
                    break  # nothing after a block is read
        elif kind is base.ToolCallDelta:
            call: base.ToolCallDelta = event  # type: ignore[assignment]
            channel = self._enter(out, (TOOL, call.choice, call.index))
            if call.id and channel.call_id is None:
                channel.call_id = call.id
            if call.name and channel.name is None:
                channel.name = call.name
            self._feed(out, channel.key, call.arguments)
        elif kind is base.ReasoningDelta:
            self._feed(out, (REASONING, event.choice, 0), event.text)  # type: ignore[union-attr]
        elif kind is base.RefusalDelta:
            self._feed(out, (REFUSAL, event.choice, 0), event.text)  # type: ignore[union-attr]
        elif kind is base.ReasoningSignature:
            signed: base.ReasoningSignature = event  # type: ignore[assignment]
            reasoning = self.channels.get((REASONING, signed.choice, 0))
            if reasoning is not None:
                self._close(out, reasoning)
                del self.channels[reasoning.key]  # the next thinking block is a new one
            self._send(out, ReasoningEnd(signature=signed.signature, choice=signed.choice))
        elif kind is base.RedactedReasoning:
            redacted: base.RedactedReasoning = event  # type: ignore[assignment]
            self._switch(out, redacted.choice, None)
            self._send(out, ReasoningEnd(redacted=redacted.data, choice=redacted.choice))
        elif kind is base.LogprobsDelta:
            lp: base.LogprobsDelta = event  # type: ignore[assignment]
            key = (REFUSAL if lp.refusal else TEXT, lp.choice, 0)
            channel = self.channels.get(key) or self._open(key)
            channel.pending.append(_Pending(channel.received, lp))
            self._release_logprobs(out, channel)
        return out

    def finish(self) -> list[ChatEvent]:
        """The answer is complete: every channel's held-back tail is decided now."""
        out: list[ChatEvent] = []
        for channel in list(self.channels.values()):
            if self.blocked is not None:
                break
            self._close(out, channel)
        return out

    # -- channels ------------------------------------------------------------------------

    def _open(self, key: Key) -> Channel:
        guard = self._guard()
        channel = self.channels[key] = Channel(key, guard)
        return channel

    def _enter(self, out: list[ChatEvent], key: Key) -> Channel:
        """The channel `key`, made the current one of its choice (the previous one ends)."""
        channel = self.channels.get(key)
        if channel is None or channel.finished:
            channel = self._open(key)
        self._switch(out, key[1], channel)
        return channel

    def _switch(self, out: list[ChatEvent], choice: int, channel: Channel | None) -> None:
        current = self.current.get(choice)
        if current is not None and current is not channel:
            self._close(out, current)
        if channel is not None:
            self.current[choice] = channel
        else:
            self.current.pop(choice, None)

    def _feed(self, out: list[ChatEvent], key: Key, text: str) -> None:
        channel = self._enter(out, key)
        channel.received += len(text)
        step = channel.guard.feed(text) if channel.guard is not None else GuardStep(text)
        self._emit(out, channel, step)
        self._release_logprobs(out, channel)

    def _close(self, out: list[ChatEvent], channel: Channel) -> None:
        if channel.finished:
            return
        channel.finished = True
        if channel.guard is not None:
            self._emit(out, channel, channel.guard.finish())
        elif channel.key[0] == TOOL:
            self._emit(out, channel, GuardStep(""))
        if self.blocked is None:
            self._release_logprobs(out, channel, final=True)
        if self.current.get(channel.key[1]) is channel:
            del self.current[channel.key[1]]

    def _emit(self, out: list[ChatEvent], channel: Channel, step: GuardStep) -> None:
        if step.violations:
            self.violations.extend(step.violations)
            channel.covered.extend(
                (v.start, v.end)
                for v in step.violations
                if v.action in ("redact", "block") and v.start is not None and v.end is not None
            )
        kind, choice, index = channel.key
        text = step.emit
        if kind == TOOL:
            if not channel.opened:
                channel.opened = True
                call_id = channel.call_id or "call_" + uuid.uuid4().hex[:24]
                channel.call_id = call_id
                self._send(out, ToolCallDelta(index, call_id, channel.name or "", text, choice))
            elif text:
                self._send(out, ToolCallDelta(index, arguments=text, choice=choice))
        elif text:
            if kind == TEXT:
                self._send(out, Delta(text, choice))
            elif kind == REASONING:
                self._send(out, ReasoningDelta(text, choice))
            else:
                self._send(out, RefusalDelta(text, choice))
        if step.blocked is not None and self.blocked is None:
            self.blocked = step.blocked

    def _send(self, out: list[ChatEvent], event: ChatEvent) -> None:
        out.append(event)
        choice = event.choice  # type: ignore[union-attr]
        if type(event) is Delta and not choice:
            return  # choice 0's text is the answer's own parts
        if choice not in self.choices:
            self.choices[choice] = Choice()
        assemble(self.choices[choice], event)

    def _release_logprobs(
        self, out: list[ChatEvent], channel: Channel, final: bool = False
    ) -> None:
        released = channel.received if final else channel.released
        while channel.pending and channel.pending[0].end <= released:
            pending = channel.pending.popleft()
            tokens = _uncovered(pending, channel.covered)
            if tokens:
                lp = pending.event
                self._send(out, Logprobs(tokens, lp.refusal, lp.choice))


def _uncovered(pending: _Pending, covered: list[tuple[int, int]]) -> tuple[base.TokenLogprob, ...]:
    """The tokens of `pending` that no redaction or block covered."""
    tokens = pending.event.tokens
    if not covered:
        return tokens
    start = pending.end - sum(len(t.token) for t in tokens)
    kept = []
    for token in tokens:
        end = start + len(token.token)
        if not any(s < end and start < e for s, e in covered):
            kept.append(token)
        start = end
    return tuple(kept)
