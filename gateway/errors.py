"""One error tree, mapped once to the contract's JSON shape:
{"success": false, "code": "<machine code>", "message": "<human text>"}."""

from __future__ import annotations

import json
import logging

from redis.exceptions import ClusterDownError, MasterDownError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("gateway")

Loc = tuple[str | int, ...]  # where in the request a value was refused: ("messages", 0, "content")


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        param: Loc | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # set where the error is raised; OpenAI's error shape reports it
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    code = "validation_error"


class PolicyBlocked(BadRequest):
    code = "policy_blocked"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"


class UpstreamFailed(GatewayError):
    status = 502
    code = "provider_error"


class Unavailable(GatewayError):
    status = 503
    code = "unavailable"


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"success": False, "code": code, "message": message}).encode()


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body(code, message), status, headers, media_type="application/json")


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}


async def handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def handle_redis_down(request: Request, exc: Exception) -> Response:
    """Nothing was recorded, so nothing was sent upstream: the client may simply retry."""
    log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        "redis_unavailable",
        "the gateway cannot reach its store; retry shortly",
        {"Retry-After": "1"},
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


# Redis is away (a lost connection, a timeout, a Cluster or Sentinel failover in progress):
# a 503 the client may retry, in every API's own error shape
REDIS_DOWN: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    MasterDownError,
)

EXCEPTION_HANDLERS = {
    GatewayError: handle_gateway_error,
    HTTPException: handle_http_exception,
    RedisConnectionError: handle_redis_down,
    RedisTimeoutError: handle_redis_down,
    # a Redis Cluster or Sentinel failover in progress: as transient as a lost connection
    ClusterDownError: handle_redis_down,
    TryAgainError: handle_redis_down,
    SlotNotCoveredError: handle_redis_down,
    MasterDownError: handle_redis_down,
    Exception: handle_unexpected,
}
