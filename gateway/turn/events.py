"""The normalized events a turn yields, which each API style frames its own way
(gateway/api/sse.py for the native routes, gateway/api/compat/ for the compatible ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.storage.records import Totals


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
    cost_nusd: int = 0  # this answer's cost (nano-USD)


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
    assert start is not None and end is not None  # a turn always yields both
    return Collected(start, "".join(parts), error, end)
