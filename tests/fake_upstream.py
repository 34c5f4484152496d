"""A real HTTP server speaking the OpenAI and Anthropic wire formats, for tests and benchmarks.

Runs uvicorn in a background thread with its own event loop; replies are scripted per request
(`upstream.script(Reply(...))`), every request is logged (`upstream.requests`).

Routes: OpenAI POST /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions
(and the chat route again under /vllm/v1, an OpenAI-compatible server that also takes vLLM's
extra sampling fields); Anthropic POST /v1/messages, /v1/messages/count_tokens.

Shapes follow the providers' documented examples and their official SDKs' types:
- OpenAI Chat Completions, the chat completion object and the streamed chunk object, tool_calls
  deltas with their index and the function's argument fragments, logprobs, usage with
  prompt_tokens_details / completion_tokens_details:
  https://platform.openai.com/docs/api-reference/chat/create and .../chat-streaming
- OpenAI Responses streaming events (response.created ... response.completed, each with its
  sequence_number): https://platform.openai.com/docs/api-reference/responses-streaming
- OpenAI embeddings and legacy completions: https://platform.openai.com/docs/api-reference/
  embeddings and .../completions
- Anthropic Messages streaming (message_start, content_block_start / _delta / _stop with
  text_delta, input_json_delta, thinking_delta, signature_delta; message_delta with the
  cumulative usage; message_stop): https://docs.claude.com/en/docs/build-with-claude/streaming
- Anthropic tool use, images (base64 and url sources), PDFs and text documents, token counting:
  https://docs.claude.com/en/docs/agents-and-tools/tool-use/implement-tool-use,
  .../build-with-claude/vision, .../pdf-support, .../token-counting
Like the real services, both refuse (400 in their own error shape) fields they do not know and
tool results that answer no call, so a test proves the adapters send what the APIs accept.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
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

# The request fields each API knows (their API references); anything else is refused, as the
# services do ("Unrecognized request argument supplied: x" / "x: Extra inputs are not
# permitted").
OPENAI_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)
VLLM_EXTRA_FIELDS = frozenset(
    {
        "top_k",
        "min_p",
        "repetition_penalty",
        "length_penalty",
        "min_tokens",
        "ignore_eos",
    }
)
ANTHROPIC_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "output_config",
        "container",
        "mcp_servers",
        "context_management",
        "cache_control",
        "inference_geo",
        "speed",
    }
)
ANTHROPIC_COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "cache_control",
    }
)
ANTHROPIC_IMAGE_TYPES = frozenset(("image/jpeg", "image/png", "image/gif", "image/webp"))
ANTHROPIC_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
DEFAULT_SIGNATURE = "EqQBCkYIBRgCIkBmYWtlIHNpZ25hdHVyZSBvdmVyIHRoZSB0aGlua2luZw=="
EMBEDDING_DIMENSIONS = 8


# -- scripts ---------------------------------------------------------------------------------


@dataclass
class FakeToolCall:
    """A tool call to answer with. arguments is the JSON text, or the exact fragments it
    streams in (joined, they are the JSON text); a plain string streams in 8-character pieces."""

    name: str
    arguments: str | list[str] = "{}"
    id: str | None = None  # None: a fresh call_... / toolu_... id


@dataclass
class Reply:
    chunks: list[str] | None = None  # text pieces, one SSE chunk each; None -> default reply
    input_tokens: int | None = None  # None -> whitespace words of all request messages
    output_tokens: int | None = None  # None -> one per streamed piece (reasoning included)
    finish: str = "stop"  # "stop" | "length" | "content_filter" | a provider's own reason
    delay: float = 0.0  # seconds between pieces
    together: bool = False  # OpenAI chat: the whole body in one write (read at once)
    first_delay: float = 0.0  # seconds before the first piece
    status: int = 200  # != 200 -> error response in the provider's format
    retry_after: float | None = None
    should_retry: bool | None = None  # the x-should-retry header the SDKs obey
    error_message: str | None = None  # the error's message (default: "fake upstream error N")
    error_after: int | None = None  # after N pieces: an error event / error data chunk
    drop_after: int | None = None  # after N pieces: abort the connection (no clean end)
    tool_calls: list[FakeToolCall] | None = None  # after the text; finish: tool_calls
    reasoning: list[str] | None = None  # thinking pieces, before the text
    signature: str = DEFAULT_SIGNATURE  # the Anthropic thinking block's signature
    redacted_reasoning: str | None = None  # an Anthropic redacted_thinking block's data
    refusal: list[str] | None = None  # OpenAI: refusal pieces; Anthropic: text, stop: refusal
    cached_tokens: int = 0  # of the input, read from the prompt cache
    cache_write_tokens: int = 0  # of the input, written to the prompt cache (Anthropic)
    reasoning_tokens: int | None = None  # None -> the reasoning pieces (OpenAI effort: 12)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int | None = None  # tells whether two requests shared a keep-alive connection
    raw_headers: list[tuple[bytes, bytes]] | None = None  # as they came, in order
    raw_body: bytes | None = None

    @property
    def images(self) -> list[dict[str, Any]]:
        """Every image the request carries, in either API's shape, as {"url"} or
        {"media_type", "bytes"} (the decoded size)."""
        found: list[dict[str, Any]] = []
        for block in _blocks(self.body):
            if block.get("type") == "image_url":
                url = (block.get("image_url") or {}).get("url", "")
                found.append(_data_url_image(url) or {"url": url})
            elif block.get("type") == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    size = len(base64.b64decode(source.get("data", ""), validate=False))
                    found.append({"media_type": source.get("media_type"), "bytes": size})
                else:
                    found.append({"url": source.get("url")})
        return found


def _data_url_image(url: str) -> dict[str, Any] | None:
    match = re.match(r"data:([\w/+.-]+);base64,(.*)", url, re.DOTALL)
    if not match:
        return None
    return {"media_type": match[1], "bytes": len(base64.b64decode(match[2], validate=False))}


def _blocks(value: Any) -> Iterator[dict[str, Any]]:
    """Every content block (dict with a type) nested anywhere in a request body."""
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            yield value
        for item in value.values():
            yield from _blocks(item)
    elif isinstance(value, list):
        for item in value:
            yield from _blocks(item)


class _Refused(Exception):
    """A request the real API would refuse: answered 400 in the provider's error shape."""


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
    if isinstance(content, list):  # content blocks (tool results hold more of them)
        texts = []
        for b in content:
            if isinstance(b, dict):
                texts.append(b["text"] if "text" in b else _text_of(b.get("content")))
        return " ".join(t for t in texts if t)
    return ""


def _sse(data: Any, event: str | None = None) -> bytes:
    # ensure_ascii=False like the real services: non-ASCII text (U+2028 included) goes out raw
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _split(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _instance(schema: Any, depth: int = 0) -> Any:
    """A small value that fits a JSON schema: what a model asked for JSON might answer."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _instance(schema[key][0], depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _instance(sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [_instance(schema.get("items") or {}, depth + 1)]
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


# -- one request's answer --------------------------------------------------------------------


@dataclass
class _Call:
    id: str
    name: str
    fragments: list[str]

    @property
    def arguments(self) -> str:
        return "".join(self.fragments)


@dataclass
class _Turn:
    """One request's resolved reply: what the wire formats below render."""

    reply: Reply
    chunks: list[str]  # the text, cut before a stop sequence
    input_tokens: int
    output_tokens: int
    model: str
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)
    finish: str = "stop"  # normalized: stop | length | tool_calls | content_filter | native
    stop_sequence: str | None = None
    reasoning_tokens: int = 0
    choices: int = 1

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def uncached_input(self) -> int:
        """Anthropic's input_tokens: the input apart from what the cache read or wrote."""
        reply = self.reply
        return max(self.input_tokens - reply.cached_tokens - reply.cache_write_tokens, 0)

    def pieces(self) -> list[tuple[str, int, str]]:
        """(kind, index, text) in the order they stream: reasoning, refusal, text, then each
        tool call: "call" (its first argument fragment, which opens it), "args" (the rest);
        index is the call's."""
        out = [("reasoning", 0, t) for t in self.reasoning]
        out += [("refusal", 0, t) for t in self.refusal]
        out += [("text", 0, t) for t in self.chunks]
        for i, call in enumerate(self.calls):
            first, *rest = call.fragments or [""]
            out.append(("call", i, first))
            out += [("args", i, f) for f in rest]
        return out


def _cut_at_stop(chunks: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    """The chunks up to (not including) the first stop sequence, and that sequence."""
    text = "".join(chunks)
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return chunks, None
    end, sequence = min(hits)
    kept: list[str] = []
    length = 0
    for chunk in chunks:
        if length + len(chunk) >= end:
            if end > length:
                kept.append(chunk[: end - length])
            break
        kept.append(chunk)
        length += len(chunk)
    return kept, sequence


# -- the server ------------------------------------------------------------------------------


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
    def vllm_base_url(self) -> str:
        """An OpenAI-compatible server that also takes vLLM's sampling extras (top_k, ...)."""
        return self.base_url + "/vllm/v1"

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
                Route("/vllm/v1/chat/completions", self._vllm, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> tuple[Any, Reply]:
        raw_body = await request.body()
        body = await request.json()
        client = request.client
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    path=request.url.path,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                    client_port=client.port if client else None,
                    raw_headers=list(request.headers.raw),
                    raw_body=raw_body,
                )
            )
            reply = self._replies.popleft() if self._replies else Reply()
        return body, reply

    def _turn(self, body: dict[str, Any], reply: Reply, api: str) -> _Turn:
        """What to answer: the script, else what the request asks for (a forced tool, JSON),
        else an echo of the last user (or tool) message."""
        messages = body.get("messages") or []
        texts = [_text_of(m.get("content")) for m in messages]
        texts.append(_text_of(body.get("system")))  # anthropic keeps system apart
        last = next(
            (
                t
                for m, t in zip(reversed(messages), reversed(texts[:-1]), strict=True)
                if m.get("role") in ("user", "tool")
            ),
            "",
        )
        turn = _Turn(
            reply=reply,
            chunks=[],
            input_tokens=(
                reply.input_tokens
                if reply.input_tokens is not None
                else sum(len(t.split()) for t in texts)
            ),
            output_tokens=0,
            model=body.get("model", "unknown"),
            choices=int(body.get("n") or 1) if api == "openai" else 1,
        )
        prefix = "call_" if api == "openai" else "toolu_"
        if reply.tool_calls is not None:
            turn.calls = [
                _Call(
                    c.id or prefix + uuid.uuid4().hex[:24],
                    c.name,
                    list(c.arguments) if isinstance(c.arguments, list) else _split(c.arguments),
                )
                for c in reply.tool_calls
            ]
        chunks = reply.chunks
        if chunks is None and not turn.calls:
            forced = _forced_tool(body, api)
            schema = _json_answer_schema(body, api)
            if forced is not None:
                args = json.dumps(_instance(forced.get("schema") or {"type": "object"}))
                turn.calls = [_Call(prefix + uuid.uuid4().hex[:24], forced["name"], _split(args))]
                chunks = []
            elif schema is not None:
                answer = _instance(schema) if schema else {"echo": last}
                chunks = _split(json.dumps(answer), 6)
            elif reply.refusal is None:
                chunks = _words("Echo: " + last)
        turn.chunks = list(chunks or [])
        turn.refusal = list(reply.refusal or [])
        stops = body.get("stop") if api == "openai" else body.get("stop_sequences")
        if isinstance(stops, str):
            stops = [stops]
        turn.chunks, turn.stop_sequence = _cut_at_stop(turn.chunks, list(stops or []))
        if turn.stop_sequence is not None:
            turn.calls = []  # the model stopped before it called anything
        turn.reasoning = list(reply.reasoning or [])
        if not turn.reasoning and api == "anthropic" and _thinking_on(body):
            turn.reasoning = _words("Thinking about: " + last)
        turn.reasoning_tokens = (
            reply.reasoning_tokens
            if reply.reasoning_tokens is not None
            else len(turn.reasoning)
            or (12 if api == "openai" and body.get("reasoning_effort") not in (None, "none") else 0)
        )
        turn.finish = reply.finish
        if turn.calls and reply.finish == "stop":
            turn.finish = "tool_calls"
        if reply.refusal is not None and api == "anthropic" and reply.finish == "stop":
            turn.finish = "content_filter"
        turn.output_tokens = (
            reply.output_tokens
            if reply.output_tokens is not None
            else len(turn.chunks)
            + len(turn.refusal)
            + sum(len(c.fragments) for c in turn.calls)
            + (turn.reasoning_tokens if api == "openai" else len(turn.reasoning))
        )
        return turn

    def _error_headers(self, reply: Reply) -> dict[str, str]:
        headers = {}
        if reply.retry_after is not None:
            value = reply.retry_after
            headers["retry-after"] = str(int(value)) if value == int(value) else str(value)
        if reply.should_retry is not None:
            headers["x-should-retry"] = "true" if reply.should_retry else "false"
        return headers

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

    async def _paced(self, turn: _Turn) -> AsyncIterator[tuple[str, int, str] | None]:
        """The turn's pieces with the scripted delays; None means: error now."""
        reply = turn.reply
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        pieces = turn.pieces()
        for i, piece in enumerate(pieces):
            if reply.drop_after is not None and i >= reply.drop_after:
                raise _ConnectionDrop()
            if reply.error_after is not None and i >= reply.error_after:
                yield None
                return
            if i and reply.delay:
                await asyncio.sleep(reply.delay)
            yield piece
        if reply.drop_after is not None:
            raise _ConnectionDrop()
        if reply.error_after is not None:
            yield None

    def _stream(self, frames: AsyncIterator[bytes], headers: dict[str, str] | None = None):
        return StreamingResponse(
            self._tracked(frames), media_type="text/event-stream", headers=headers
        )

    # -- OpenAI Chat Completions -----------------------------------------------------------

    async def _openai(self, request: Request, extras: frozenset[str] = frozenset()) -> Response:
        body, reply = await self._record(request)
        if reply.status != 200:
            return self._openai_error(reply.status, reply, reply.error_message)
        try:
            _check_openai_chat(body, extras)
        except _Refused as exc:
            return self._openai_error(400, reply, str(exc))
        turn = self._turn(body, reply, "openai")
        usage = _openai_usage(turn)
        if not body.get("stream"):
            return JSONResponse(_openai_completion(turn, body, usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = self._openai_frames(turn, body, usage if include_usage else None)
        return self._stream(_together(frames) if reply.together else frames)

    async def _vllm(self, request: Request) -> Response:
        return await self._openai(request, VLLM_EXTRA_FIELDS)

    def _openai_error(self, status: int, reply: Reply, message: str | None) -> Response:
        kind, code = OPENAI_ERROR_TYPES.get(status, ("server_error", None))
        error = {
            "message": message or f"fake upstream error {status}",
            "type": kind,
            "param": None,
            "code": code,
        }
        return JSONResponse({"error": error}, status, self._error_headers(reply))

    async def _openai_frames(  # noqa: C901 - one branch per piece kind the chunks carry
        self, turn: _Turn, body: dict[str, Any], usage: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": turn.model,
            "system_fingerprint": None,
        }
        logprobs = _logprobs_wanted(body)

        def chunk(choice: int, delta: dict[str, Any], finish: str | None = None, lp=None) -> bytes:
            data = {
                **base,
                "choices": [
                    {"index": choice, "delta": delta, "logprobs": lp, "finish_reason": finish}
                ],
            }
            if usage is not None:
                data["usage"] = None  # every chunk carries the key; only the last one a value
            return _sse(data)

        choices = range(turn.choices)
        # the opening delta: content "" for an answer in words, null for a refusal or calls
        first = {"role": "assistant", "content": "" if turn.chunks else None, "refusal": None}
        if turn.refusal:
            first["refusal"] = ""
        for c in choices:
            yield chunk(c, first)
        position = 0
        async for piece in self._paced(turn):
            if piece is None:
                error = {
                    "message": "fake upstream error mid-stream",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
                yield _sse({"error": error})
                return
            kind, index, text = piece
            for c in choices:
                if kind == "text":
                    lp = _chunk_logprobs(text, position, logprobs) if logprobs else None
                    yield chunk(c, {"content": text}, lp=lp)
                elif kind == "refusal":
                    lp = _chunk_logprobs(text, position, logprobs, "refusal") if logprobs else None
                    yield chunk(c, {"refusal": text}, lp=lp)
                elif kind == "reasoning":  # as vLLM, DeepSeek and other compatible servers do
                    yield chunk(c, {"reasoning_content": text})
                else:
                    for delta in _openai_call_deltas(turn, kind, index, text):
                        yield chunk(c, {"tool_calls": [delta]})
            position += 1
        for c in choices:
            yield chunk(c, {}, turn.finish)
        if usage is not None:
            yield _sse({**base, "choices": [], "usage": usage})
        yield _sse("[DONE]")

    # -- OpenAI Responses ------------------------------------------------------------------

    async def _responses(self, request: Request) -> Response:
        body, reply = await self._record(request)
        if reply.status != 200:
            return self._openai_error(reply.status, reply, reply.error_message)
        try:
            _check_responses(body)
        except _Refused as exc:
            return self._openai_error(400, reply, str(exc))
        turn = self._turn(_responses_as_chat(body), reply, "openai")
        if not body.get("stream"):
            return JSONResponse(_response_object(turn, body, "completed"))
        return self._stream(self._responses_frames(turn, body))

    async def _responses_frames(  # noqa: C901 - one branch per piece kind, as events
        self, turn: _Turn, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        sequence = 0
        response_id = f"resp_{uuid.uuid4().hex[:24]}"

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal sequence
            data = {"type": kind, "sequence_number": sequence, **fields}
            sequence += 1
            return _sse(data, kind)

        start = _response_object(turn, body, "in_progress", response_id=response_id, output=[])
        yield event("response.created", response=start)
        yield event("response.in_progress", response=start)
        items = _response_items(turn)
        open_item: int | None = None
        async for piece in self._paced(turn):
            if piece is None:
                yield event(
                    "error",
                    code="server_error",
                    message="fake upstream error mid-stream",
                    param=None,
                )
                return
            kind, index, text = piece
            position = _item_position(turn, kind, index)
            item = items[position]
            if open_item != position:
                if open_item is not None:
                    for frame in _response_item_done(event, items[open_item], open_item):
                        yield frame
                open_item = position
                for frame in _response_item_added(event, item, position):
                    yield frame
            if kind == "reasoning":
                yield event(
                    "response.reasoning_summary_text.delta",
                    item_id=item["id"],
                    output_index=position,
                    summary_index=0,
                    delta=text,
                )
            elif kind in ("call", "args"):
                if text:
                    yield event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=position,
                        delta=text,
                    )
            else:
                refusal = kind == "refusal"
                name = "response.refusal.delta" if refusal else "response.output_text.delta"
                extra = {} if refusal else {"logprobs": []}
                yield event(
                    name,
                    item_id=item["id"],
                    output_index=position,
                    content_index=0,
                    delta=text,
                    **extra,
                )
        if open_item is not None:
            for frame in _response_item_done(event, items[open_item], open_item):
                yield frame
        status = "incomplete" if turn.finish == "length" else "completed"
        final = _response_object(turn, body, status, response_id=response_id, output=items)
        yield event(f"response.{status}", response=final)

    # -- OpenAI embeddings and legacy completions ------------------------------------------

    async def _embeddings(self, request: Request) -> Response:
        body, reply = await self._record(request)
        if reply.status != 200:
            return self._openai_error(reply.status, reply, reply.error_message)
        inputs = body.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return self._openai_error(400, reply, "'input' must be a string or a list")
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += len(item) if isinstance(item, list) else len(text.split())
            vector = _embedding(text, dimensions)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        if reply.input_tokens is not None:
            tokens = reply.input_tokens
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "unknown"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _completions(self, request: Request) -> Response:
        body, reply = await self._record(request)
        if reply.status != 200:
            return self._openai_error(reply.status, reply, reply.error_message)
        prompt = body.get("prompt")
        prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
        chat = {
            "model": body.get("model"),
            "stop": body.get("stop"),
            "messages": [{"role": "user", "content": prompt_text}],
        }
        turn = self._turn(chat, reply, "openai")
        usage = {
            "prompt_tokens": turn.input_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
        }
        base = {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": turn.model,
            "system_fingerprint": None,
        }
        if not body.get("stream"):
            choice = {"text": turn.text, "index": 0, "logprobs": None, "finish_reason": turn.finish}
            return JSONResponse({**base, "choices": [choice], "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def frames() -> AsyncIterator[bytes]:
            async for piece in self._paced(turn):
                if piece is None:
                    yield _sse(
                        {
                            "error": {
                                "message": "fake upstream error mid-stream",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                    )
                    return
                choice = {"text": piece[2], "index": 0, "logprobs": None, "finish_reason": None}
                yield _sse({**base, "choices": [choice]})
            last = {"text": "", "index": 0, "logprobs": None, "finish_reason": turn.finish}
            yield _sse({**base, "choices": [last]})
            if include_usage:
                yield _sse({**base, "choices": [], "usage": usage})
            yield _sse("[DONE]")

        return self._stream(frames())

    # -- Anthropic -------------------------------------------------------------------------

    def _anthropic_error(self, status: int, reply: Reply, message: str | None) -> Response:
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        error = {"type": kind, "message": message or f"fake upstream error {status}"}
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}", **self._error_headers(reply)}
        return JSONResponse({"type": "error", "error": error}, status, headers)

    async def _anthropic(self, request: Request) -> Response:
        body, reply = await self._record(request)
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if reply.status != 200:
            return self._anthropic_error(reply.status, reply, reply.error_message)
        try:
            _check_anthropic(body, ANTHROPIC_FIELDS)
        except _Refused as exc:
            return self._anthropic_error(400, reply, str(exc))
        turn = self._turn(body, reply, "anthropic")
        stop_reason = ANTHROPIC_STOP_REASONS.get(turn.finish, turn.finish)
        if turn.stop_sequence is not None:
            stop_reason = "stop_sequence"
        if not body.get("stream"):
            return JSONResponse(_anthropic_message(turn, stop_reason), headers=headers)
        return self._stream(self._anthropic_frames(turn, stop_reason), headers)

    async def _count_tokens(self, request: Request) -> Response:
        body, reply = await self._record(request)
        if reply.status != 200:
            return self._anthropic_error(reply.status, reply, reply.error_message)
        try:
            known = ANTHROPIC_COUNT_FIELDS | {"max_tokens"}
            _check_anthropic({**body, "max_tokens": 1 << 20}, known)
        except _Refused as exc:
            return self._anthropic_error(400, reply, str(exc))
        turn = self._turn(body, reply, "anthropic")
        tools = sum(len(json.dumps(t).split()) for t in body.get("tools") or [])
        return JSONResponse({"input_tokens": turn.input_tokens + tools})

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
            "usage": {**_anthropic_input_usage(turn), "output_tokens": 1},
        }
        yield _sse({"type": "message_start", "message": message}, "message_start")
        blocks = _anthropic_blocks(turn)
        if not blocks:  # an empty answer still has its (empty) text block
            blocks.append({"type": "text", "text": ""})
        position = -1  # the content block open now
        async for piece in self._paced(turn):
            if piece is None:
                error = {"type": "overloaded_error", "message": "Overloaded"}
                yield _sse({"type": "error", "error": error}, "error")
                return
            kind, index, text = piece
            target = _block_position(turn, kind, index)
            for frame in _advance(blocks, position, target):
                yield frame
            position = max(position, target)
            if text or kind in ("reasoning", "text", "refusal"):
                yield _delta(target, _piece_delta(kind, text))
        for frame in _advance(blocks, position, len(blocks) - 1):  # blocks with no pieces
            yield frame
        for frame in _block_stop(blocks, len(blocks) - 1):
            yield frame
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": turn.stop_sequence},
            # cumulative, not an increment
            "usage": {**_anthropic_input_usage(turn), **_anthropic_output_usage(turn)},
        }
        yield _sse(end, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")


# -- OpenAI: what the routes render ----------------------------------------------------------


def _openai_usage(turn: _Turn) -> dict[str, Any]:
    return {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens,
        "prompt_tokens_details": {"cached_tokens": turn.reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": turn.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_call_deltas(turn: _Turn, kind: str, index: int, fragment: str) -> list[dict]:
    """A call opens with a delta carrying its id, type and name (arguments ""), as OpenAI
    streams it; each argument fragment follows in a chunk of its own."""
    deltas = []
    if kind == "call":
        call = turn.calls[index]
        opening = {"name": call.name, "arguments": ""}
        deltas.append({"index": index, "id": call.id, "type": "function", "function": opening})
    if fragment:
        deltas.append({"index": index, "function": {"arguments": fragment}})
    return deltas


def _openai_completion(turn: _Turn, body: dict[str, Any], usage: dict[str, Any]) -> dict:
    logprobs = _logprobs_wanted(body)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": turn.text if turn.chunks or not (turn.calls or turn.refusal) else None,
        "refusal": "".join(turn.refusal) if turn.refusal else None,
        "annotations": [],
    }
    if turn.reasoning:
        message["reasoning_content"] = "".join(turn.reasoning)
    if turn.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in turn.calls
        ]
    choice_logprobs = None
    if logprobs:
        content = [_token_logprob(t, i, logprobs) for i, t in enumerate(turn.chunks)]
        choice_logprobs = {"content": content, "refusal": None}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "choices": [
            {
                "index": c,
                "message": message,
                "logprobs": choice_logprobs,
                "finish_reason": turn.finish,
            }
            for c in range(turn.choices)
        ],
        "usage": usage,
        "system_fingerprint": None,
    }


def _logprobs_wanted(body: dict[str, Any]) -> int | None:
    """How many top alternatives per token (0 and up) when logprobs were asked, else None."""
    if not body.get("logprobs"):
        return None
    return int(body.get("top_logprobs") or 0) or 0


def _token_logprob(token: str, position: int, top: int) -> dict[str, Any]:
    logprob = -round(0.1 * (position % 5 + 1), 3)
    alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}] + [
        {"token": f"alt{j}", "logprob": logprob - j, "bytes": list(f"alt{j}".encode())}
        for j in range(1, top)
    ]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": alternatives[:top],
    }


def _chunk_logprobs(text: str, position: int, top: int | None, key: str = "content") -> dict:
    other = "refusal" if key == "content" else "content"
    return {key: [_token_logprob(text, position, top or 0)], other: None}


def _check_openai_chat(  # noqa: C901 - one branch per rule the API enforces
    body: dict[str, Any], extras: frozenset[str]
) -> None:
    """What the Chat Completions API refuses: unknown fields, tool turns out of place,
    images it cannot fetch, tool_choice naming no tool."""
    for name in body:
        if name not in OPENAI_CHAT_FIELDS and name not in extras:
            raise _Refused(f"Unrecognized request argument supplied: {name}")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused("'messages' must be a non-empty array")
    pending: list[str] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise _Refused(f"Invalid value for 'messages[{i}].role': {role!r}")
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                raise _Refused(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'."
                )
            pending.remove(m["tool_call_id"])
            continue
        if pending:
            raise _Refused(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}"
            )
        if role == "assistant":
            pending = [c["id"] for c in m.get("tool_calls") or []]
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            _check_openai_part(part, f"messages[{i}].content[{j}]")
    names = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise _Refused(f"Invalid 'tool_choice': no function named {name!r} in 'tools'")
    if choice is not None and not names and choice != "none":
        raise _Refused(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
            "'tools' are specified."
        )
    if body.get("parallel_tool_calls") is not None and not names:
        raise _Refused(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only "
            "allowed when 'tools' are specified."
        )
    if body.get("top_logprobs") is not None and not body.get("logprobs"):
        raise _Refused("Invalid value for 'top_logprobs': 'logprobs' must be true")


def _check_openai_part(part: dict[str, Any], where: str) -> None:
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise _Refused(f"Missing required parameter: '{where}.text'.")
    elif kind == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        if not re.match(r"https?://|data:image/[\w+.-]+;base64,", url):
            raise _Refused(f"Invalid '{where}.image_url.url': expected a URL or a data URL")
    elif kind == "file":
        file = part.get("file") or {}
        if not (file.get("file_data") or file.get("file_id")):
            raise _Refused(f"Missing required parameter: '{where}.file.file_data'.")
    elif kind not in ("input_audio", "refusal"):
        raise _Refused(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
            "'input_audio', 'refusal', and 'file'."
        )


def _forced_tool(body: dict[str, Any], api: str) -> dict[str, Any] | None:
    """The tool the request makes the model call (named, or "required"/"any": the first)."""
    choice = body.get("tool_choice")
    tools = body.get("tools") or []
    if api == "openai":
        specs = [
            {"name": t["function"]["name"], "schema": t["function"].get("parameters")}
            for t in tools
            if t.get("type") == "function"
        ]
        name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        required = choice == "required"
    else:
        specs = [{"name": t.get("name"), "schema": t.get("input_schema")} for t in tools]
        kind = choice.get("type") if isinstance(choice, dict) else None
        name = choice.get("name") if kind == "tool" else None
        required = kind == "any"
    if name is not None:
        return next((s for s in specs if s["name"] == name), None)
    return specs[0] if required and specs else None


def _json_answer_schema(body: dict[str, Any], api: str) -> dict[str, Any] | None:
    """The schema a JSON answer must fit ({} for any JSON object), None for free text."""
    if api == "openai":
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return (fmt.get("json_schema") or {}).get("schema") or {}
        return {} if fmt.get("type") == "json_object" else None
    fmt = (body.get("output_config") or {}).get("format") or {}
    return fmt.get("schema") or {} if fmt.get("type") == "json_schema" else None


def _embedding(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 128) / 128 for i in range(dimensions)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


# -- OpenAI Responses: the items and events --------------------------------------------------


def _responses_as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The Responses request in Chat Completions terms, for the shared answer logic."""
    items = body.get("input")
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    for item in items if isinstance(items, list) else []:
        if item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
        elif item.get("role"):
            content = item.get("content")
            if isinstance(content, list):
                content = [{"text": p.get("text", "")} for p in content if isinstance(p, dict)]
            messages.append({"role": item["role"], "content": content})
    tools = [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("parameters")}}
        for t in body.get("tools") or []
        if t.get("type") == "function"
    ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    fmt = (body.get("text") or {}).get("format") or {}
    response_format = (
        {"type": "json_schema", "json_schema": {"schema": fmt.get("schema")}}
        if fmt.get("type") == "json_schema"
        else fmt or None
    )
    effort = (body.get("reasoning") or {}).get("effort")
    return {
        "model": body.get("model"),
        "messages": messages,
        "tools": tools,
        "tool_choice": choice,
        "response_format": response_format,
        "reasoning_effort": effort,
    }


_RESPONSES_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "stream",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "text",
        "previous_response_id",
        "store",
        "metadata",
        "parallel_tool_calls",
        "truncation",
        "user",
        "include",
        "top_logprobs",
        "service_tier",
        "background",
        "conversation",
        "prompt",
        "prompt_cache_key",
        "safety_identifier",
        "max_tool_calls",
        "stream_options",
    }
)


def _check_responses(body: dict[str, Any]) -> None:
    for name in body:
        if name not in _RESPONSES_FIELDS:
            raise _Refused(f"Unsupported parameter: '{name}'.")
    if body.get("input") is None and body.get("previous_response_id") is None:
        raise _Refused("Missing required parameter: 'input'.")


def _response_items(turn: _Turn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if turn.reasoning:
        items.append(
            {
                "id": f"rs_{uuid.uuid4().hex[:24]}",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "".join(turn.reasoning)}],
            }
        )
    if turn.chunks or turn.refusal or not turn.calls:
        part = (
            {"type": "refusal", "refusal": "".join(turn.refusal)}
            if turn.refusal
            else {"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}
        )
        items.append(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for call in turn.calls:
        items.append(
            {
                "id": f"fc_{uuid.uuid4().hex[:24]}",
                "type": "function_call",
                "status": "completed",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return items


def _item_position(turn: _Turn, kind: str, index: int) -> int:
    position = 1 if turn.reasoning else 0
    if kind == "reasoning":
        return 0
    if kind in ("text", "refusal"):
        return position
    has_message = bool(turn.chunks or turn.refusal)
    return position + (1 if has_message else 0) + index


def _response_item_added(event: Callable[..., bytes], item: dict, position: int) -> Iterator[bytes]:
    kind = item["type"]
    if kind == "message":
        yield event(
            "response.output_item.added",
            output_index=position,
            item={**item, "status": "in_progress", "content": []},
        )
        part = item["content"][0]
        empty = (
            {"type": "refusal", "refusal": ""}
            if part["type"] == "refusal"
            else {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        )
        yield event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=position,
            content_index=0,
            part=empty,
        )
    elif kind == "reasoning":
        yield event(
            "response.output_item.added", output_index=position, item={**item, "summary": []}
        )
        yield event(
            "response.reasoning_summary_part.added",
            item_id=item["id"],
            output_index=position,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )
    else:
        yield event(
            "response.output_item.added",
            output_index=position,
            item={**item, "status": "in_progress", "arguments": ""},
        )


def _response_item_done(event: Callable[..., bytes], item: dict, position: int) -> Iterator[bytes]:
    kind = item["type"]
    if kind == "message":
        part = item["content"][0]
        if part["type"] == "refusal":
            yield event(
                "response.refusal.done",
                item_id=item["id"],
                output_index=position,
                content_index=0,
                refusal=part["refusal"],
            )
        else:
            yield event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=position,
                content_index=0,
                text=part["text"],
                logprobs=[],
            )
        yield event(
            "response.content_part.done",
            item_id=item["id"],
            output_index=position,
            content_index=0,
            part=part,
        )
    elif kind == "reasoning":
        text = item["summary"][0]["text"]
        yield event(
            "response.reasoning_summary_text.done",
            item_id=item["id"],
            output_index=position,
            summary_index=0,
            text=text,
        )
        yield event(
            "response.reasoning_summary_part.done",
            item_id=item["id"],
            output_index=position,
            summary_index=0,
            part={"type": "summary_text", "text": text},
        )
    else:
        yield event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=position,
            name=item["name"],
            arguments=item["arguments"],
        )
    yield event("response.output_item.done", output_index=position, item=item)


def _response_object(
    turn: _Turn,
    body: dict[str, Any],
    status: str,
    *,
    response_id: str | None = None,
    output: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    done = status != "in_progress"
    fmt = (body.get("text") or {}).get("format") or {"type": "text"}
    return {
        "id": response_id or f"resp_{uuid.uuid4().hex[:24]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": turn.model,
        "output": _response_items(turn) if output is None else output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": turn.input_tokens,
            "input_tokens_details": {"cached_tokens": turn.reply.cached_tokens},
            "output_tokens": turn.output_tokens,
            "output_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
            "total_tokens": turn.input_tokens + turn.output_tokens,
        }
        if done
        else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


# -- Anthropic: what the routes render -------------------------------------------------------


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse(
        {"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"
    )


def _block_start(blocks: list[dict[str, Any]], index: int) -> bytes:
    block = dict(blocks[index])  # its content arrives as deltas: it starts empty
    if block["type"] == "text":
        block["text"] = ""
    elif block["type"] == "thinking":
        block["thinking"], block["signature"] = "", ""
    elif block["type"] == "tool_use":
        block["input"] = {}
    frame = {"type": "content_block_start", "index": index, "content_block": block}
    return _sse(frame, "content_block_start")


def _block_stop(blocks: list[dict[str, Any]], index: int) -> list[bytes]:
    frames = []
    if blocks[index]["type"] == "thinking":  # the signature comes just before the block ends
        signature = {"type": "signature_delta", "signature": blocks[index]["signature"]}
        frames.append(_delta(index, signature))
    frames.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return frames


def _advance(blocks: list[dict[str, Any]], position: int, target: int) -> list[bytes]:
    """Close the open block and open the next, up to block `target`."""
    frames: list[bytes] = []
    while position < target:
        if position >= 0:
            frames += _block_stop(blocks, position)
        position += 1
        frames.append(_block_start(blocks, position))
        if position == 0:  # the real service pings once, early in the stream
            frames.append(_sse({"type": "ping"}, "ping"))
    return frames


def _piece_delta(kind: str, text: str) -> dict[str, Any]:
    if kind == "reasoning":
        return {"type": "thinking_delta", "thinking": text}
    if kind in ("call", "args"):
        return {"type": "input_json_delta", "partial_json": text}
    return {"type": "text_delta", "text": text}


def _anthropic_blocks(turn: _Turn) -> list[dict[str, Any]]:
    """The answer's content blocks, whole: thinking, text, tool_use."""
    blocks: list[dict[str, Any]] = []
    if turn.reply.redacted_reasoning is not None:
        blocks.append({"type": "redacted_thinking", "data": turn.reply.redacted_reasoning})
    if turn.reasoning:
        blocks.append(
            {
                "type": "thinking",
                "thinking": "".join(turn.reasoning),
                "signature": turn.reply.signature,
            }
        )
    if turn.chunks or turn.refusal or not turn.calls:
        text = "".join(turn.refusal) + turn.text
        if text or not turn.calls:
            blocks.append({"type": "text", "text": text})
    for call in turn.calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {"_unparsed": call.arguments}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def _block_position(turn: _Turn, kind: str, index: int) -> int:
    position = 1 if turn.reply.redacted_reasoning is not None else 0
    if kind == "reasoning":
        return position
    position += 1 if turn.reasoning else 0
    if kind in ("text", "refusal"):
        return position
    return position + (1 if (turn.chunks or turn.refusal) else 0) + index


def _anthropic_input_usage(turn: _Turn) -> dict[str, int]:
    return {
        "input_tokens": turn.uncached_input,
        "cache_creation_input_tokens": turn.reply.cache_write_tokens,
        "cache_read_input_tokens": turn.reply.cached_tokens,
    }


def _anthropic_output_usage(turn: _Turn) -> dict[str, Any]:
    usage: dict[str, Any] = {"output_tokens": turn.output_tokens}
    if turn.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": turn.reasoning_tokens}
    return usage


def _anthropic_message(turn: _Turn, stop_reason: str) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": _anthropic_blocks(turn),
        "stop_reason": stop_reason,
        "stop_sequence": turn.stop_sequence,
        "usage": {**_anthropic_input_usage(turn), **_anthropic_output_usage(turn)},
    }


def _thinking_on(body: dict[str, Any]) -> bool:
    return (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")


def _check_anthropic(  # noqa: C901 - one branch per rule the API enforces
    body: dict[str, Any], known: frozenset[str]
) -> None:
    """What the Messages API refuses: unknown fields, a missing max_tokens, tool results that
    answer no call (or calls left unanswered), malformed images and documents, a thinking
    budget that does not fit, a forced tool with thinking on."""
    for name in body:
        if name not in known:
            raise _Refused(f"{name}: Extra inputs are not permitted")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise _Refused("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused("messages: at least one message is required")
    asked: list[str] = []  # the tool_use ids of the previous assistant turn
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant"):
            raise _Refused(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = m.get("content")
        blocks = content if isinstance(content, list) else []
        answered = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if m["role"] == "user":
            stray = [t for t in answered if t not in asked]
            if stray:
                raise _Refused(
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {stray[0]}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        missing = [t for t in asked if t not in answered]
        if missing:
            raise _Refused(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {missing[0]}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        asked = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
        for j, block in enumerate(blocks):
            _check_anthropic_block(block, f"messages.{i}.content.{j}", m["role"])
    if asked:
        raise _Refused("the last assistant turn has tool_use blocks without tool results")
    for i, tool in enumerate(body.get("tools") or []):
        if "type" not in tool and (tool.get("input_schema") or {}).get("type") != "object":
            raise _Refused(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    _check_anthropic_options(body, max_tokens)


def _check_anthropic_block(  # noqa: C901 - one branch per rule the API enforces
    block: dict[str, Any], where: str, role: str
) -> None:
    kind = block.get("type")
    if kind in ("image", "document"):
        source = block.get("source") or {}
        stype = source.get("type")
        if stype == "base64":
            media = source.get("media_type")
            allowed = ANTHROPIC_IMAGE_TYPES if kind == "image" else {"application/pdf"}
            if media not in allowed:
                raise _Refused(
                    f"{where}.{kind}.source.base64.media_type: Input should be one of "
                    f"{', '.join(sorted(allowed))}"
                )
            try:
                base64.b64decode(source.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise _Refused(f"{where}.{kind}.source.base64.data: invalid base64 data") from None
        elif stype == "url":
            if not str(source.get("url", "")).startswith(("http://", "https://")):
                raise _Refused(f"{where}.{kind}.source.url.url: Input should be a valid URL")
        elif not (kind == "document" and stype in ("text", "content")):
            raise _Refused(f"{where}.{kind}.source: unknown source type {stype!r}")
    elif kind == "tool_result" or kind == "text" or kind in ("thinking", "redacted_thinking"):
        if kind in ("thinking", "redacted_thinking") and role != "assistant":
            raise _Refused(f"{where}: thinking blocks belong to assistant turns")
        if kind == "thinking" and not block.get("signature"):
            raise _Refused(f"{where}.thinking.signature: Field required")
    elif kind == "tool_use":
        if role != "assistant" or not isinstance(block.get("input"), dict):
            raise _Refused(f"{where}.tool_use.input: Input should be a valid dictionary")
    else:
        raise _Refused(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of "
            "the expected tags"
        )


def _check_anthropic_options(body: dict[str, Any], max_tokens: int) -> None:
    thinking = body.get("thinking") or {}
    choice = body.get("tool_choice") or {}
    names = {t.get("name") for t in body.get("tools") or []}
    if choice.get("type") == "tool" and choice.get("name") not in names:
        raise _Refused(f"tool_choice: tool {choice.get('name')!r} not found in tools")
    if choice and choice.get("type") != "none" and not names:
        raise _Refused("tool_choice may only be specified while providing tools")
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _Refused(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= max_tokens:
            raise _Refused("`max_tokens` must be greater than `thinking.budget_tokens`")
    if _thinking_on(body):
        if choice.get("type") in ("any", "tool"):
            raise _Refused("Thinking may not be enabled when tool_choice forces tool use.")
        if body.get("temperature") not in (None, 1, 1.0):
            raise _Refused("`temperature` may only be set to 1 when thinking is enabled.")
        if body.get("top_k") is not None:
            raise _Refused("`top_k` is not supported when thinking is enabled.")
    metadata = body.get("metadata") or {}
    for key in metadata:
        if key != "user_id":
            raise _Refused(f"metadata.{key}: Extra inputs are not permitted")


async def _together(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield b"".join([frame async for frame in frames])
