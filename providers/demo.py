"""The built-in `demo` model: a local, deterministic text generator that streams like a
real model (word-sized chunks with pacing, usage at the end), so `serve` works with no keys."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator

from providers.base import (
    EXTENDED_FIELDS,
    OPENED,
    ChatRequest,
    EmbeddingRequest,
    Embeddings,
    Finish,
    FinishReason,
    ModelSpec,
    ProviderEvent,
    TextDelta,
    TextPart,
    TokenCount,
    UnsupportedParameter,
    Usage,
    estimate_request_tokens,
    estimate_tokens,
)

_SENTENCES = (
    "A gateway keeps every turn of a conversation, so the model always sees the context.",
    "Streaming sends each token as soon as it exists instead of waiting for the whole answer.",
    "Policies are checked before the prompt leaves, while the answer streams, and at the end.",
    "Token counts are recorded with every message, which makes usage easy to follow.",
    "Redis holds the conversations, so any worker can serve the next request.",
    "Server-sent events are plain text over HTTP, which every browser understands.",
    "Short answers arrive quickly; long ones arrive steadily, one word after another.",
    "This reply comes from the built-in demo model; configure a real provider to go further.",
)


class DemoProvider:
    """Plain text only: every option beyond the limit and the temperature (which it has no
    use for) is refused, as a real adapter refuses what its API cannot do."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.pace = float(spec.options.get("pace_ms", 20.0)) / 1000.0
        self.answer_words = int(spec.options.get("answer_words", 60))

    def answer(self, request: ChatRequest) -> list[str]:
        last = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        seed = int.from_bytes(hashlib.sha256(last.encode()).digest()[:8], "big")
        rng = random.Random(seed)
        topic = " ".join(last.split()[:8]).rstrip("?.!,") or "nothing in particular"
        words = f"You asked: {topic}.".split()
        while len(words) < self.answer_words:
            words += rng.choice(_SENTENCES).split()
        words = words[: self.answer_words]
        return [w + " " for w in words[:-1]] + [words[-1]]

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        _refuse_extensions(request)
        chunks = self.answer(request)
        limit = request.max_output_tokens or self.spec.max_output_tokens
        reason: FinishReason = "stop"
        if limit is not None and len(chunks) > limit:
            chunks, reason = chunks[:limit], "length"
        input_tokens = sum(estimate_tokens(m.text) + 4 for m in request.messages)
        yield OPENED
        for chunk in chunks:
            if self.pace:
                await asyncio.sleep(self.pace)
            yield TextDelta(chunk)
        yield Usage(input_tokens, len(chunks))
        yield Finish(reason)

    async def count_tokens(self, request: ChatRequest) -> TokenCount:
        _refuse_extensions(request)
        return TokenCount(estimate_request_tokens(request), estimated=True)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        raise UnsupportedParameter("model", "the demo model has no embeddings")

    async def aclose(self) -> None:
        return None


def _refuse_extensions(request: ChatRequest) -> None:
    for name in EXTENDED_FIELDS:
        if getattr(request, name) != _DEFAULTS[name]:
            raise UnsupportedParameter(name, "the demo model writes plain text only")
    for i, m in enumerate(request.messages):
        parts = () if isinstance(m.content, str) else m.content
        if m.tool_calls or m.role == "tool" or any(type(p) is not TextPart for p in parts):
            raise UnsupportedParameter(
                f"messages[{i}]", "the demo model reads plain text turns only"
            )


_DEFAULTS = {name: getattr(ChatRequest("", []), name) for name in EXTENDED_FIELDS}
