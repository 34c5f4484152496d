"""create_app(settings) -> Starlette. The lifespan opens and closes Redis and the provider
clients; handlers reach them through `request.app.state.gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.access.api_keys import ApiKeys
from gateway.access.audit import Audit, audited_gateway_error
from gateway.access.auth import Authenticator
from gateway.access.repositories import Repositories
from gateway.access.usage import UsageView
from gateway.access.visibility import Visibility
from gateway.api import (
    admin,
    api_keys,
    conversation_service,
    models,
    pages,
    policies,
    provider_keys,
    repository_style,
    streams,
    usage,
)
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import completions, count_tokens, embeddings, responses, unknown
from gateway.api.compat import openai as openai_compat
from gateway.api.inputs import gateway_of, principal
from gateway.api.routing import FixedPathRouter
from gateway.errors import EXCEPTION_HANDLERS, Forbidden, GatewayError, error_response
from gateway.governance import Governance
from gateway.models.connections import Connections
from gateway.observability import Metrics, RequestMiddleware, configure_logging
from gateway.settings import Settings, load_settings
from gateway.storage.durability import Durability
from gateway.storage.store import Store
from gateway.turn import ChatService
from gateway.turn.live import Live

log = logging.getLogger("gateway")


@dataclass(slots=True)
class Gateway:
    """Everything a request may need, built once per process in the lifespan."""

    settings: Settings
    store: Store
    auth: Authenticator
    chat: ChatService
    live: Live
    governance: Governance
    resume_secret: bytes
    visibility: Visibility
    connections: Connections
    metrics: Metrics
    repositories: Repositories
    audit: Audit
    api_keys: ApiKeys
    usage: UsageView


def open_store(settings: Settings) -> Store:
    """The one Redis client of this worker: a single Redis, a Redis Cluster or a
    Sentinel-managed primary (gateway/storage/client.py)."""
    if not settings.redis_url:
        raise RuntimeError(
            "no Redis URL: `serve` starts an embedded Redis, or set GATEWAY_REDIS_URL"
        )
    durability = Durability(settings.durability_replicas, settings.durability_timeout_ms)
    return Store.connect(settings.redis_url, cluster=settings.redis_cluster, durability=durability)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        async with asyncio.timeout(1.0):
            await gateway_of(request).store.ping()
    except Exception as exc:  # any failure to answer means "not ready"
        return error_response(
            503, "redis_unavailable", f"Redis does not answer: {type(exc).__name__}"
        )
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus text format; the admin token (Prometheus' `authorization` setting)."""
    if not (await principal(request)).is_admin:
        raise Forbidden("metrics are for the platform admin")
    return gateway_of(request).metrics.render()


async def open_gateway(settings: Settings, metrics: Metrics) -> Gateway:
    """Everything one worker needs, connected and started."""
    store = open_store(settings)
    connections = Connections(settings, store)
    try:
        await connections.start()  # a KEK that does not match Redis stops the start here
    except BaseException:
        await store.aclose()
        raise
    auth = Authenticator(settings, store)
    await auth.load()
    resume_secret = await store.credentials.shared_secret("resume")
    live = Live(store, shutdown_grace=settings.shutdown_grace)
    await live.start()
    governance = Governance(settings, store, metrics)
    await governance.start()
    auth.start()
    return Gateway(
        settings=settings,
        store=store,
        auth=auth,
        chat=ChatService(settings, store, connections, metrics, live, governance),
        governance=governance,
        live=live,
        resume_secret=resume_secret,
        visibility=Visibility(store),
        connections=connections,
        metrics=metrics,
        repositories=Repositories(settings, store, connections),
        audit=Audit(store.events),
        api_keys=ApiKeys(store),
        usage=UsageView(store),
    )


async def close_gateway(gw: Gateway) -> None:
    gw.live.stop_all("cancelled")  # streams still open after uvicorn's grace period
    await gw.chat.followers.close()
    await gw.live.close()
    await gw.auth.close()
    await gw.governance.close()
    await gw.connections.close()
    await gw.audit.aclose()
    await gw.store.aclose()


def middleware(settings: Settings, metrics: Metrics) -> list[Middleware]:
    found = [Middleware(RequestMiddleware, metrics=metrics)]
    if settings.cors_origins:
        found.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id"],
                expose_headers=[  # readable by the page's script
                    "Retry-After",
                    "X-Request-Id",
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                ],
                allow_credentials=False,
            )
        )
    return found


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    *conversation_service.routes,
    *streams.routes,
    *repository_style.routes,
    *admin.routes,
    *models.routes,
    *provider_keys.routes,
    *api_keys.routes,
    *usage.routes,
    *policies.routes,
    *openai_compat.routes,
    *anthropic_compat.routes,
    *responses.routes,
    *embeddings.routes,
    *completions.routes,
    *count_tokens.routes,
    *pages.routes,  # /, /docs, /openapi.json, /static: no token
]
ROUTES.append(unknown.UnknownV1(list(ROUTES)))  # any other /v1/ path, in its API's shape


def create_app(settings: Settings) -> Starlette:
    metrics_registry = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gateway = await open_gateway(settings, metrics_registry)
        # what start-up made (the SDKs' type modules, compiled policies: ~250k objects) is
        # kept for good; frozen, the collector no longer walks it (a full pass over it took
        # ~150 ms of the event loop, bench/levers.py lever 4)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await close_gateway(gateway)

    app = Starlette(
        middleware=middleware(settings, metrics_registry),
        # every 403 also leaves an access_denied audit event
        exception_handlers={**EXCEPTION_HANDLERS, GatewayError: audited_gateway_error},
    )
    app.router = FixedPathRouter(ROUTES, lifespan=lifespan)
    return app


def app_from_env() -> Starlette:
    """The factory uvicorn's workers import: settings come from the environment that
    `serve` prepared (config path, embedded Redis URL)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    # `kill -USR1 <worker pid>`: every thread's stack on stderr, and the worker goes on (for
    # a worker that does not stop, or a stream that does not end)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    return create_app(settings)
