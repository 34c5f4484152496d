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
- the collector's full pass over what a worker made at start-up (the SDKs' type modules,
  the compiled default policies), in a fresh interpreter: walked (before) against frozen
  by gc.freeze() in the app's lifespan (gateway/app.py). A full pass runs whenever enough
  objects survived since the last one, so a busy worker paid it every few thousand streams.

    python -m bench.levers [--n 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import jwt
import orjson

from gateway.access.auth import Authenticator
from gateway.api.sse import json_string
from gateway.settings import load_settings
from gateway.storage.records import Message
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = (
        jwt_rows(args.n, args.rounds)
        + json_rows(args.n, args.rounds)
        + routing_rows(args.n, args.rounds)
        + gc_rows(args.rounds)
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'CPU per call':<{width}}  {'before':>10}  {'after':>10}  change")
    for name, before, after in rows:
        change = f"{(after - before) / before * 100:+.0f} %" if before else ""
        print(f"{name:<{width}}  {before:>8.2f}µs  {after:>8.2f}µs  {change}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
