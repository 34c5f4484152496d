"""What every handler needs: the caller, a validated JSON body, its answer as JSON, and a
refusal that names the field at fault."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import Response

from gateway.access import ids
from gateway.access.principal import Principal
from gateway.errors import BadRequest, GatewayError, Loc, PayloadTooLarge

if TYPE_CHECKING:
    from gateway.app import Gateway

B = TypeVar("B", bound=BaseModel)
MAX_JSON_DEPTH = 32  # nested objects and arrays
MAX_JSON_INT = 2**53 - 1  # I-JSON (RFC 7493): the integers every JSON parser holds exactly
MAX_JSON_VALUES = 20_000  # keys and values in one body (SECURITY.md): counted before parsing
_STRUCTURE = b",:[{"  # after the first, every key and value follows one of these
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# in any string or key: C0 controls but tab, LF and CR; DEL; unpaired surrogates ("\ud800")
BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def refused(loc: Loc, problem: str, *, code: str = "validation_error") -> BadRequest:
    """A 400 that names its field, in the message (`messages.0.content: ...`) and as the
    error's `param` (OpenAI's error shape reports it)."""
    return BadRequest(f"{dotted(loc)}: {problem}", code=code, param=loc)


class Body(BaseModel):
    """Request bodies: strict types (no "1" for 1), unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class StrictBody(BaseModel):
    """Request bodies that refuse an unknown field (400) rather than drop it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def gateway_of(request: Request) -> Gateway:
    """Everything the lifespan built for this worker (gateway/app.py)."""
    return cast("Gateway", request.app.state.gateway)


def client_address(request: Request) -> str | None:
    """The caller's address (a trusted proxy's X-Forwarded-For already applied by the server),
    whose failed authentications are throttled; None over a Unix socket."""
    return request.client.host if request.client else None


async def principal(request: Request) -> Principal:
    caller = await gateway_of(request).auth.authenticate(
        request.headers.get("authorization"), client=client_address(request)
    )
    request.state.principal = caller  # for the access log line
    return caller


def request_timing(request: Request) -> dict[str, Any]:
    """When the request arrived and its id (set by RequestMiddleware), for the turn's metrics."""
    state = request.scope.get("state", {})
    return {"started": state.get("started"), "request_id": state.get("request_id")}


def check_id(name: str, kind: ids.Kind, value: object) -> str:
    """An id from a path or a raw body: 400 invalid_id unless it is of its alphabet
    (gateway/access/ids.py)."""
    found = ids.problem(kind, value)
    if found is not None:
        raise refused((name,), found, code="invalid_id")
    return str(value)


def _id_field(kind: ids.Kind) -> AfterValidator:
    def check(value: str) -> str:
        found = ids.problem(kind, value) if value else None  # "": the field's min_length
        if found is not None:
            raise PydanticCustomError("invalid_id", found)
        return value

    return AfterValidator(check)


# fields (of bodies and queries) that hold ids: refused with code invalid_id
OrgId = Annotated[str, _id_field("org")]
WorkspaceId = Annotated[str, _id_field("workspace")]
RepositoryId = Annotated[str, _id_field("repository")]
UserId = Annotated[str, _id_field("user")]
PolicyId = Annotated[str, _id_field("policy")]


def id_code(err_type: str) -> str:
    """The code of a refused field: invalid_id for an id outside its alphabet."""
    return "invalid_id" if err_type == "invalid_id" else "validation_error"


class _Refused(ValueError):
    """A body refused while it is parsed, with the code to answer."""

    def __init__(self, message: str, code: str = "invalid_json") -> None:
        super().__init__(message)
        self.code = code


def _parse_int(text: str) -> int:
    if len(text) > 17 or abs(value := int(text)) > MAX_JSON_INT:
        raise _Refused(
            f"integer {text[:20]}{'...' if len(text) > 20 else ''} is out of range "
            f"(at most {MAX_JSON_INT} in absolute value)",
            "number_out_of_range",
        )
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:20]} is out of range", "number_out_of_range")
    return value


def _parse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number", "number_out_of_range")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # json.loads would keep the last one silently
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Refused(f"duplicate key {dup[:50]!r}")
    return obj


def _where(path: Any) -> Loc:
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key if type(key) is int else BAD_CHARS.sub("?", key))  # never echo it
    return tuple(reversed(parts))


def _bad_char(text: str, path: Any, what: str = "") -> BadRequest:
    char = BAD_CHARS.search(text).group()  # type: ignore[union-attr]
    kind = "an unpaired surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
    return refused(
        _where(path),
        f"{what}contains {kind} (U+{ord(char):04X}); "
        "only tab, line feed and carriage return are allowed",
        code="invalid_characters",
    )


def _count_values(raw: bytearray) -> None:
    """Refuse a body of more than MAX_JSON_VALUES keys and values before json.loads builds a
    single one (a 90,000-key body under 1 MiB cost ~300 ms of event-loop CPU). Counting the
    , : [ { bytes bounds them from above at C speed; only a body with more of those (in long
    strings, or an attack) is looked at again: more unescaped quotes than two per allowed
    string is too many strings, else its strings are taken out and the rest counted."""
    if len(raw) - len(raw.translate(None, _STRUCTURE)) < MAX_JSON_VALUES:
        return
    quotes = raw.count(b'"') - raw.count(b'\\"')  # between one and two per string
    if quotes > 2 * MAX_JSON_VALUES:
        raise _too_many_values()
    bare = _JSON_STRING.sub(b"", raw)
    if len(bare) - len(bare.translate(None, _STRUCTURE)) >= MAX_JSON_VALUES:
        raise _too_many_values()


def _too_many_values() -> PayloadTooLarge:
    return PayloadTooLarge(f"request body holds more than {MAX_JSON_VALUES} JSON keys and values")


def _check_tree(data: Any, *, strings: bool = True) -> None:
    """Nesting depth, and no control characters or unpaired surrogates in any string or
    key (Redis could not even encode the latter). Paths are kept as (parent, key) links.
    `strings=False`: the body held no escape and no DEL, so no string can hold one (the
    parser refuses raw control characters, and valid UTF-8 holds no surrogate)."""
    stack: list[tuple[Any, int, Any]] = [(data, 1, None)]
    while stack:
        value, depth, path = stack.pop()
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if strings and type(key) is str and BAD_CHARS.search(key):
                raise _bad_char(key, (path, key), "key ")
            if isinstance(item, str):
                if strings and BAD_CHARS.search(item):
                    raise _bad_char(item, (path, key))
            elif isinstance(item, dict | list):
                if depth >= MAX_JSON_DEPTH:
                    raise BadRequest(
                        f"JSON nested deeper than {MAX_JSON_DEPTH}", code="invalid_json"
                    )
                stack.append((item, depth + 1, (path, key)))


def _check_content_type(request: Request) -> None:
    """JSON, or text/plain (what fetch() sends when no type is set); absent is fine too.
    Bodies are read as UTF-8, the only encoding JSON allows (RFC 8259)."""
    raw = request.headers.get("content-type")
    if not raw:
        return
    media, *params = (p.strip().lower() for p in raw.split(";"))
    json_like = media in ("application/json", "text/plain") or (
        media.startswith("application/") and media.endswith("+json")
    )
    charset = next(
        (p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), "utf-8"
    )
    if not json_like or charset not in ("utf-8", "utf8"):
        raise GatewayError(
            f"Content-Type {raw[:100]!r} is not accepted; send application/json (UTF-8)",
            code="unsupported_media_type",
            status=415,
        )


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, after every input limit (size, UTF-8, nesting, numbers,
    control characters); read_body() then validates it against a model."""
    _check_content_type(request)
    limit = gateway_of(request).settings.max_body_bytes
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
    _count_values(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body is not valid UTF-8 (byte {exc.start})", code="invalid_json"
        ) from None
    try:
        data = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except _Refused as exc:
        raise BadRequest(f"request body: {exc}", code=exc.code) from None
    except json.JSONDecodeError as exc:
        # a raw control character in a string: the same refusal as its \u escape
        code = (
            "invalid_characters"
            if exc.msg.startswith("Invalid control character")
            else "invalid_json"
        )
        where = f"line {exc.lineno} column {exc.colno}"  # the parser's words, not its repr
        raise BadRequest(
            f"request body is not valid JSON: {exc.msg} at {where}", code=code
        ) from None
    except ValueError:  # whatever else the parser refuses: never its own text
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    _check_tree(data, strings=b"\\u" in raw or b"\x7f" in raw)
    return data


async def read_body(request: Request, model: type[B]) -> B:
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # the body as a whole (no field is at fault)
            raise BadRequest(f"body: {err['msg']}", code="validation_error") from None
        raise refused(tuple(err["loc"]), err["msg"], code=id_code(err["type"])) from None


def ok(
    answer: BaseModel,
    status: int = 200,
    headers: dict[str, str] | None = None,
    *,
    exclude_none: bool = False,
) -> Response:
    """The answer's model, serialized by pydantic-core (faster than json.dumps of a dict)."""
    body = answer.__pydantic_serializer__.to_json(answer, exclude_none=exclude_none)
    return Response(body, status, headers, media_type="application/json")
