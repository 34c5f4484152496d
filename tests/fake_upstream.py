"""A real HTTP server speaking the OpenAI and Anthropic wire formats, for tests and benchmarks.

Runs uvicorn in a background thread with its own event loop; replies are scripted per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    chunks: list[str] | None = None  # text pieces, one SSE chunk each; None -> default reply
    input_tokens: int | None = None  # None -> whitespace words of all request messages
    output_tokens: int | None = None  # None -> len(chunks)
    finish: str = "stop"  # "stop" | "length"
    delay: float = 0.0  # seconds between chunks
    first_delay: float = 0.0  # seconds before the first chunk
    status: int = 200  # != 200 -> error response in the provider's format
    retry_after: float | None = None
    error_after: int | None = None  # after N chunks: an error event / error data chunk
    drop_after: int | None = None  # after N chunks: abort the connection (no clean end)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int | None = None  # tells whether two requests shared a keep-alive connection


@dataclass
class _Turn:
    """One request's resolved reply: what the wire formats below render."""

    reply: Reply
    chunks: list[str]
    input_tokens: int
    output_tokens: int
    model: str


class _ConnectionDrop(Exception):
    """Raised inside a streaming body: uvicorn then closes the socket mid-response."""


class _HideDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _ConnectionDrop)


_hide_drops = _HideDrops()


def _words(text: str) -> list[str]:
    """Each word with its following whitespace: the pieces join back to the text."""
    return re.findall(r"\S+\s*", text)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _sse(data: Any, event: str | None = None) -> bytes:
    # ensure_ascii=False like the real services: non-ASCII text (U+2028 included) goes out raw
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class FakeUpstream:
    """Start with start(), script replies with script(), inspect requests and stream counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._open_streams = 0
        self._cancelled_streams = 0
        self._generation = 0  # bumped by reset(): streams of an earlier test no longer count
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeUpstream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            loop="asyncio",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        logging.getLogger("uvicorn.error").addFilter(_hide_drops)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.base_url

    # -- scripting and inspection (called from the test thread) ----------------------------

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def reset(self, settle: float = 1.0) -> None:
        """Forget replies, requests and counters. Waits up to `settle` seconds for streams
        still running (a client's close reaches the server a moment later); any left are
        not counted against the next test."""
        try:
            self.wait_until(lambda: self.open_streams == 0, settle)
        except TimeoutError:
            pass
        with self._lock:
            self._replies.clear()
            self._requests.clear()
            self._open_streams = self._cancelled_streams = 0
            self._generation += 1

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def open_streams(self) -> int:
        with self._lock:
            return self._open_streams

    @property
    def cancelled_streams(self) -> int:
        with self._lock:
            return self._cancelled_streams

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until predicate() holds; the server runs in its own thread, so this may block."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("fake upstream: condition not reached in time")
            time.sleep(0.005)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        self.wait_until(lambda: len(self.requests) >= n, timeout)
        return self.requests

    # -- the server side (runs on the server thread) ---------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    async def _take(self, request: Request) -> tuple[_Turn, Any]:
        body = await request.json()
        client = request.client
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    path=request.url.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    client_port=client.port if client else None,
                )
            )
            reply = self._replies.popleft() if self._replies else Reply()
        messages = body.get("messages") or []
        texts = [_text_of(m.get("content")) for m in messages]
        texts.append(_text_of(body.get("system")))  # anthropic keeps system apart
        chunks = reply.chunks
        if chunks is None:
            user_texts = [t for m, t in zip(messages, texts) if m.get("role") == "user"]
            chunks = _words("Echo: " + (user_texts[-1] if user_texts else ""))
        turn = _Turn(
            reply=reply,
            chunks=chunks,
            input_tokens=(
                reply.input_tokens
                if reply.input_tokens is not None
                else sum(len(t.split()) for t in texts)
            ),
            output_tokens=reply.output_tokens if reply.output_tokens is not None else len(chunks),
            model=body.get("model", "unknown"),
        )
        return turn, body

    def _error_headers(self, reply: Reply) -> dict[str, str]:
        if reply.retry_after is None:
            return {}
        value = reply.retry_after
        return {"retry-after": str(int(value)) if value == int(value) else str(value)}

    async def _tracked(self, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Count the stream as open while it runs; a stream cut short by the client is cancelled."""
        with self._lock:
            self._open_streams += 1
            generation = self._generation
        finished = dropped = False
        try:
            async for frame in frames:
                yield frame
            finished = True
        except _ConnectionDrop:
            dropped = True
            raise
        finally:
            with self._lock:
                if generation == self._generation:
                    self._open_streams -= 1
                    if not finished and not dropped:
                        self._cancelled_streams += 1

    async def _pieces(self, turn: _Turn) -> AsyncIterator[tuple[int, str | None]]:
        """(index, text) per chunk with the scripted delays; text None means: error now."""
        reply = turn.reply
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        for i, text in enumerate(turn.chunks):
            if reply.drop_after is not None and i >= reply.drop_after:
                raise _ConnectionDrop()
            if reply.error_after is not None and i >= reply.error_after:
                yield i, None
                return
            if i and reply.delay:
                await asyncio.sleep(reply.delay)
            yield i, text
        if reply.drop_after is not None:
            raise _ConnectionDrop()
        if reply.error_after is not None:
            yield len(turn.chunks), None

    # -- OpenAI ----------------------------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        turn, body = await self._take(request)
        reply = turn.reply
        if reply.status != 200:
            kind, code = OPENAI_ERROR_TYPES.get(reply.status, ("server_error", None))
            error = {
                "message": f"fake upstream error {reply.status}",
                "type": kind,
                "param": None,
                "code": code,
            }
            return JSONResponse({"error": error}, reply.status, self._error_headers(reply))
        usage = {
            "prompt_tokens": turn.input_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": turn.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(turn.chunks),
                                "refusal": None,
                            },
                            "logprobs": None,
                            "finish_reason": reply.finish,
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = self._openai_frames(turn, usage if include_usage else None)
        return StreamingResponse(self._tracked(frames), media_type="text/event-stream")

    async def _openai_frames(
        self, turn: _Turn, usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": turn.model,
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if usage is not None:
                data["usage"] = None  # every chunk carries the key; only the last one a value
            return _sse(data)

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        async for _, text in self._pieces(turn):
            if text is None:
                error = {
                    "message": "fake upstream error mid-stream",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
                yield _sse({"error": error})
                return
            yield chunk({"content": text})
        yield chunk({}, turn.reply.finish)
        if usage is not None:
            yield _sse({**base, "choices": [], "usage": usage})
        yield _sse("[DONE]")

    # -- Anthropic -------------------------------------------------------------------------

    async def _anthropic(self, request: Request) -> Response:
        turn, body = await self._take(request)
        reply = turn.reply
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if reply.status != 200:
            kind = ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error")
            error = {"type": kind, "message": f"fake upstream error {reply.status}"}
            return JSONResponse(
                {"type": "error", "error": error},
                reply.status,
                {**headers, **self._error_headers(reply)},
            )
        stop_reason = "max_tokens" if reply.finish == "length" else "end_turn"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": f"msg_{uuid.uuid4().hex[:24]}",
                    "type": "message",
                    "role": "assistant",
                    "model": turn.model,
                    "content": [{"type": "text", "text": "".join(turn.chunks)}],
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": turn.input_tokens,
                        "output_tokens": turn.output_tokens,
                    },
                },
                headers=headers,
            )
        frames = self._anthropic_frames(turn, stop_reason)
        return StreamingResponse(
            self._tracked(frames), media_type="text/event-stream", headers=headers
        )

    async def _anthropic_frames(self, turn: _Turn, stop_reason: str) -> AsyncIterator[bytes]:
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": turn.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # like the real service: the start reports the input and a token or so of output
            "usage": {"input_tokens": turn.input_tokens, "output_tokens": 1},
        }
        yield _sse({"type": "message_start", "message": message}, "message_start")
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        yield _sse(block, "content_block_start")
        yield _sse({"type": "ping"}, "ping")
        async for _, text in self._pieces(turn):
            if text is None:
                error = {"type": "overloaded_error", "message": "Overloaded"}
                yield _sse({"type": "error", "error": error}, "error")
                return
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            }
            yield _sse(delta, "content_block_delta")
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": turn.output_tokens},  # cumulative, not an increment
        }
        yield _sse(end, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")
