"""Provider connections through the admin API (/admin/models): the model entries, with every
field of the config file's [[models]] plus prices, and their connection test.

The platform admin manages the entries every org may use (no `org_id`) and any org's own;
an org admin their org's own, which answer with their repositories' provider keys (never
the platform's credentials), at the providers' own endpoints (no `base_url`). The config
file's entries are read-only here (409). A change reaches every worker within a second.
"""

from __future__ import annotations

import re

from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.access.principal import Principal
from gateway.api.admin import admin_principal, org_scope, repository_of
from gateway.api.inputs import gateway_of, ok, read_json, refused
from gateway.api.queries import AdminOrgQuery, ModelTestQuery, read_query
from gateway.api.schemas import models as answers
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.models.probe import ProbeResult
from gateway.models.registry import MAX_ORG_MODELS, MAX_SHARED_MODELS, ModelEntry
from gateway.settings import ModelConfig
from gateway.storage.records import now_ms

MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


class PutModel(ModelConfig):
    """PUT /admin/models/{id}: the config file's [[models]] fields (the id is the path's),
    prices in USD per million tokens, and the org whose own entry it is (none: every org)."""

    org_id: str | None = Field(default=None, min_length=1, max_length=200)


def model_id(request: Request) -> str:
    mid = str(request.path_params["model_id"])
    if not MODEL_ID.match(mid):
        raise ValidationFailed("model id: 1-200 characters of letters, digits, . _ : -")
    return mid


async def _visible(request: Request, caller: Principal, mid: str) -> ModelEntry:
    """The entry the caller's scope sees under that id; another org's is 404."""
    org = org_scope(read_query(request, AdminOrgQuery).org_id, caller)
    entry = await gateway_of(request).connections.model(mid, org)
    if entry is None:
        raise NotFound(f"model {mid!r} not found", code="model_not_found")
    return entry


def _config_owned(mid: str) -> Conflict:
    return Conflict(
        f"model {mid!r} is declared in the config file; change it there", code="model_in_config"
    )


async def list_models(request: Request) -> Response:
    caller = await admin_principal(request)
    org = org_scope(read_query(request, AdminOrgQuery).org_id, caller)
    connections = gateway_of(request).connections
    entries = await connections.registry.visible(org)
    shared = await connections.health(None)
    own = await connections.health(org) if org is not None else {}

    def health(e: ModelEntry) -> ProbeResult | None:
        return (own if e.org_id is not None else shared).get(e.id)

    rows = [answers.ModelEntry.of(e, health(e)) for e in entries]
    return ok(answers.ModelList(models=rows, total=len(rows)))


async def get_model(request: Request) -> Response:
    caller = await admin_principal(request)
    entry = await _visible(request, caller, model_id(request))
    result = (await gateway_of(request).connections.health(entry.org_id)).get(entry.id)
    return ok(answers.ModelEnvelope(model=answers.ModelEntry.of(entry, result)))


def _check_fields(
    caller: Principal, config: ModelConfig, org: str | None, secrets: set[str]
) -> None:
    """What an entry may name: an org's own never the platform's variables nor (set by an
    org admin) another server; a shared one only variables the gateway read at start."""
    if org is not None:
        if config.api_key_env is not None:
            raise ValidationFailed(
                "api_key_env: an org's own model answers with its repositories' provider keys"
            )
        if config.base_url is not None and not caller.is_admin:
            raise Forbidden(
                "base_url: only the platform admin points a model at another server",
                code="forbidden_field",
            )
    elif config.api_key_env is not None and config.api_key_env not in secrets:
        raise ValidationFailed(
            f"api_key_env: {config.api_key_env[:100]!r} is not a variable the gateway read at "
            "start (OPENAI_API_KEY, ANTHROPIC_API_KEY, or one the config file names)"
        )


async def _read_model(
    request: Request, caller: Principal, mid: str
) -> tuple[ModelConfig, str | None]:
    """The body as an entry's config, and the org whose own it is (None: every org's)."""
    body = await read_json(request)
    if body.get("id", mid) != mid:
        raise ValidationFailed("id: the body's id differs from the path's")
    body["id"] = mid
    try:
        spec = PutModel.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise refused(tuple(err["loc"]) or ("body",), err["msg"]) from None
    org = spec.org_id
    if org is None and not caller.is_admin:
        org = caller.org_id  # an org admin's entries are their org's own
    if org is not None:
        caller.check_org(org)
    config = ModelConfig.model_validate(spec.model_dump(exclude={"org_id"}, exclude_unset=True))
    return config, org


async def put_model(request: Request) -> Response:
    caller = await admin_principal(request)
    mid = model_id(request)
    config, org = await _read_model(request, caller, mid)
    gw = gateway_of(request)
    connections = gw.connections
    if connections.registry.declared(mid):
        raise _config_owned(mid)
    _check_fields(caller, config, org, set(gw.settings.secrets))
    if org is not None and (await connections.registry.scoped(None)).get(mid) is not None:
        raise Conflict(f"model {mid!r} exists for every org already", code="model_exists")
    for fallback in config.fallbacks:
        if fallback == mid or await connections.model(fallback, org) is None:
            raise ValidationFailed(f"fallbacks: {fallback[:100]!r} is not a served model")
    existing = (await connections.registry.scoped(org)).get(mid)
    at = now_ms()
    entry = ModelEntry(
        config=config,
        source="api",
        org_id=org,
        created_at=existing.created_at if existing else at,
        updated_at=at,
        created_by=existing.created_by if existing else caller.user_id,
    )
    created = await connections.put_model(entry)
    if created is None:
        limit = MAX_SHARED_MODELS if org is None else MAX_ORG_MODELS
        whose = "every org" if org is None else f"org {org!r}"
        raise Conflict(
            f"{whose} has {limit} models already; delete some first", code="too_many_models"
        )
    gw.audit.record(
        org,
        audit.MODEL_SAVED,
        caller,
        model=mid,
        provider=config.provider,
        upstream_model=config.upstream_model,
        created=int(created),
    )
    return ok(
        answers.ModelEnvelope(model=answers.ModelEntry.of(entry, None)), 201 if created else 200
    )


async def delete_model(request: Request) -> Response:
    caller = await admin_principal(request)
    mid = model_id(request)
    gw = gateway_of(request)
    entry = await _visible(request, caller, mid)
    if entry.source == "config":
        raise _config_owned(mid)
    if entry.org_id is None and not caller.is_admin:
        raise Forbidden("this model is the platform's, not your org's", code="forbidden_role")
    if not await gw.connections.delete_model(entry.org_id, mid):
        raise NotFound(f"model {mid!r} not found", code="model_not_found")
    gw.audit.record(entry.org_id, audit.MODEL_DELETED, caller, model=mid)
    return ok(answers.ModelDeleted(modelId=mid))


async def test_model(request: Request) -> Response:
    """One tiny upstream call; an org admin tests their org's own entries (the others run
    on the platform's credentials), with a repository's key (?repository_id=)."""
    caller = await admin_principal(request)
    entry = await _visible(request, caller, model_id(request))
    if entry.org_id is None and not caller.is_admin:
        raise Forbidden("the platform admin tests the models every org uses", code="forbidden_role")
    gw = gateway_of(request)
    key = None
    query = read_query(request, ModelTestQuery)
    repo_id = query.repository_id
    if repo_id:
        # repository ids are per org: the entry's org's, else the caller's (or ?org_id=)
        org = entry.org_id or org_scope(query.org_id, caller)
        repo = await repository_of(request, caller, repo_id, org)
        if (
            repo is None
            or not caller.in_org(repo.org_id)
            or (entry.org_id is not None and repo.org_id != entry.org_id)
        ):
            raise NotFound(f"repository {repo_id!r} not found", code="repository_not_found")
        key = await gw.connections.keys.key_for(repo.org_id, repo.id, entry.config.provider)
    result = await gw.connections.test(entry, key)
    if result is None:
        raise Conflict(
            f"a test of model {entry.id!r} is running",
            code="test_running",
            headers={"Retry-After": "2"},
        )
    health = answers.ModelHealth.of(result)
    assert health is not None
    return ok(answers.ModelTest(model=entry.id, result=health))


routes = [
    Route("/admin/models", list_models, methods=["GET"]),
    Route("/admin/models/{model_id}", get_model, methods=["GET"]),
    Route("/admin/models/{model_id}", put_model, methods=["PUT"]),
    Route("/admin/models/{model_id}", delete_model, methods=["DELETE"]),
    Route("/admin/models/{model_id}/test", test_model, methods=["POST"]),
]
