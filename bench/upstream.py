"""A fast fake LLM upstream: raw asyncio (uvloop) HTTP/1.1, keep-alive, chunked transfer.

Serves POST /v1/chat/completions (OpenAI SSE chunks, the usage chunk when
stream_options.include_usage, then `data: [DONE]`) and POST /v1/messages (Anthropic SSE:
message_start, content_block_start, content_block_delta..., content_block_stop, message_delta
with the cumulative output_tokens, message_stop), and GET /bench/stats.

Each request's shape comes from, first to last: the headers X-Bench-Tokens, X-Bench-Pace-Ms,
X-Bench-First-Ms; directives in the model name (`bench/tokens=200/pace=20/first=0`, so that a
gateway, which forwards no client headers, can pick them per configured model); the server's
defaults (--tokens, --pace-ms). Unpaced streams are written in one write; paced ones by a
1 ms timing wheel, so thousands of streams cost one timer, not one each.

    python -m bench.upstream --port 9100 [--tokens 50] [--pace-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass

import httptools

WORDS = (
    "The ",
    "gateway ",
    "streams ",
    "each ",
    "token ",
    "as ",
    "soon ",
    "as ",
    "it ",
    "exists, ",
    "and ",
    "records ",
    "the ",
    "answer ",
    "when ",
    "the ",
    "stream ",
    "ends. ",
    "Fast ",
    "é ",
)
EMPTY = b"0\r\n\r\n"


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def head(
    status: int, content_type: bytes, *, keep_alive: bool, chunked: bool, length: int = 0
) -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 400: b"Bad Request"}.get(status, b"Error")
    lines = [b"HTTP/1.1 %d %s" % (status, reason), b"content-type: " + content_type]
    lines.append(b"transfer-encoding: chunked" if chunked else b"content-length: %d" % length)
    if content_type == b"text/event-stream":
        lines.append(b"cache-control: no-cache")
    lines.append(b"connection: keep-alive" if keep_alive else b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass(slots=True)
class Shape:
    tokens: int
    pace_ms: int
    first_ms: int


class Wire:
    """The byte strings of one wire format for one model name, built once and reused."""

    def __init__(self, fmt: str, model: str) -> None:
        self.fmt = fmt
        m = json.dumps(model)
        if fmt == "openai":
            base = (
                '{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
                f'"model":{m},"system_fingerprint":null,"choices":'
            )
            self.prelude = chunk(
                f'data: {base}[{{"index":0,"delta":{{"role":"assistant","content":""}},'
                '"logprobs":null,"finish_reason":null}]}\n\n'.encode()
            )
            self.tokens = [
                chunk(
                    f'data: {base}[{{"index":0,"delta":{{"content":{json.dumps(w)}}},'
                    '"logprobs":null,"finish_reason":null}]}\n\n'.encode()
                )
                for w in WORDS
            ]
            self._finish = (
                f'data: {base}[{{"index":0,"delta":{{}},"logprobs":null,'
                '"finish_reason":"stop"}]}\n\n'
            )
            self._usage = (
                f'data: {base}[],"usage":{{"prompt_tokens":%d,"completion_tokens":%d,'
                '"total_tokens":%d}}\n\n'
            )
        else:
            self.prelude = (
                b"event: message_start\ndata: "
                + json.dumps(
                    {
                        "type": "message_start",
                        "message": {
                            "id": "msg_bench",
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {"input_tokens": 0, "output_tokens": 1},
                        },
                    },
                    separators=(",", ":"),
                )
                .replace("%", "%%")
                .encode()
                .replace(b'"input_tokens":0', b'"input_tokens":%d')
                + b"\n\n"
            )
            self.prelude_block = chunk(
                b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                b'"content_block":{"type":"text","text":""}}\n\n'
            )
            self.tokens = [
                chunk(
                    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                    b'"delta":{"type":"text_delta","text":' + json.dumps(w).encode() + b"}}\n\n"
                )
                for w in WORDS
            ]

    def start(self, input_tokens: int) -> bytes:
        if self.fmt == "openai":
            return self.prelude
        return chunk(self.prelude % input_tokens) + self.prelude_block

    def end(self, input_tokens: int, output_tokens: int, include_usage: bool) -> bytes:
        if self.fmt == "openai":
            out = chunk(self._finish.encode())
            if include_usage:
                total = input_tokens + output_tokens
                out += chunk((self._usage % (input_tokens, output_tokens, total)).encode())
            return out + chunk(b"data: [DONE]\n\n") + EMPTY
        return (
            chunk(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n')
            + chunk(
                b'event: message_delta\ndata: {"type":"message_delta","delta":'
                b'{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}}\n\n'
                % output_tokens
            )
            + chunk(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
            + EMPTY
        )


class Stream:
    __slots__ = ("conn", "keep_alive", "left", "pace", "sent", "tail", "wire")

    def __init__(self, conn: Connection, wire: Wire, shape: Shape, tail: bytes, keep_alive: bool):
        self.conn = conn
        self.wire = wire
        self.left = shape.tokens
        self.sent = 0
        self.pace = shape.pace_ms
        self.tail = tail
        self.keep_alive = keep_alive

    def step(self) -> bool:
        """Write the next token (and the tail after the last); False when the stream is over."""
        transport = self.conn.transport
        if self.conn.stream is not self or transport is None:
            return False  # the client left; connection_lost already counted it
        tokens = self.wire.tokens
        self.left -= 1
        data = tokens[self.sent % len(tokens)]
        self.sent += 1
        if self.left <= 0:
            transport.write(data + self.tail)
            self.conn.stream_done(self.keep_alive)
            return False
        transport.write(data)
        return True


class Wheel:
    """Paced streams keyed by the millisecond they are due: one timer for all of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, list[Stream]] = {}
        self.tick = 0
        self.handle: asyncio.TimerHandle | None = None

    def now_ms(self) -> int:
        return int(self.loop.time() * 1000)

    def add(self, stream: Stream, due_ms: int) -> None:
        self.slots.setdefault(due_ms, []).append(stream)
        if self.handle is None:
            self.tick = min(self.now_ms(), due_ms) - 1
            self._arm()

    def add_later(self, stream: Stream, delay_ms: int) -> None:
        """Far-off first tokens (idle streams) wait on their own timer, not in the wheel."""
        if delay_ms <= 1000:
            self.add(stream, self.now_ms() + delay_ms)
        else:
            self.loop.call_later(delay_ms / 1000, lambda: self.add(stream, self.now_ms()))

    def _arm(self) -> None:
        self.handle = self.loop.call_at((self.tick + 1) / 1000, self._run)

    def _run(self) -> None:
        now = self.now_ms()
        slots = self.slots
        for t in range(self.tick + 1, now + 1):
            due = slots.pop(t, None)
            if due is None:
                continue
            for stream in due:
                if stream.step():
                    slots.setdefault(t + stream.pace, []).append(stream)
        self.tick = now
        if slots:
            self._arm()
        else:
            self.handle = None


class Connection(asyncio.Protocol):
    __slots__ = ("bench", "body", "closed", "parser", "server", "stream", "transport", "url")

    def __init__(self, server: Upstream) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.stream: Stream | None = None  # the paced stream being written, if any
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.bench: dict[bytes, bytes] = {}
        self.body = b""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1
        self.server.accepted += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply(400, b'{"error":{"message":"bad request"}}', keep_alive=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.server.connections -= 1
        if self.stream is not None:
            self.stream = None
            self.server.open_streams -= 1

    # -- httptools callbacks ---------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name[:8].lower() == b"x-bench-":
            self.bench[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        method, url, bench, body = self.parser.get_method(), self.url, self.bench, self.body
        self._reset()
        self.server.requests += 1
        path = url.split(b"?", 1)[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            self._complete("openai", bench, body, keep_alive)
        elif method == b"POST" and path.endswith(b"/messages"):
            self._complete("anthropic", bench, body, keep_alive)
        elif path == b"/bench/stats":
            self._reply(200, json.dumps(self.server.stats()).encode(), keep_alive)
        else:
            self._reply(
                404, b'{"error":{"message":"not found","type":"not_found_error"}}', keep_alive
            )

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, status: int, payload: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        self.transport.write(
            head(
                status,
                b"application/json",
                keep_alive=keep_alive,
                chunked=False,
                length=len(payload),
            )
            + payload
        )
        if not keep_alive:
            self.transport.close()

    def _complete(self, fmt: str, bench: dict[bytes, bytes], body: bytes, keep_alive: bool) -> None:
        try:
            req = json.loads(body)
        except ValueError:
            self._reply(
                400,
                b'{"error":{"message":"invalid JSON","type":"invalid_request_error"}}',
                keep_alive,
            )
            return
        model = str(req.get("model", "bench"))
        shape = self.server.shape(model, bench)
        wire = self.server.wire(fmt, model)
        input_tokens = max(1, len(body) // 4)
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        if not req.get("stream"):
            text = "".join(WORDS[i % len(WORDS)] for i in range(shape.tokens))
            self._reply(
                200, self.server.whole(fmt, model, text, input_tokens, shape.tokens), keep_alive
            )
            return
        sse_head = self.server.sse_head_keep if keep_alive else self.server.sse_head_close
        tail = wire.end(input_tokens, shape.tokens, include_usage)
        self.server.open_streams += 1
        if shape.pace_ms <= 0 and shape.first_ms <= 0:
            tokens = wire.tokens
            n = len(tokens)
            parts = [sse_head, wire.start(input_tokens)]
            parts += [tokens[i % n] for i in range(shape.tokens)]
            parts.append(tail)
            self.transport.write(b"".join(parts))  # type: ignore[union-attr]
            self.stream_done(keep_alive)
            return
        self.transport.write(sse_head + wire.start(input_tokens))  # type: ignore[union-attr]
        stream = self.stream = Stream(self, wire, shape, tail, keep_alive)
        if shape.tokens <= 0:
            self.transport.write(tail)  # type: ignore[union-attr]
            self.stream_done(keep_alive)
            return
        self.server.wheel.add_later(stream, shape.first_ms if shape.first_ms > 0 else shape.pace_ms)

    def stream_done(self, keep_alive: bool) -> None:
        self.stream = None
        self.server.open_streams -= 1
        self.server.streams_done += 1
        if not keep_alive and self.transport is not None:
            self.transport.close()


class Upstream:
    def __init__(self, *, tokens: int = 50, pace_ms: int = 0, first_ms: int = 0) -> None:
        self.default = Shape(tokens, pace_ms, first_ms)
        self.requests = 0
        self.connections = 0
        self.accepted = 0  # connections ever opened: with keep-alive, far fewer than requests
        self.open_streams = 0
        self.streams_done = 0
        self._wires: dict[tuple[str, str], Wire] = {}
        self._shapes: dict[str, Shape] = {}
        self.sse_head_keep = head(200, b"text/event-stream", keep_alive=True, chunked=True)
        self.sse_head_close = head(200, b"text/event-stream", keep_alive=False, chunked=True)
        self.wheel: Wheel
        self.server: asyncio.base_events.Server | None = None

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "accepted": self.accepted,
            "open_streams": self.open_streams,
            "streams_done": self.streams_done,
            "pid": os.getpid(),
        }

    def wire(self, fmt: str, model: str) -> Wire:
        key = (fmt, model)
        wire = self._wires.get(key)
        if wire is None:
            wire = self._wires[key] = Wire(fmt, model)
        return wire

    def shape(self, model: str, bench: dict[bytes, bytes]) -> Shape:
        shape = self._shapes.get(model)
        if shape is None:
            shape = self._shapes[model] = model_shape(model, self.default)
        if bench:
            shape = Shape(
                int(bench.get(b"x-bench-tokens", shape.tokens)),
                int(bench.get(b"x-bench-pace-ms", shape.pace_ms)),
                int(bench.get(b"x-bench-first-ms", shape.first_ms)),
            )
        return shape

    def whole(self, fmt: str, model: str, text: str, tin: int, tout: int) -> bytes:
        if fmt == "openai":
            return json.dumps(
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": {
                        "prompt_tokens": tin,
                        "completion_tokens": tout,
                        "total_tokens": tin + tout,
                    },
                }
            ).encode()
        return json.dumps(
            {
                "id": "msg_bench",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": tin, "output_tokens": tout},
            }
        ).encode()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.wheel = Wheel(loop)
        self.server = await loop.create_server(
            lambda: Connection(self), host, port, backlog=8192, reuse_address=True
        )
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def model_shape(model: str, default: Shape) -> Shape:
    """`bench/tokens=200/pace=20/first=0` -> Shape; unknown parts keep the defaults."""
    values = {"tokens": default.tokens, "pace": default.pace_ms, "first": default.first_ms}
    for part in model.split("/"):
        name, sep, value = part.partition("=")
        if sep and name in values and value.isdigit():
            values[name] = int(value)
    return Shape(values["tokens"], values["pace"], values["first"])


def raise_fd_limit() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upstream", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--pace-ms", type=int, default=0)
    parser.add_argument("--first-ms", type=int, default=0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, only slower
        uvloop = None

    async def serve() -> None:
        up = Upstream(tokens=args.tokens, pace_ms=args.pace_ms, first_ms=args.first_ms)
        port = await up.start(args.host, args.port)
        print(f"bench upstream: listening on http://{args.host}:{port}", flush=True)
        await asyncio.Event().wait()

    try:
        if uvloop is not None:
            uvloop.run(serve())
        else:
            asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
