"""Gateway API keys through the admin API (/admin/api-keys), by the code that
`python -m gateway keys` runs too (gateway/access/api_keys.py): minted (the key shown this
once), listed, read, revoked. Org admins manage their own org's keys (another org's: 404);
nobody mints a key above their own role.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access.api_keys import KeySpec, may_mint
from gateway.access.principal import Principal
from gateway.api.admin import admin_principal, required_org
from gateway.api.inputs import gateway_of, ok, read_json, refused
from gateway.api.queries import AdminOrgQuery, read_query
from gateway.api.schemas import api_keys as answers
from gateway.errors import NotFound, ValidationFailed

VIA = "api"


async def _key(request: Request, caller: Principal) -> dict[str, Any]:
    key_id = str(request.path_params["key_id"])
    record = await gateway_of(request).api_keys.get(key_id)
    if record is None or not caller.in_org(str(record["org_id"])):
        raise NotFound(f"API key {key_id[:40]!r} not found", code="api_key_not_found")
    return record


async def create_key(request: Request) -> Response:
    caller = await admin_principal(request)
    try:
        spec = KeySpec.model_validate(await read_json(request))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise refused(tuple(err["loc"]) or ("body",), err["msg"]) from None
    gw = gateway_of(request)
    org = spec.org_id or caller.org_id
    if org is None:
        raise ValidationFailed("org_id: required when the platform admin mints a key")
    may_mint(caller, org, spec.role)
    for model in spec.models or ():
        if await gw.connections.model(model, org) is None:
            raise ValidationFailed(f"models: {model[:100]!r} is not a served model")
    record, key = await gw.api_keys.create(spec, caller, via=VIA)
    # the one time the key is shown: only its hash is kept
    return ok(answers.ApiKeyCreated(**dict(answers.ApiKey.of(record)), key=key), 201)


async def list_keys(request: Request) -> Response:
    caller = await admin_principal(request)
    # one org's keys at a time: a bounded listing
    org = required_org(read_query(request, AdminOrgQuery).org_id, caller)
    rows = [answers.ApiKey.of(r) for r in await gateway_of(request).api_keys.list(org)]
    return ok(answers.ApiKeyList(api_keys=rows, total=len(rows)))


async def get_key(request: Request) -> Response:
    caller = await admin_principal(request)
    return ok(answers.ApiKeyEnvelope(api_key=answers.ApiKey.of(await _key(request, caller))))


async def revoke_key(request: Request) -> Response:
    caller = await admin_principal(request)
    record = await _key(request, caller)
    gw = gateway_of(request)
    if not await gw.api_keys.revoke(record, caller, via=VIA):
        raise NotFound(f"API key {record['key_id']!r} not found", code="api_key_not_found")
    return ok(answers.ApiKeyRevoked(id=record["key_id"]))


routes = [
    Route("/admin/api-keys", create_key, methods=["POST"]),
    Route("/admin/api-keys", list_keys, methods=["GET"]),
    Route("/admin/api-keys/{key_id}", get_key, methods=["GET"]),
    Route("/admin/api-keys/{key_id}", revoke_key, methods=["DELETE"]),
]
