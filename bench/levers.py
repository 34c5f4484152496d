"""Issue 17's per-request levers, each measured apart against what it replaces (CPU time per
call, the best of --rounds rounds; the machine is shared, so compare within a row):

- a JWT request's authentication: verified by PyJWT every time (the cache emptied before
  each call) against found in the verified-JWT cache (gateway/access/jwts.py VerifiedJwts);
- JSON on the hot path with orjson against the standard library: an upstream chunk's
  decode (providers/wire.py json_object; the OpenAI content chunk and the Anthropic content
  delta the fake upstream sends, and per 50-token stream), a stored message's encode and
  decode (gateway/storage/records.py Message: asdict + json.dumps before), and a content
  frame's JSON string (gateway/api/sse.py json_string against orjson.dumps: not adopted,
  it saves about 1 us per stream);
- finding a request's route: Starlette's walk over every route's regex in order against
  the dict of fixed paths in front of it (gateway/api/routing.py FixedPathRouter);
- a fixed route's endpoint served through the app's ASGI stack (its middleware, the
  router), with a response of one start and 20 body sends: through Starlette's
  `route.handle` and `request_response` (before) against called directly by the router
  (after: gateway/api/routing.py plain_endpoint);
- the collector's full pass over what a worker made at start-up (the SDKs' type modules,
  the compiled default policies), in a fresh interpreter: walked (before) against frozen
  by gc.freeze() in the app's lifespan (gateway/app.py). A full pass runs whenever enough
  objects survived since the last one, so a busy worker paid it every few thousand streams;
- a turn's three Redis round trips (gateway/storage/turns.py: load_context, begin, end with
  the usage script, on an embedded redis-server on the other core) through redis-py's
  Pipeline (before) against gateway/storage/batch.py's Batch (after: the same commands and
  callbacks, hiredis packing, no pipeline object); and, not adopted, a turn's EVALs sent
  as EVALSHA (the body is not sent; the server's script cache answers either way);
- the same round trips, and a direct turn's PING, as a Batch on a connection of redis-py's
  pool (before: its pool's condition and timeout, its health read, a task for the write's
  timeout, a timeout per reply) against on the client's Lane, the one connection every
  batch shares (after: gateway/storage/lane.py);
- a turn's history read back (Turns.load_context): each stored message parsed (before)
  against found in the worker's ParsedMessages (gateway/storage/records.py), for a
  conversation of 8 messages and one of 200.

    python -m bench.levers [--n 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jwt
import orjson

from gateway.access.auth import Authenticator
from gateway.api.sse import json_string
from gateway.settings import load_settings
from gateway.storage import batch, client, lane, scripts, turns
from gateway.storage import store as store_module
from gateway.storage import usage as usage_module
from gateway.storage.durability import Durability
from gateway.storage.embedded import EmbeddedRedis
from gateway.storage.records import Message, ParsedMessages
from gateway.storage.store import Store
from gateway.storage.usage import Tally
from providers import wire

SECRET = "bench-secret-bench-secret-bench-secret"
OPENAI_CHUNK = (
    b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764640000,'
    b'"model":"bench/tokens=50","system_fingerprint":null,"choices":[{"index":0,'
    b'"delta":{"content":" token"},"logprobs":null,"finish_reason":null}]}'
)
ANTHROPIC_DELTA = (
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token"}}'
)
CHUNKS_PER_STREAM = 52  # the role chunk, 50 content chunks, the finish chunk


def cpu_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time_ns() - t0) / n / 1000)
    return best


def jwt_rows(n: int, rounds: int) -> list[tuple[str, float, float]]:
    settings = load_settings(env={"GATEWAY_REDIS_URL": "redis://x", "GATEWAY_JWT_SECRET": SECRET})
    auth = Authenticator(settings, store=None)  # type: ignore[arg-type]  # JWTs never ask Redis
    claims = {
        "sub": "alice",
        "org_id": "org-1",
        "role": "user",
        "workspaces": ["ws-1"],
        "exp": int(time.time()) + 3600,
    }
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    loop = asyncio.new_event_loop()

    def verified() -> object:
        auth.verified_jwts._entries.clear()  # noqa: SLF001 - the cost of a first sight
        return loop.run_until_complete(auth.principal_for(token, client=None))

    def cached() -> object:
        return loop.run_until_complete(auth.principal_for(token, client=None))

    try:
        before = cpu_us(verified, n, rounds)
        after = cpu_us(cached, n, rounds)
    finally:
        loop.close()
    return [("authenticate a JWT request (HS256, incl. the loop's step)", before, after)]


def json_rows(n: int, rounds: int) -> list[tuple[str, float, float]]:
    rows = []
    for name, data in (("OpenAI chunk", OPENAI_CHUNK), ("Anthropic delta", ANTHROPIC_DELTA)):
        before = cpu_us(lambda d=data: json.loads(d), n * 5, rounds)
        after = cpu_us(lambda d=data: wire.json_object(d), n * 5, rounds)
        rows.append((f"decode an upstream {name} ({len(data)} B)", before, after))
    rows.append(
        (
            f"  the same per 50-token OpenAI stream ({CHUNKS_PER_STREAM} chunks)",
            rows[0][1] * CHUNKS_PER_STREAM,
            rows[0][2] * CHUNKS_PER_STREAM,
        )
    )
    # not adopted: ~0.02 us a frame, 1 us per stream (the same bytes for ASCII text)
    before = cpu_us(lambda: json_string(" token"), n * 5, rounds)
    after = cpu_us(lambda: orjson.dumps(" token"), n * 5, rounds)
    rows.append(("a content frame's JSON string, ASCII token (not adopted)", before, after))
    message = Message(
        id="e5ed0c1a-2b3c-4d5e-8f9a-0b1c2d3e4f50",
        conversation_id="5a7e8f91-0b1c-4d2e-8f3a-9b8c7d6e5f40",
        role="assistant",
        content=" token" * 50,
        status="complete",
        created_at=1764640000123,
        chat_session_id="c8d9e0f1-a2b3-4c5d-8e6f-7a8b9c0d1e2f",
        model_id="openai-50",
        user_id="alice",
        input_tokens=12,
        output_tokens=50,
        finish_reason="stop",
    )
    before = cpu_us(lambda: json.dumps(asdict(message), separators=(",", ":")), n, rounds)
    after = cpu_us(message.to_json, n, rounds)
    rows.append(("Message.to_json (2 per turn)", before, after))
    raw = message.to_json()
    before = cpu_us(lambda: Message(**json.loads(raw)), n, rounds)
    after = cpu_us(lambda: Message.from_json(raw), n, rounds)
    rows.append(("Message.from_json (each history message, per turn)", before, after))
    return rows


def routing_rows(n: int, rounds: int) -> list[tuple[str, float, float]]:
    from starlette.routing import Match

    from gateway.api.routing import fixed_paths
    from gateway.app import ROUTES

    table = fixed_paths(ROUTES)
    rows = []
    for path in ("/v1/chat/completions", "/api/conversation/stream_chat"):
        scope = {"type": "http", "path": path, "root_path": "", "method": "POST"}

        def walk(scope: dict[str, str] = scope) -> object:
            return next(r for r in ROUTES if r.matches(scope)[0] is Match.FULL)

        def fixed(scope: dict[str, str] = scope) -> object:
            route = table[scope["path"]]
            return route if route.matches(scope)[0] is Match.FULL else walk(scope)

        rows.append(
            (f"find the route of POST {path}", cpu_us(walk, n, rounds), cpu_us(fixed, n, rounds))
        )
    return rows


class _Frames:
    """A response of one start and `frames` body sends, as a stream's SSE response makes."""

    def __init__(self, frames: int) -> None:
        self.frames = frames

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(self.frames):
            await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def dispatch_rows(n: int, rounds: int) -> list[tuple[str, float, float]]:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from gateway.api.routing import FixedPathRouter
    from gateway.app import middleware
    from gateway.observability import Metrics

    async def endpoint(request: Any) -> Any:
        return _Frames(20)

    def app(direct: bool) -> Any:
        made = Starlette(middleware=middleware(load_settings(env={}), Metrics()))
        made.router = FixedPathRouter(routes=[Route("/stream", endpoint, methods=["POST"])])
        if not direct:
            made.router.plain = dict.fromkeys(made.router.plain)  # route.handle, as Starlette
        return made

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope = {
        "type": "http", "method": "POST", "path": "/stream", "raw_path": b"/stream",
        "root_path": "", "headers": [], "query_string": b"", "scheme": "http",
        "server": ("bench", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }  # fmt: skip

    def serve(made: Any) -> Callable[[int], Awaitable[object]]:
        return lambda _: made(dict(scope, state={}), receive, send)

    async def both() -> tuple[float, float]:
        return (
            await acpu_us(serve(app(False)), n // 4, rounds),
            await acpu_us(serve(app(True)), n // 4, rounds),
        )

    before, after = asyncio.run(both())
    return [("a fixed route's streamed response (20 body sends)", before, after)]


_GC_PROBE = """
import gc, time
import gateway.app, providers.openai, providers.anthropic
from gateway.policy.defaults import default_policies
from gateway.policy.engine import PolicySet
PolicySet(default_policies())
gc.collect()
def full_pass():
    t0 = time.process_time_ns(); gc.collect(); return (time.process_time_ns() - t0) / 1000
before = min(full_pass() for _ in range(ROUNDS))
gc.freeze()
after = min(full_pass() for _ in range(ROUNDS))
print(len(gc.get_objects()) + gc.get_freeze_count(), before, after)
"""


def gc_rows(rounds: int) -> list[tuple[str, float, float]]:
    out = subprocess.run(
        [sys.executable, "-c", _GC_PROBE.replace("ROUNDS", str(rounds))],
        capture_output=True,
        text=True,
        check=True,
    )
    objects, before, after = out.stdout.split()
    name = f"a full collection over the start-up heap ({int(objects):,} objects)"
    return [(name, float(before), float(after))]


_CALLS = itertools.count()  # each call its own conversation, across every measurement


async def acpu_us(fn: Callable[[int], Awaitable[object]], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time_ns()
        for _ in range(n):
            await fn(next(_CALLS))
        best = min(best, (time.process_time_ns() - t0) / n / 1000)
    return best


def _message(cid: str, mid: str, role: str) -> Message:
    return Message(
        id=mid,
        conversation_id=cid,
        role=role,
        content="Benchmark prompt: how does a gateway keep time to first token low?",
        status="complete",
        created_at=int(time.time() * 1000),
        model_id="openai-50",
        user_id="alice",
        input_tokens=40,
        output_tokens=50,
    )


def _turn_steps(store: Store) -> dict[str, Callable[[int], Awaitable[object]]]:
    """Each of a turn's round trips, on a fresh conversation per call (no history)."""
    t = store.turns

    async def load(i: int) -> object:
        return await t.load_context(f"c{i}", "s1", 1000)

    async def begin(i: int) -> object:
        return await t.begin(
            _message(f"c{i}", f"u{i}", "user"),
            answer_id=f"a{i}",
            lock_value=f"w:a{i}",
            lock_ttl_ms=600_000,
            start_entry=["t", "start", "s", "0", "d", "{}"],
            log_ttl_s=3600,
        )

    async def end(i: int) -> object:
        return await t.end(
            _message(f"c{i}", f"a{i}", "assistant"),
            Tally("org-1", "key-1", "ws-1"),
            lock_value=f"w:a{i}",
            log=True,
            log_entries=[("c", "1", '["token"]')],
            end_data="{}",
            log_ttl_s=3600,
        )

    return {"load_context": load, "begin": begin, "end": end}


async def _redis_rows(url: str, n: int, rounds: int) -> list[tuple[str, float, float]]:
    store = Store(client.connect(url), durability=Durability(replicas=0))
    steps = _turn_steps(store)
    steps["ping"] = lambda i: store.ping()  # a direct turn's before its upstream
    # redis-py's Pipeline; a Batch on a connection of redis-py's pool; a Batch on the Lane
    modes = {"pipeline": (_pipeline, _no_lane), "pooled": (batch.batch, _no_lane)}
    modes["lane"] = (batch.batch, batch.lane)
    measured: dict[str, list[float]] = {name: [] for name in steps}
    pings = []
    try:
        for made, shared in modes.values():
            setattr(turns, "batch", made)  # noqa: B010
            setattr(store_module, "batch", made)  # noqa: B010
            setattr(batch, "lane", shared)  # noqa: B010
            for name, step in steps.items():
                await acpu_us(step, 200, 1)  # connections, scripts
                measured[name].append(await acpu_us(step, n, rounds))
            await store.redis.flushall()
        pings.append(await acpu_us(lambda i: store.redis.ping(), n, rounds))
        evals = await _eval_rows(store, n, rounds)
    finally:
        setattr(turns, "batch", batch.batch)  # noqa: B010
        setattr(store_module, "batch", batch.batch)  # noqa: B010
        setattr(batch, "lane", lane.lane)  # noqa: B010
        await store.aclose()
    trips = [name for name in steps if name != "ping"]
    rows = [(f"a turn's {name} round trip", *measured[name][:2]) for name in trips]
    total = [sum(measured[name][k] for name in trips) for k in (0, 1, 2)]
    rows.append(("  the turn's three round trips together", total[0], total[1]))
    rows += [
        (f"a turn's {name} round trip: pooled (before), the Lane (after)", *measured[name][1:])
        for name in trips
    ]
    rows.append(("  the turn's three round trips together, on the Lane", total[1], total[2]))
    rows.append(
        ("a direct turn's PING: redis-py's ping(), the Lane's", pings[0], measured["ping"][2])
    )
    return rows + evals


def _no_lane(redis: object) -> None:
    return None


def _pair(found: list[float]) -> tuple[float, float]:
    return found[0], found[1]


def _pipeline(redis: object) -> object:
    return redis.pipeline(transaction=False)  # type: ignore[attr-defined]


async def _eval_rows(store: Store, n: int, rounds: int) -> list[tuple[str, float, float]]:
    """The turn's three round trips (three scripts) with each script queued as EVAL of its
    body (before) against EVALSHA of its loaded SHA (after)."""
    steps = _turn_steps(store)
    shas = {}
    for body in (turns._BEGIN_TURN, turns._END_TURN, usage_module._COUNT_ONCE):  # noqa: SLF001
        shas[body] = await store.redis.script_load(body)
    queue = scripts.Script.queue

    def by_sha(self: scripts.Script, pipe: Any, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(shas[self.body], len(keys), *keys, *args)

    async def turn(i: int) -> None:
        for step in steps.values():
            await step(i)

    measured = []
    try:
        for how in (queue, by_sha):
            scripts.Script.queue = how  # type: ignore[method-assign]
            await acpu_us(turn, 200, 1)
            measured.append(await acpu_us(turn, n, rounds))
    finally:
        scripts.Script.queue = queue  # type: ignore[method-assign]
    return [("  the same with EVALSHA, not the scripts' bodies (not adopted)", *_pair(measured))]


def redis_rows(n: int, rounds: int) -> list[tuple[str, float, float]]:
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="levers-")) / "redis", appendonly=False)
    server.start()
    try:
        if (os.cpu_count() or 1) > 1:  # the server on the other core, as in the bench
            os.sched_setaffinity(server.process.pid, {1})  # type: ignore[union-attr]
            os.sched_setaffinity(0, {0})
        return asyncio.run(_redis_rows(server.url, max(200, n // 10), rounds))
    finally:
        server.stop()


def _history_cpu_us(
    parse: Callable[[str], Message], raws: list[str], calls: int, rounds: int
) -> float:
    """CPU per turn reading `raws` back. Each LRANGE reply is a new str, hashed and compared
    anew, so every call gets fresh copies, made before the clock starts."""
    best = float("inf")
    for _ in range(rounds):
        replies = iter([[raw.encode().decode() for raw in raws] for _ in range(calls)])
        t0 = time.process_time_ns()
        for _ in range(calls):
            [parse(raw) for raw in next(replies)]
        best = min(best, (time.process_time_ns() - t0) / calls / 1000)
    return best


def history_rows(n: int, rounds: int) -> list[tuple[str, float, float]]:
    rows = []
    for count in (8, 200):
        raws = [
            _message("c" * 26, f"m{i:025}", ("user", "assistant")[i % 2]).to_json()
            for i in range(count)
        ]
        parsed = ParsedMessages()
        for raw in raws:
            parsed(raw)
        calls = max(1, n // count)
        before = _history_cpu_us(Message.from_json, raws, calls, rounds)
        after = _history_cpu_us(parsed, raws, calls, rounds)
        rows.append((f"a turn's history of {count} messages parsed", before, after))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = (
        jwt_rows(args.n, args.rounds)
        + json_rows(args.n, args.rounds)
        + routing_rows(args.n, args.rounds)
        + dispatch_rows(args.n, args.rounds)
        + gc_rows(args.rounds)
        + history_rows(args.n, args.rounds)
    )
    rows += redis_rows(args.n, args.rounds)
    width = max(len(r[0]) for r in rows)
    print(f"{'CPU per call':<{width}}  {'before':>10}  {'after':>10}  change")
    for name, before, after in rows:
        change = f"{(after - before) / before * 100:+.0f} %" if before else ""
        print(f"{name:<{width}}  {before:>8.2f}µs  {after:>8.2f}µs  {change}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
