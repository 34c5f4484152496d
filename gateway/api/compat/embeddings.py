"""The OpenAI-compatible POST /v1/embeddings: the model's upstream embeds the inputs, after
the rate limits and the pre-stage policies on every input (gateway/turn/direct.py); the
tokens count in the org's usage like a turn's. Vectors as floats or, as the official SDK
asks by default, base64 of little-endian float32. A model without embeddings (Anthropic,
demo) answers 400 in OpenAI's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.api.compat import common as compat
from gateway.api.compat import openai as openai_compat
from gateway.api.compat.direct import direct_calls
from gateway.api.inputs import Body, gateway_of, ok, read_body, refused
from gateway.api.schemas import openai_embeddings as answers
from providers.base import EmbeddingRequest

MAX_TOKEN_ID = 1 << 24  # larger than any tokenizer's vocabulary


class EmbeddingsRequest(Body):
    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] | list[list[int]] | list[int] = Field(
        description="a text, texts, a token array or token arrays (at most 2048 items)",
    )
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = Field(default=None, max_length=256)


def inputs_of(body: EmbeddingsRequest) -> list[str | list[int]]:
    value = body.input
    if isinstance(value, str):
        items: list[str | list[int]] = [value]
    elif value and all(isinstance(v, int) for v in value):
        items = [list(value)]  # type: ignore[arg-type]  # one token array
    else:
        items = list(value)  # type: ignore[arg-type]
    if not items:
        raise refused(("input",), "must not be empty", code="invalid_value")
    for i, item in enumerate(items):
        if not item:
            raise refused(("input", i), "must not be empty", code="invalid_value")
        if not isinstance(item, str) and any(t < 0 or t >= MAX_TOKEN_ID for t in item):
            raise refused(("input", i), "token ids must be in [0, 2^24)", code="invalid_value")
    return items


@compat.provider_errors(openai_compat.error_response)
async def embeddings(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, EmbeddingsRequest)
    items = inputs_of(body)
    gw = gateway_of(request)
    calls = direct_calls(gw)
    admission = await calls.admit(caller, body.model)
    wanted = EmbeddingRequest(
        model=body.model,
        inputs=items,
        dimensions=body.dimensions,
        encoding_format=body.encoding_format,
        user=body.user,
    )
    result = await calls.embed(admission, wanted)
    gw.audit.record(
        admission.org_id,
        audit.PROMPT_SENT,
        caller,
        message_id=admission.id,
        model=admission.model.id,
        route="embeddings",
        inputs=len(items),
    )
    answer = answers.EmbeddingList(
        data=[answers.Embedding(index=i, embedding=v) for i, v in enumerate(result.vectors)],
        model=body.model,
        usage=answers.EmbeddingUsage(
            prompt_tokens=result.input_tokens, total_tokens=result.input_tokens
        ),
    )
    return ok(answer, headers=admission.rate_headers)


routes = [Route("/v1/embeddings", embeddings, methods=["POST"])]
