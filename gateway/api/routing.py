"""Starlette's router with a dict in front: a request whose path is one of the routes'
fixed paths goes straight to that route, where Starlette would try every route's regex in
order first (/v1/chat/completions is the 42nd of 56: about 20 µs a request,
bench/levers.py). Everything else (a path with parameters, another method's 405, a
trailing-slash redirect, a 404) takes Starlette's own walk, unchanged.

A fixed route whose endpoint is a plain async function is called directly: Starlette's
`request_response` would wrap it in a second exception-handling layer (a wrapper around
every `send` of the response, two more coroutines per request) that repeats what the
app's ExceptionMiddleware above the router does with the same handlers, so an error raised
by the endpoint gets the same response either way."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send


def fixed_paths(routes: Sequence[BaseRoute]) -> dict[str, Route]:
    """Each route of a fixed path that Starlette's walk would reach for its own methods: no
    route before it takes that path, in any method (else the walk decides, as before)."""
    table: dict[str, Route] = {}
    for i, route in enumerate(routes):
        if not isinstance(route, Route) or route.param_convertors or route.path in table:
            continue
        methods = route.methods or {"GET"}
        if not any(_takes(earlier, route.path, m) for earlier in routes[:i] for m in methods):
            table[route.path] = route
    return table


Endpoint = Callable[[Request], Awaitable[Response]]


def plain_endpoint(route: Route) -> Endpoint | None:
    """The route's endpoint when Starlette serves it with `request_response` alone: an async
    function, no route middleware or body limit wrapped around it."""
    endpoint = route.endpoint
    if not inspect.iscoroutinefunction(endpoint):
        return None
    if getattr(route.app, "__qualname__", "") != "request_response.<locals>.app":
        return None
    return endpoint


def _takes(route: BaseRoute, path: str, method: str) -> bool:
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    return route.matches(scope)[0] is not Match.NONE


class FixedPathRouter(Router):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fixed = fixed_paths(self.routes)
        self.plain = {path: plain_endpoint(route) for path, route in self.fixed.items()}

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.fixed.get(scope["path"])
        # the path is the route's own, so only its methods are asked (what Route.matches asks
        # once its regex matched): another method is the walk's to answer (405)
        if route is None or (route.methods and scope["method"] not in route.methods):
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = dict(scope.get("path_params", {}))
        endpoint = self.plain[scope["path"]]
        if endpoint is None:
            await route.handle(scope, receive, send)
            return
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)
