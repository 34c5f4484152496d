"""What every handler needs: the caller, a validated JSON body, bounded query integers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.auth import Principal
from gateway.errors import BadRequest, PayloadTooLarge, ValidationFailed

B = TypeVar("B", bound=BaseModel)
MAX_JSON_DEPTH = 32
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Body(BaseModel):
    """Request bodies: strict types (no "1" for 1), unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


async def principal(request: Request) -> Principal:
    caller = await request.app.state.gateway.auth.authenticate(request.headers.get("authorization"))
    request.state.principal = caller  # for the access log line
    return caller


def request_timing(request: Request) -> dict[str, Any]:
    """When the request arrived and its id (set by RequestMiddleware), for the turn's metrics."""
    state = request.scope.get("state", {})
    return {"started": state.get("started"), "request_id": state.get("request_id")}


def org_param(request: Request, caller: Principal) -> str:
    org_id = request.query_params.get("org_id")
    if not org_id:
        raise ValidationFailed("org_id: query parameter is required")
    caller.check_org(org_id)
    return org_id


def required_param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise ValidationFailed(f"{name}: query parameter is required")
    return value


def int_param(request: Request, name: str, default: int, *, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: must be an integer") from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name}: must be between {lo} and {hi}")
    return value


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


async def read_body(request: Request, model: type[B]) -> B:
    limit = request.app.state.gateway.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    if not raw:
        raise BadRequest("request body is empty; expected a JSON object", code="invalid_json")
    try:
        data = json.loads(bytes(raw))
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH}", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        raise ValidationFailed(f"{loc}: {err['msg']}") from None


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status, headers)


def iso_param(request: Request, name: str, *, end_of_day: bool = False) -> int | None:
    """An ISO 8601 date or date-time query parameter as epoch milliseconds (no zone: UTC).
    A bare date means its first millisecond, or with end_of_day its last, so that
    `from=2024-01-15&to=2024-01-15` covers the whole day."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValidationFailed(f"{name}: not an ISO 8601 date or date-time: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ms = (value - EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
    if end_of_day and "T" not in raw.upper() and " " not in raw.strip():
        ms += 86_400_000 - 1
    return ms
