"""Normalized chat events -> SSE frames. The event contract lives here only.

Every stream is exactly: one `start`, zero or more `content`, at most one `error`, one
`end`; `data` is one line of JSON. A content frame is built from a per-stream prefix and
the JSON-escaped delta, with no dict and no general-purpose encoder per token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # C-accelerated
from typing import Any

from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse, SendTimeoutError
from starlette.types import Receive, Scope, Send

from gateway.chat import ChatEvent, Delta, End, ErrorEvent, Start
from gateway.settings import Settings

log = logging.getLogger("gateway.sse")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def start_data(ev: Start, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    data = {
        "message_id": ev.message_id,
        "conversation_id": ev.conversation_id,
        "chat_session_id": ev.chat_session_id,
        "model": ev.model,
        "user_message_id": ev.user_message_id,
    }
    if extra:
        data.update(extra)
    return data


def end_data(ev: End) -> dict[str, Any]:
    data: dict[str, Any] = {
        "message_id": ev.message_id,
        "finish_reason": ev.finish_reason,
        "usage": {"input_tokens": ev.input_tokens, "output_tokens": ev.output_tokens},
    }
    if ev.usage_estimated:
        data["usage"]["estimated"] = True
    if ev.totals is not None:
        data["conversation_usage"] = {
            "tokens_in": ev.totals.tokens_in, "tokens_out": ev.totals.tokens_out,
        }
    if ev.policy:
        data["policy"] = ev.policy
    if not ev.stored:
        data["stored"] = False  # Redis was away: the gateway keeps retrying the write
    return data


class ContentFrames:
    """`event: content` frames of one message, numbered from 1 (or after `seq`, when a
    resumed stream continues where the client's Last-Event-ID left off)."""

    __slots__ = ("prefix", "seq")

    def __init__(self, message_id: str, seq: int = 0) -> None:
        self.prefix = b"event: content\nid: " + message_id.encode() + b":"
        self.seq = seq

    def __call__(self, text: str) -> bytes:
        self.seq += 1
        return b"%s%d\ndata: {\"delta\":%s}\n\n" % (
            self.prefix, self.seq, encode_basestring(text).encode()
        )


async def encode(
    events: AsyncIterator[ChatEvent], *, start_seq: int = 0,
    start_extra: Callable[[Start], dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    content: ContentFrames | None = None
    async for ev in events:
        if type(ev) is Delta:
            yield content(ev.text)  # type: ignore[misc]
        elif type(ev) is Start:
            content = ContentFrames(ev.message_id, start_seq)
            yield frame("start", start_data(ev, start_extra(ev) if start_extra else None))
        elif type(ev) is ErrorEvent:
            yield frame("error", {"code": ev.code, "message": ev.message})
        elif type(ev) is End:
            yield frame("end", end_data(ev))


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


class EventStream(EventSourceResponse):
    """A client that stops reading is dropped after send_timeout: a warning, not a crash."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.warning("client stopped reading: stream dropped after %ss", self.send_timeout)


def sse_response(
    body: AsyncIterator[bytes], *, settings: Settings, headers: dict[str, str] | None = None
) -> EventSourceResponse:
    """sse-starlette runs the body beside a disconnect listener and a pinger; a vanished
    client cancels the body, whose `finally` (chat.run) stores the partial answer. A
    stalled reader is dropped after send_timeout (uvicorn's write buffer is bounded, so it
    cannot grow our memory meanwhile). On shutdown, Live ends open turns after
    shutdown_grace; the extra seconds here let their `end` frames go out."""
    return EventStream(
        body,
        headers={**SSE_HEADERS, **(headers or {})},
        ping=settings.ping_interval,
        ping_message_factory=_ping,
        sep="\n",
        send_timeout=settings.send_timeout,
        shutdown_grace_period=settings.shutdown_grace + 5,
    )
