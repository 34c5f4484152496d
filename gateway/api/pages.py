"""The pages a browser opens without a token: the playground at /, the admin page at /admin
(its data come from the API, with the token entered in it), the API docs at /docs, the
OpenAPI document at /openapi.json, and their scripts and styles under /static/."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.api.openapi import build_document

STATIC = Path(__file__).resolve().parent.parent / "static"  # gateway/static
# the pages load only their own scripts and talk only to their own origin
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def playground(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def admin(request: Request) -> Response:
    return FileResponse(STATIC / "admin.html", headers=PAGE_HEADERS)


async def docs(request: Request) -> Response:
    return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)


async def openapi_json(request: Request) -> Response:
    """Built once per app, from the routes the app really serves."""
    body = getattr(request.app.state, "openapi_json", None)
    if body is None:
        body = json.dumps(build_document(request.app.routes), separators=(",", ":")).encode()
        request.app.state.openapi_json = body
    return Response(body, media_type="application/json")


routes = [
    Route("/", playground, methods=["GET"]),
    Route("/admin", admin, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
