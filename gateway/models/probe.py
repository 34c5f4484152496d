"""The connection test of a model: one tiny upstream call (a one-word prompt, one output
token at most), timed, or the provider's error as it reported it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass

from providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    Opened,
    Provider,
    ProviderError,
    TextDelta,
)

PROBE_PROMPT = "ping"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    at: int  # epoch milliseconds
    latency_ms: float | None = None  # until the upstream accepted the request
    first_token_ms: float | None = None
    error_kind: str | None = None  # providers.base.ProviderError kinds, or "timeout"
    error_status: int | None = None
    error: str | None = None

    def to_record(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_record(cls, raw: str) -> ProbeResult:
        return cls(**json.loads(raw))


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


async def probe(provider: Provider, upstream_model: str, *, timeout: float, at: int) -> ProbeResult:
    request = ChatRequest(
        model=upstream_model, messages=[ChatMessage("user", PROBE_PROMPT)], max_output_tokens=1
    )
    started = time.perf_counter()
    latency: float | None = None
    first: float | None = None
    stream = provider.stream(request)
    try:
        async with asyncio.timeout(timeout):
            async for event in stream:
                if type(event) is Opened:
                    latency = _ms(started)
                elif type(event) is TextDelta and first is None:
                    first = _ms(started)
                elif type(event) is Finish:
                    break
    except ProviderError as exc:
        return ProbeResult(
            False, at, latency, first, exc.kind, exc.status, exc.message[:MAX_ERROR_CHARS]
        )
    except TimeoutError:
        return ProbeResult(False, at, latency, first, "timeout", None, f"no answer in {timeout} s")
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
    return ProbeResult(True, at, latency, first)
