"""The Anthropic-compatible POST /v1/messages/count_tokens: the input tokens a Messages
request would cost. On an Anthropic model the upstream's own count; on any other model the
gateway's estimate (four characters a token), marked `"estimated": true`. Rate limits and
the pre-stage policies apply (the text goes upstream); nothing is generated or counted in
the usage. Errors are Anthropic's shape."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import anthropic_request
from gateway.api.compat import common as compat
from gateway.api.compat.direct import direct_calls
from gateway.api.inputs import gateway_of, ok, read_body, refused
from gateway.api.schemas import anthropic_tokens as answers
from providers.base import ChatRequest

# what shapes a reply but not its input: the counting endpoint refuses these, as Anthropic's
OUTPUT_FIELDS = (
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "service_tier",
)


class CountTokensRequest(anthropic_request.MessagesRequest):
    """A Messages request without the output's fields."""

    max_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)  # type: ignore[assignment]  # optional here


def request_of(body: CountTokensRequest) -> ChatRequest:
    """The request as the Messages route reads it (tools, thinking, system, images...)."""
    for name in OUTPUT_FIELDS:
        if name in body.model_fields_set:
            raise refused((name,), "Extra inputs are not permitted")
    request, _ = anthropic_request.to_request(body)
    return request


@compat.provider_errors(anthropic_compat.error_response)
async def count_tokens(request: Request) -> Response:
    caller = await compat.caller(request)
    body = await read_body(request, CountTokensRequest)
    wanted = request_of(body)
    calls = direct_calls(gateway_of(request))
    admission = await calls.admit(caller, body.model)
    counted = await calls.count_tokens(admission, wanted)
    answer = answers.MessageTokensCount(
        input_tokens=counted.input_tokens, estimated=counted.estimated
    )
    headers = {**anthropic_compat.request_id_header(request), **admission.rate_headers}
    return ok(answer, headers=headers)


routes = [Route("/v1/messages/count_tokens", count_tokens, methods=["POST"])]
