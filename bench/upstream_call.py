"""CPU per upstream call in the adapters: the SDK's own `post()` against providers.sdk_calls'
SdkCalls, for OpenAI and Anthropic, each call a streamed answer of N tokens read to its end.

Runs the fast fake upstream (bench/upstream.py) pinned to core 1 and the calls here on core 0,
one at a time, through the adapters' own clients (LeanTransport); the process CPU time over a
batch of calls, per call, the least over the rounds (the two ways alternate within each round).

    python -m bench.upstream_call [--n 500] [--rounds 3] [--tokens 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from bench.harness import upstream_apart
from providers.anthropic import AnthropicProvider
from providers.base import ModelSpec
from providers.openai import OpenAIProvider

Post = Callable[[], Awaitable[httpx2.Response]]


def _posts(provider: Any, path: str, body: dict[str, Any], options: Any) -> dict[str, Post]:
    def sdk() -> Awaitable[httpx2.Response]:
        return provider._client.post(  # type: ignore[no-any-return]
            path, cast_to=httpx2.Response, body=body, options=options or {}, stream=True
        )

    def calls() -> Awaitable[httpx2.Response]:
        return provider._calls.post(path, body=body, options=options, stream=True)  # type: ignore[no-any-return]

    return {"SDK post": sdk, "SdkCalls": calls}


async def _batch(post: Post, n: int) -> float:
    """µs of process CPU per call, body read to the end and closed."""
    started = time.process_time()
    for _ in range(n):
        response = await post()
        async for _chunk in response.aiter_bytes():
            pass
        await response.aclose()
    return (time.process_time() - started) / n * 1e6


async def measure(port: int, n: int, rounds: int, tokens: int) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}"
    model = f"bench/tokens={tokens}"
    messages = [{"role": "user", "content": "Say something about the gateway."}]
    providers: list[tuple[str, Any, str, dict[str, Any], Any]] = []
    for kind, make, url, path, options in (
        (
            "OpenAI",
            OpenAIProvider,
            base + "/v1",
            "/chat/completions",
            {"security": {"bearer_auth": True}},
        ),
        ("Anthropic", AnthropicProvider, base, "/v1/messages", None),
    ):
        spec = ModelSpec(
            id=kind,
            provider=kind.lower(),
            model=model,
            api_key="sk-bench",
            base_url=url,
            options={"max_retries": 2},
        )
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "max_tokens": 256,
        }
        if kind == "OpenAI":
            body["stream_options"] = {"include_usage": True}
        providers.append((kind, make(spec), path, body, options))
    best: dict[str, float] = {}
    try:
        for _kind, provider, path, body, options in providers:
            for post in _posts(provider, path, body, options).values():
                await _batch(post, 20)  # warm: connections, templates, the platform headers
        for _ in range(rounds):
            for kind, provider, path, body, options in providers:
                for name, post in _posts(provider, path, body, options).items():
                    us = await _batch(post, n)
                    key = f"{kind} {name}"
                    best[key] = min(best.get(key, us), us)
    finally:
        for _kind, provider, *_ in providers:
            await provider.aclose()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.upstream_call", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args(argv)
    with upstream_apart("upstream-call") as port:
        results = asyncio.run(measure(port, args.n, max(1, args.rounds), args.tokens))
    rounds = f"least of {args.rounds} rounds of {args.n}"
    print(f"CPU per upstream call, streamed {args.tokens} tokens, {rounds}")
    for kind in ("OpenAI", "Anthropic"):
        sdk, ours = results[f"{kind} SDK post"], results[f"{kind} SdkCalls"]
        saved = sdk - ours
        print(f"{kind:9}  SDK post {sdk:6.0f} µs   SdkCalls {ours:6.0f} µs   saved {saved:5.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
