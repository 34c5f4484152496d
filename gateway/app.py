"""create_app(settings) -> Starlette. The lifespan opens and closes Redis and the provider
clients; handlers reach them through `request.app.state.gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.auth import Authenticator
from gateway.chat import ChatService
from gateway.conversations import Conversations
from gateway.errors import EXCEPTION_HANDLERS, error_response
from gateway.routes import conversation_service
from gateway.settings import Settings, load_settings
from gateway.store import Store
from providers import build_provider
from providers.base import Provider

log = logging.getLogger("gateway")


@dataclass(slots=True)
class Gateway:
    """Everything a request may need, built once per process in the lifespan."""

    settings: Settings
    store: Store
    auth: Authenticator
    chat: ChatService
    conversations: Conversations
    providers: dict[str, Provider]


def connect_redis(settings: Settings) -> Redis:
    if not settings.redis_url:
        raise RuntimeError("no Redis URL: `serve` starts an embedded Redis, or set GATEWAY_REDIS_URL")
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        async with asyncio.timeout(1.0):
            await request.app.state.gateway.store.ping()
    except Exception as exc:  # any failure to answer means "not ready"
        return error_response(503, "redis_unavailable", f"Redis does not answer: {type(exc).__name__}")
    return JSONResponse({"status": "ready"})


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(connect_redis(settings))
        providers = {
            m.id: build_provider(settings.model_spec(m)) for m in settings.served_models
        }
        auth = Authenticator(settings, store)
        await auth.load()
        app.state.gateway = Gateway(
            settings=settings,
            store=store,
            auth=auth,
            chat=ChatService(settings, store, providers),
            conversations=Conversations(store),
            providers=providers,
        )
        try:
            yield
        finally:
            for provider in providers.values():
                with contextlib.suppress(Exception):
                    await provider.aclose()
            await store.aclose()

    middleware = []
    if settings.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id"],
            allow_credentials=False,
        ))
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *conversation_service.routes,
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """The factory uvicorn's workers import: settings come from the environment that
    `serve` prepared (config path, embedded Redis URL)."""
    return create_app(load_settings())
