"""Any other `/v1/...` path: 404 (or 405 for a known path's other method) in the shape of the
API the caller speaks, Anthropic's when the request carries `anthropic-version`, else
OpenAI's, so the official SDKs raise NotFoundError with our message instead of "404 status
code (no body)".

The fallback matches after every real route, asks nothing of Redis and needs no token: the
routes that exist are public (the OpenAPI document lists them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import openai as openai_compat
from gateway.errors import GatewayError, NotFound

PREFIX = "/v1/"


def answer(request: Request, exc: GatewayError) -> Response:
    if anthropic_compat.VERSION_HEADER in request.headers:
        return anthropic_compat.error_response(request, exc)
    return openai_compat.error_response(request, exc)


class UnknownV1(BaseRoute):
    """Matches every /v1/ path the routes in `known` do not serve. A path one of them serves
    with another method answers 405 with its Allow header."""

    def __init__(self, known: Sequence[BaseRoute]) -> None:
        self.known = known

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)  # the fallback has no URL of its own

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        allowed = sorted(
            {
                method
                for route in self.known
                if isinstance(route, Route) and route.matches(scope)[0] is Match.PARTIAL
                for method in route.methods or ()
            }
        )
        method, path = scope["method"], scope["path"]
        if allowed:
            exc = GatewayError(
                f"{method} is not allowed on {path[:200]}; use {', '.join(allowed)}",
                code="method_not_allowed",
                status=405,
                headers={"Allow": ", ".join(allowed)},
            )
        else:
            exc = NotFound(
                f"no route for {method} {path[:200]}: this gateway serves /v1/chat/completions, "
                "/v1/responses, /v1/embeddings, /v1/completions, /v1/models, /v1/messages and "
                "/v1/messages/count_tokens",
                code="unknown_url",
            )
        await answer(request, exc)(scope, receive, send)
