"""Normalized chat events -> SSE frames. The event contract lives here only.

Every stream is exactly: one `start`, zero or more `content`, at most one `error`, one
`end`; `data` is one line of JSON. A content frame is built from a per-stream prefix and
the JSON-escaped delta, with no dict and no general-purpose encoder per token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from json.encoder import encode_basestring  # C-accelerated
from typing import Any, cast

from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.api.schemas.common import FinishReason, PolicyEvent
from gateway.api.schemas.stream import (
    ConversationUsage,
    StreamEnd,
    StreamError,
    StreamStart,
    StreamToolCall,
    StreamUsage,
)
from gateway.settings import Settings
from gateway.storage.records import usd
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start, TextRun
from gateway.turn.events import ToolCallDelta

log = logging.getLogger("gateway.sse")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# Line breaks that JSON leaves raw but some readers split lines on (JavaScript before ES2019,
# Python's str.splitlines, old EventSource polyfills): escaped in every frame we write
_ESCAPED = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})
_RAW = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"), (b"\xc2\x85", b"\\u0085"))


def escape_line_breaks(text: str) -> str:
    """JSON text with the three line breaks escaped. ASCII text cannot hold them, and
    str.isascii() is O(1) in CPython: no second pass over an ASCII token; a non-ASCII one is
    searched by `in` (C's fast search) and translated only when one is there
    (bench/hotpath.py measures both)."""
    if text.isascii() or not ("\u2028" in text or "\u2029" in text or "\x85" in text):
        return text
    return text.translate(_ESCAPED)


def escape_line_break_bytes(raw: bytes) -> bytes:
    """The same for JSON already encoded as UTF-8 (pydantic's serializer keeps non-ASCII
    text raw); for the frames other than content, a few per stream."""
    for sep, escaped in _RAW:
        if sep in raw:
            raw = raw.replace(sep, escaped)
    return raw


def json_string(text: str) -> bytes:
    """`text` as a JSON string literal for one `data:` line."""
    return escape_line_breaks(encode_basestring(text)).encode()


def json_strings(texts: list[str]) -> list[bytes]:
    """json_string() of each text, with no Python call per text: an ASCII text (most)
    cannot hold the line breaks escape_line_breaks looks for."""
    return [encode_basestring(t).encode() if t.isascii() else json_string(t) for t in texts]


def frame(event: str, data: BaseModel) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (
        event.encode(),
        escape_line_break_bytes(data.__pydantic_serializer__.to_json(data)),
    )


def start_data(ev: Start, extra: dict[str, Any] | None = None) -> StreamStart:
    return StreamStart(
        message_id=ev.message_id,
        conversation_id=ev.conversation_id,
        chat_session_id=ev.chat_session_id,
        model=ev.model,
        user_message_id=ev.user_message_id,
        **(extra or {}),
    )


def end_data(ev: End) -> StreamEnd:
    totals = ev.totals
    return StreamEnd(
        message_id=ev.message_id,
        finish_reason=cast(FinishReason, ev.finish_reason),  # and validated as one
        usage=StreamUsage(
            input_tokens=ev.input_tokens,
            output_tokens=ev.output_tokens,
            estimated=ev.usage_estimated,
        ),
        conversation_usage=(
            ConversationUsage(
                tokens_in=totals.tokens_in,
                tokens_out=totals.tokens_out,
                cost=usd(totals.cost_nusd),
            )
            if totals is not None
            else None
        ),
        policy=[PolicyEvent(**p) for p in ev.policy],
        stored=ev.stored,  # false: Redis was away; the gateway keeps retrying the write
    )


class ContentFrames:
    """`event: content` frames of one message, numbered from 1 (or after `seq`, when a
    resumed stream continues where the client's Last-Event-ID left off); `event: tool_call`
    frames are numbered in the same sequence, so a resume replays them too."""

    __slots__ = ("prefix", "seq", "message_id")

    def __init__(self, message_id: str, seq: int = 0) -> None:
        self.prefix = b"event: content\nid: " + message_id.encode() + b":"
        self.seq = seq
        self.message_id = message_id

    def tool_call(self, ev: ToolCallDelta) -> bytes:
        self.seq += 1
        data = StreamToolCall(index=ev.index, id=ev.id, name=ev.name, arguments=ev.arguments)
        return b"event: tool_call\nid: %s:%d\ndata: %s\n\n" % (
            self.message_id.encode(),
            self.seq,
            data.__pydantic_serializer__.to_json(data),
        )

    def __call__(self, text: str) -> bytes:
        self.seq += 1
        return b'%s%d\ndata: {"delta":%s}\n\n' % (self.prefix, self.seq, json_string(text))

    def run(self, texts: list[str]) -> bytes:
        """The frames of a TextRun's texts, numbered on, as one chunk."""
        prefix, seq = self.prefix, self.seq
        self.seq = seq + len(texts)
        return b"".join(
            [
                b'%s%d\ndata: {"delta":%s}\n\n' % (prefix, n, s)
                for n, s in enumerate(json_strings(texts), seq + 1)
            ]
        )


async def encode(
    events: AsyncIterator[ChatEvent],
    *,
    start_seq: int = 0,
    start_extra: Callable[[Start], dict[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    content: ContentFrames | None = None
    started: Start | None = None
    closed = errored = False
    try:
        async for ev in events:
            if type(ev) is Delta:
                yield content(ev.text)  # type: ignore[misc]
            elif type(ev) is TextRun:
                yield content.run(ev.texts)  # type: ignore[union-attr]
            elif type(ev) is Start:
                started, content = ev, ContentFrames(ev.message_id, start_seq)
                yield frame("start", start_data(ev, start_extra(ev) if start_extra else None))
            elif type(ev) is ErrorEvent:
                errored = True
                yield frame("error", StreamError(code=ev.code, message=ev.message))
            elif type(ev) is End:
                closed = True
                yield Final(frame("end", end_data(ev)))
            elif type(ev) is ToolCallDelta and not ev.choice:
                yield content.tool_call(ev)  # type: ignore[union-attr]
            # reasoning, refusals and log probabilities are the compatible APIs' alone
    except Exception:
        if started is None or closed:
            raise
        # a bug of ours past the turn's own end: the stream still ends by the contract, and
        # says the answer may not be stored
        log.exception("stream of message %s failed", started.message_id)
        if not errored:
            yield frame("error", StreamError(code="internal_error", message="the stream failed"))
        yield frame("end", end_data(End(started.message_id, "error", 0, 0, stored=False)))


class Final(bytes):
    """A body's last frames (its `end`, or OpenAI's finish, usage and [DONE] chunks): they go
    out with the end of the response, in one write, instead of at once and then the end."""

    __slots__ = ()


PING = b": ping\n\n"
COALESCE_BYTES = 16 * 1024  # frames ready together go out in one write, up to this much
EAGER_FRAMES = 2  # the start frame and the first content frame: one write, at once


class EventStream(Response):
    """The SSE response. Frames are sent from the request's own task; the client's
    disconnect is told by our server's connection (gateway/server.py's "gateway.disconnect"
    extension: no task per stream) or, under another server, waited for by one small
    listener task per stream; one timer callback sends
    `: ping` on idle connections and drops a reader that has not accepted a frame for
    send_timeout. Whichever ends first wins:

    | what happens            | who notices          | effect                                   |
    | ----------------------- | -------------------- | ---------------------------------------- |
    | the body ends           | the sending loop     | final empty frame; listener cancelled    |
    | the client disconnects  | server or listener   | the body is cancelled (its finally runs) |
    | a send stalls           | the timer            | the body is cancelled, a warning logged  |
    | a ping is due           | the timer            | `: ping`, unless a frame is being sent   |

    Shutdown needs nothing here: Live ends open turns after shutdown_grace, so their
    bodies end with `end` {cancelled} and the responses complete normally."""

    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        ping_interval: float,
        send_timeout: float,
        headers: dict[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.body_iterator = body
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            if self.on_close is not None:  # whatever happened, the body's resources go
                self.on_close()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if scope["method"] == "HEAD":  # headers only; never start an endless body
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        state = _StreamState(loop.time(), task)
        hook = scope.get("extensions", {}).get("gateway.disconnect")
        if hook is not None:  # our server tells of a vanished client: no listener task
            hook.on_disconnect(state.client_gone)
            listener = None
        else:
            listener = asyncio.create_task(_listen(receive, task, state))
        state.timer = loop.call_later(self.ping_interval, self._on_tick, loop, task, send, state)
        body = self.body_iterator

        async def flush(chunks: list[bytes], more: bool = True) -> None:
            state.sending_since = loop.time()
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": more})
            state.sending_since = None
            state.last_sent = loop.time()
            chunks.clear()

        try:
            await _pump(body, flush)  # its last write ends the response
        except asyncio.CancelledError:
            if state.ended_by is None:
                raise  # not ours: the server is cancelling the request
            task.uncancel()
            if state.ended_by == "send_timeout":
                log.warning("client stopped reading: stream dropped after %ss", self.send_timeout)
        finally:
            state.closed = True
            if state.timer is not None:
                state.timer.cancel()
            if listener is not None:
                listener.cancel()
            else:
                hook.on_disconnect(None)
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()  # the body's finally runs now (chat.run stores the answer)

    def _on_tick(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        send: Send,
        state: _StreamState,
    ) -> None:
        if state.closed:
            return
        now = loop.time()
        if state.sending_since is not None and now - state.sending_since > self.send_timeout:
            state.ended_by = "send_timeout"
            task.cancel()
            return
        if (
            state.sending_since is None
            and not state.pinging
            and now - state.last_sent >= self.ping_interval
        ):
            state.pinging = True
            state.last_sent = now
            ping = loop.create_task(_ping(send, state))
            _pings.add(ping)
            ping.add_done_callback(_pings.discard)
        # wake exactly when something can be due: the send deadline while a frame is being
        # sent, else the moment the connection will have been idle for ping_interval
        if state.sending_since is not None:
            due = state.sending_since + self.send_timeout
        else:
            due = state.last_sent + self.ping_interval
        state.timer = loop.call_later(
            max(due - loop.time(), 0.01), self._on_tick, loop, task, send, state
        )


async def _pump(body: AsyncIterator[bytes], flush: Callable[..., Awaitable[None]]) -> None:
    """Send the body's frames, then end the response (`flush(frames, False)`). A frame the
    body produced after waiting (the first delta of an upstream read) goes out at once; the
    frames it has ready right after that one (the rest of the read) are gathered into one
    write, sent before the body waits again. The response's first frames (its start and its
    first content) go out as soon as both are made, even when the upstream had more ready:
    so the first token is never delayed behind the rest of a read, and no frame is held
    back. A `Final` frame waits only for the body's end, which follows it at once: it goes
    in the write that ends the response."""
    buffered: list[bytes] = []
    size = 0
    eager = EAGER_FRAMES
    while True:
        step = body.__anext__()
        try:
            waiting_on = step.send(None)  # type: ignore[attr-defined]
        except StopIteration as ready:
            chunk = ready.value
        except StopAsyncIteration:
            break
        else:
            if buffered:
                try:
                    await flush(buffered)
                except BaseException:
                    await _abandon(step, waiting_on)  # begun: it must end first
                    raise
                size = 0
            try:
                chunk = await _Rest(step, waiting_on)
            except StopAsyncIteration:
                break
            if type(chunk) is not Final:
                await flush([chunk])
                eager = 0
                continue
        buffered.append(chunk)
        size += len(chunk)
        chunk = b""  # an idle stream's frame does not keep its last frame alive
        if size >= COALESCE_BYTES or len(buffered) == eager:
            await flush(buffered)
            size = eager = 0
    await flush(buffered, False)


class _Rest:
    """Awaits the rest of a step that was started by hand (`step.send(None)`) and turned
    out to wait for `waiting_on`: the same protocol `await` speaks, resumed from there, so
    cancellation and the step's result reach it exactly as if it had been awaited whole."""

    __slots__ = ("step", "waiting_on")

    def __init__(self, step: Any, waiting_on: Any) -> None:
        self.step = step
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        step, waiting_on = self.step, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:  # noqa: BLE001  # cancellation goes to the step
                try:
                    waiting_on = step.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = step.send(sent)
                except StopIteration as done:
                    return done.value


async def _abandon(step: Any, waiting_on: Any) -> None:
    """End a step of the body that had begun to wait when the write before it failed (a
    send timeout, a vanished client): the body is cancelled at that wait, so its own
    cleanup runs, and it can be closed afterwards."""
    try:
        waiting_on = step.throw(asyncio.CancelledError())
        await _Rest(step, waiting_on)
    except (asyncio.CancelledError, Exception):
        pass  # the body ended, which is all that is wanted here


class _StreamState:
    __slots__ = ("last_sent", "sending_since", "ended_by", "closed", "pinging", "timer", "task")

    def __init__(self, now: float, task: asyncio.Task[Any]) -> None:
        self.last_sent = now
        self.sending_since: float | None = None
        self.ended_by: str | None = None
        self.closed = False
        self.pinging = False
        self.timer: asyncio.TimerHandle | None = None
        self.task = task

    def client_gone(self) -> None:
        if not self.closed and self.ended_by is None:
            self.ended_by = "disconnect"
            self.task.cancel()


_pings: set[asyncio.Task[None]] = set()


async def _ping(send: Send, state: _StreamState) -> None:
    try:
        if not state.closed and state.sending_since is None:
            await send({"type": "http.response.body", "body": PING, "more_body": True})
    except Exception:
        pass  # the client is gone: the listener ends the stream
    finally:
        state.pinging = False


async def _listen(receive: Receive, task: asyncio.Task[Any], state: _StreamState) -> None:
    while not state.closed:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not state.closed:
                state.ended_by = "disconnect"
                task.cancel()
            return


def sse_response(
    body: AsyncIterator[bytes],
    *,
    settings: Settings,
    headers: dict[str, str] | None = None,
    on_close: Callable[[], None] | None = None,
) -> EventStream:
    """A vanished client cancels the body, whose `finally` (chat.run) stores the partial
    answer. A stalled reader is dropped after send_timeout (uvicorn's write buffer is
    bounded, so it cannot grow our memory meanwhile)."""
    return EventStream(
        body,
        ping_interval=settings.ping_interval,
        send_timeout=settings.send_timeout,
        headers={**SSE_HEADERS, "Connection": "keep-alive", **(headers or {})},
        on_close=on_close,
    )
