"""The router's dict of fixed paths sends every request where Starlette's own walk over the
routes would, for every route, path and method of the app."""

from __future__ import annotations

import pytest
from starlette.routing import Match, Route

from gateway.api.routing import FixedPathRouter, fixed_paths
from gateway.app import ROUTES, create_app
from gateway.settings import load_settings

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def walked(path: str, method: str):
    """Starlette's choice: the first route that takes the request whole."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    return next((r for r in ROUTES if r.matches(scope)[0] is Match.FULL), None)


def test_every_fixed_path_goes_where_the_walk_would():
    table = fixed_paths(ROUTES)
    assert "/v1/chat/completions" in table and "/api/conversation/stream_chat" in table
    paths = {getattr(r, "path", "") for r in ROUTES} | {"/v1/chat/completions/", "/nothing"}
    checked = 0
    for path in paths:
        for method in METHODS:
            route = table.get(path)
            scope = {"type": "http", "path": path, "root_path": "", "method": method}
            if route is not None and route.matches(scope)[0] is Match.FULL:
                assert route is walked(path, method), (path, method)
                checked += 1
    assert checked >= len(table)  # each entry answered at least its own method


def test_a_path_an_earlier_route_takes_is_left_to_the_walk():
    async def endpoint(request):  # never called
        raise AssertionError

    catch_all = Route("/v1/{rest:path}", endpoint, methods=["POST"])
    fixed = Route("/v1/chat/completions", endpoint, methods=["POST"])
    other = Route("/healthz", endpoint, methods=["GET"])
    assert fixed_paths([catch_all, fixed, other]) == {"/healthz": other}
    assert fixed_paths([fixed, catch_all]) == {"/v1/chat/completions": fixed}


async def _call(app, path, method="POST"):
    """The messages the app sends for one request (a body of `{}`)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "root_path": "", "headers": [], "query_string": b"", "scheme": "http",
        "server": ("test", 80), "client": ("127.0.0.1", 1), "http_version": "1.1",
        "asgi": {"version": "3.0"}, "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/chat/completions", 405), ("GET", "/healthz", 200), ("GET", "/nothing", 404)],
)
async def test_the_app_router_answers_as_before(method, path, status):
    app = create_app(load_settings(env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1"}))
    assert isinstance(app.router, FixedPathRouter)
    sent = await _call(app, path, method)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == status


def _app_of(routes, handlers):
    """A Starlette app on FixedPathRouter, as create_app builds it (exception handlers at
    the app's ExceptionMiddleware)."""
    from starlette.applications import Starlette

    app = Starlette(exception_handlers=handlers)
    app.router = FixedPathRouter(routes=routes)
    return app


async def test_a_plain_endpoint_is_called_directly_and_its_errors_get_the_same_answer():
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse

    from gateway.api.routing import plain_endpoint

    class Refused(Exception):
        pass

    async def refuse(request):
        assert request.url.path in ("/fixed", "/walked/x", "/wrapped")
        raise Refused("no")

    async def on_refused(request, exc):
        return JSONResponse({"error": str(exc), "path": request.url.path}, status_code=418)

    seen = []

    class Tag:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            seen.append(scope["path"])
            await self.app(scope, receive, send)

    fixed = Route("/fixed", refuse, methods=["POST"])
    walked_route = Route("/walked/{x}", refuse, methods=["POST"])
    wrapped = Route("/wrapped", refuse, methods=["POST"], middleware=[Middleware(Tag)])
    assert plain_endpoint(fixed) is refuse
    assert plain_endpoint(wrapped) is None  # its middleware must run: Starlette serves it
    app = _app_of([fixed, walked_route, wrapped], {Refused: on_refused})
    assert app.router.plain == {"/fixed": refuse, "/wrapped": None}

    direct = await _call(app, "/fixed")
    through_walk = await _call(app, "/walked/x")
    assert direct[0]["status"] == through_walk[0]["status"] == 418
    assert direct[1]["body"] == b'{"error":"no","path":"/fixed"}'
    assert through_walk[1]["body"] == b'{"error":"no","path":"/walked/x"}'
    answered = await _call(app, "/wrapped")
    assert answered[0]["status"] == 418 and seen == ["/wrapped"]
    assert (await _call(app, "/fixed", "GET"))[0]["status"] == 405  # the walk's 405
