"""CPU per stream of the layers under the gateway, measured apart: the provider adapters
(the official SDKs' low-level post() as providers/ drive them, over httpx2's own transport and
over providers.transport.LeanTransport), the SDKs' create() path they
used before, the SDK's request-body transform alone, plain httpx2, and a raw keep-alive HTTP
client as the floor. The fake upstream runs in its own process, so the CPU time counted here
is the client's only; each figure is the best of --rounds rounds (the machine is shared).

    python -m bench.micro [--streams 300] [--tokens 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable

from bench.harness import HOST, upstream_apart
from bench.loadgen import OPENAI, Connection, Recorder, http_request


async def per_call(
    fn: Callable[[], Awaitable[object]], n: int, *, rounds: int = 1, warmup: int = 20
) -> float:
    """CPU microseconds per call of fn (process time: not disturbed by other processes), the
    best of `rounds` rounds of n calls (the round least disturbed by the rest of the machine)."""
    for _ in range(warmup):
        await fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            await fn()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


async def measure(  # noqa: C901  # one benchmark's list of measurements, each guarded
    port: int, n: int, tokens: int, rounds: int = 1
) -> dict[str, float]:
    def timed(fn: Callable[[], Awaitable[object]], calls: int) -> Awaitable[float]:
        return per_call(fn, calls, rounds=rounds)

    from providers.base import ChatMessage, ChatRequest, ModelSpec

    out: dict[str, float] = {}
    model = f"bench/tokens={tokens}"
    request = ChatRequest(model=model, messages=[ChatMessage("user", "How do gateways stream?")])

    async def drain(provider: object) -> None:
        async for _ in provider.stream(request):  # type: ignore[attr-defined]
            pass

    # each adapter over httpx2's own transport (httpcore2 + h11 + anyio), then over
    # providers.transport.LeanTransport (asyncio + httptools), the adapters' default
    for name, transport in itertools.product(("openai", "anthropic"), ("httpx", "lean")):
        try:
            from providers import build_provider

            base = f"http://{HOST}:{port}" + ("/v1" if name == "openai" else "")
            provider = build_provider(
                ModelSpec(
                    id=name,
                    provider=name,
                    model=model,  # type: ignore[arg-type]
                    base_url=base,
                    api_key="sk-bench",
                    options={"max_retries": 0, "transport": transport},
                )
            )
            under = "LeanTransport" if transport == "lean" else "httpx2's transport"
            out[f"providers.{name} adapter over {under}, one {tokens}-token stream"] = await timed(
                lambda p=provider: drain(p), n
            )
            await provider.aclose()
        except Exception as exc:  # noqa: BLE001 - say so, measure the rest
            print(f"micro: {name} adapter over {transport} failed: {exc!r}", file=sys.stderr)

    from providers import wire

    async def parse(body: object) -> None:
        async for _, data in wire.sse_events(body):  # type: ignore[arg-type]
            wire.json_object(data) if data != b"[DONE]" else None

    messages = [{"role": "user", "content": "How do gateways stream?"}]
    try:
        # the path the adapters took before they posted through the SDK's low-level post():
        # create() through with_streaming_response (openai: with its per-request TypedDict
        # transform of the body), the same parsing of the raw body
        import anthropic
        import openai

        oai = openai.AsyncOpenAI(
            api_key="sk-bench", base_url=f"http://{HOST}:{port}/v1", max_retries=0
        )
        ant = anthropic.AsyncAnthropic(
            api_key="sk-bench", base_url=f"http://{HOST}:{port}", max_retries=0
        )

        async def oai_create() -> None:
            async with oai.chat.completions.with_streaming_response.create(
                model=model,
                messages=messages,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            ) as response:
                await parse(response.iter_bytes())

        async def ant_create() -> None:
            async with ant.messages.with_streaming_response.create(
                model=model,
                max_tokens=1024,
                messages=messages,
                stream=True,  # type: ignore[arg-type]
            ) as response:
                await parse(response.iter_bytes())

        out[f"openai SDK create() (the adapter before), one {tokens}-token stream"] = await timed(
            oai_create, n
        )
        out[
            f"anthropic SDK create() (the adapter before), one {tokens}-token stream"
        ] = await timed(ant_create, n)
        await oai.close()
        await ant.close()
    except Exception as exc:  # noqa: BLE001 - say so, measure the rest
        print(f"micro: SDK create() not measured: {exc!r}", file=sys.stderr)

    try:
        from openai._utils import async_maybe_transform
        from openai.types.chat import completion_create_params

        params = {
            "model": model,
            "messages": [{"role": "user", "content": "How do gateways stream?"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        out["openai SDK request-body transform alone"] = await timed(
            lambda: async_maybe_transform(
                params, completion_create_params.CompletionCreateParamsStreaming
            ),
            n * 4,
        )
    except Exception as exc:  # noqa: BLE001 - an SDK without this private helper
        print(f"micro: transform not measured: {exc!r}", file=sys.stderr)

    try:
        import httpx2

        body = {
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": messages,
        }
        async with httpx2.AsyncClient(base_url=f"http://{HOST}:{port}/v1") as client:

            async def plain() -> None:
                async with client.stream("POST", "/chat/completions", json=body) as response:
                    await parse(response.aiter_bytes())

            out[
                f"httpx2 without the SDK + providers.wire parsing, one {tokens}-token stream"
            ] = await timed(plain, n)
    except Exception as exc:  # noqa: BLE001 - say so, measure the rest
        print(f"micro: plain httpx2 not measured: {exc!r}", file=sys.stderr)

    conn = await Connection.open(HOST, port)
    raw = http_request(
        "POST",
        "/v1/chat/completions",
        host=f"{HOST}:{port}",
        body={
            "model": model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "How do gateways stream?"}],
        },
    )

    async def lean() -> None:
        await conn.request(raw, Recorder(OPENAI))

    out[f"raw keep-alive HTTP/1.1 client (bench.loadgen), one {tokens}-token stream"] = await timed(
        lean, n
    )
    conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.micro", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with upstream_apart("micro-upstream") as port:
        try:
            import uvloop

            results = uvloop.run(measure(port, args.streams, args.tokens, max(1, args.rounds)))
        except ImportError:
            results = asyncio.run(measure(port, args.streams, args.tokens, max(1, args.rounds)))
    width = max(len(k) for k in results)
    for name, us in results.items():
        print(f"{name.ljust(width)}  {us:9.0f} µs CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
