"""The normalized events a turn yields, which each API style frames its own way
(gateway/api/sse.py for the native routes, gateway/api/compat/ for the compatible ones).

Plain text is a Delta, or a TextRun for several deltas of choice 0's text that came
together (each is one content frame, made in one pass); everything else the model says
(tool calls, reasoning, refusals, log probabilities) has its own event, already through
the during-stage policies.
`choice` is the index of the answer among n > 1 alternatives (0 otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.storage.records import Totals
from providers.base import TextRun as TextRun  # a chat event too: the turn passes it on
from providers.base import TokenLogprob


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
    choice: int = 0


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of tool call `index`: its first piece has the id and the name, the others
    the next fragment of its JSON arguments (split anywhere)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    choice: int = 0


@dataclass(slots=True)
class ReasoningDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class ReasoningEnd:
    """The reasoning block so far is complete: the provider's signature over it, or, for
    a block the provider encrypted, its data (redacted)."""

    signature: str | None = None
    redacted: str | None = None
    choice: int = 0


@dataclass(slots=True)
class RefusalDelta:
    text: str
    choice: int = 0


@dataclass(slots=True)
class Logprobs:
    """Log probabilities of text already sent (of the refusal when refusal)."""

    tokens: tuple[TokenLogprob, ...]
    refusal: bool = False
    choice: int = 0


@dataclass(slots=True)
class ErrorEvent:
    code: str
    message: str


@dataclass(slots=True)
class ChoiceEnd:
    """How one answer of several (n > 1) ended; choice 0's is the End itself."""

    choice: int
    finish_reason: str
    native: str | None = None
    stop_sequence: str | None = None


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
    cost_nusd: int = 0  # this answer's cost (nano-USD)
    # the provider's own word for the end ("end_turn", "stop_sequence", "tool_use", ...)
    # when it is not finish_reason, and the stop sequence that ended it, when it said
    native: str | None = None
    stop_sequence: str | None = None
    # parts of the totals: input read from / written to the provider's prompt cache,
    # output spent reasoning
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0
    choices: tuple[ChoiceEnd, ...] = ()  # choices 1.. of an n > 1 answer


ChatEvent = (
    Start
    | Delta
    | TextRun
    | ToolCallDelta
    | ReasoningDelta
    | ReasoningEnd
    | RefusalDelta
    | Logprobs
    | ErrorEvent
    | End
)


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Choice:
    """One answer, assembled: what a non-streamed response renders."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: list[dict[str, str]] = field(default_factory=list)  # {text, signature} | {redacted}
    refusal: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    refusal_logprobs: list[TokenLogprob] = field(default_factory=list)
    logprobs_seen: bool = False


@dataclass(slots=True)
class Collected:
    """A whole turn, for a request that did not ask to stream."""

    start: Start
    text: str
    error: ErrorEvent | None
    end: End
    choices: dict[int, Choice] = field(default_factory=dict)


def assemble(choice: Choice, ev: ChatEvent) -> None:
    """Add one event of the answer `choice` to it."""
    if type(ev) is Delta:
        choice.text += ev.text
    elif type(ev) is ToolCallDelta:
        if ev.index >= len(choice.tool_calls):
            choice.tool_calls.append(ToolCall(ev.id or "", ev.name or "", ""))
        call = choice.tool_calls[ev.index]
        call.arguments += ev.arguments
    elif type(ev) is ReasoningDelta:
        if not choice.reasoning or "signature" in choice.reasoning[-1]:
            choice.reasoning.append({"text": ""})
        choice.reasoning[-1]["text"] += ev.text
    elif type(ev) is ReasoningEnd:
        if ev.redacted is not None:
            choice.reasoning.append({"redacted": ev.redacted})
        else:
            if not choice.reasoning or "signature" in choice.reasoning[-1]:
                choice.reasoning.append({"text": ""})
            choice.reasoning[-1]["signature"] = ev.signature or ""
    elif type(ev) is RefusalDelta:
        choice.refusal += ev.text
    elif type(ev) is Logprobs:
        choice.logprobs_seen = True
        (choice.refusal_logprobs if ev.refusal else choice.logprobs).extend(ev.tokens)


async def collect(events: AsyncIterator[ChatEvent]) -> Collected:
    start: Start | None = None
    parts: list[str] = []
    error: ErrorEvent | None = None
    end: End | None = None
    choices: dict[int, Choice] = {}
    async for ev in events:
        if type(ev) is Delta and not ev.choice:
            parts.append(ev.text)
        elif type(ev) is TextRun:
            parts.extend(ev.texts)
        elif type(ev) is Start:
            start = ev
        elif type(ev) is ErrorEvent:
            error = ev
        elif type(ev) is End:
            end = ev
        else:
            choice = ev.choice  # type: ignore[union-attr]
            if choice not in choices:
                choices[choice] = Choice()
            assemble(choices[choice], ev)
    assert start is not None and end is not None  # a turn always yields both
    first = choices.setdefault(0, Choice())
    first.text = "".join(parts) + first.text
    return Collected(start, first.text, error, end, choices)
