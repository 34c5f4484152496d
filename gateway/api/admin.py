"""The admin API: repositories (/admin/repositories) and the audit trail (/admin/events).

The platform admin manages every org (naming it with ?org_id= or in the body); an org admin
manages their own org only; anyone else gets 403. Repository ids are per org: another
org's repository of the same id is not there for the caller.
Field names follow the config file's [[repositories]] (snake_case).
"""

from __future__ import annotations

import re

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.access.principal import Principal
from gateway.access.repositories import ConfigOwned, Repository
from gateway.api.inputs import Body, OrgId, WorkspaceId, gateway_of, ok, principal, read_body
from gateway.api.queries import AdminOrgQuery, EventsQuery, read_query
from gateway.api.schemas import admin as answers
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.models.provider_keys import PROVIDERS_WITH_KEYS

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


class PutRepository(Body):
    org_id: OrgId | None = Field(default=None, min_length=1, max_length=200)
    workspace_id: WorkspaceId | None = Field(default=None, min_length=1, max_length=200)
    model: str | None = Field(default=None, min_length=1, max_length=200)


async def admin_principal(request: Request) -> Principal:
    caller = await principal(request)
    if caller.role not in ("admin", "org_admin"):
        raise Forbidden(
            "the admin API is for org admins and the platform admin", code="forbidden_role"
        )
    return caller


def org_scope(org: str | None, caller: Principal) -> str | None:
    """?org_id=, which must be the caller's own unless they are the platform admin; absent:
    the caller's org (for the platform admin: every org)."""
    if org:
        caller.check_org(org)
        return org
    return caller.org_id


def required_org(org: str | None, caller: Principal) -> str:
    """org_scope(), where the platform admin must name one org."""
    org = org_scope(org, caller)
    if org is None:
        raise ValidationFailed("org_id: query parameter is required for the platform admin")
    return org


def repository_id(request: Request) -> str:
    rid = str(request.path_params["repo_id"])
    if not REPO_ID.match(rid):
        raise ValidationFailed("repository id: 1-200 characters of letters, digits, . _ : -")
    return rid


async def repository_of(
    request: Request, caller: Principal, rid: str, org: str | None
) -> Repository | None:
    """`org`'s repository of that id (ids are per org). The platform admin, naming no org,
    gets the one repository of that id, or is asked to name its org when there are several."""
    repos = gateway_of(request).repositories
    if org is not None:
        return await repos.get(rid, org)
    found = await repos.find(rid)
    if len(found) > 1:
        raise ValidationFailed(f"org_id: repository {rid!r} exists in several orgs; name one")
    return found[0] if found else None


async def visible_repository(request: Request, caller: Principal, rid: str) -> Repository:
    """The repository of that id in the caller's org (?org_id= for the platform admin), or
    404 repository_not_found: another org's is not there for the caller."""
    named = read_query(request, AdminOrgQuery).org_id
    repo = await repository_of(request, caller, rid, org_scope(named, caller))
    if repo is None or not caller.in_org(repo.org_id):
        raise NotFound(f"repository {rid!r} not found", code="repository_not_found")
    return repo


def _config_owned(rid: str) -> Conflict:
    return Conflict(
        f"repository {rid!r} is declared in the config file; change it there",
        code="repository_in_config",
    )


async def list_repositories(request: Request) -> Response:
    caller = await admin_principal(request)
    org = org_scope(read_query(request, AdminOrgQuery).org_id, caller)
    gw = gateway_of(request)
    repos = await gw.repositories.list(org)
    keyed = await gw.store.provider_keys.repositories(sorted({r.org_id for r in repos}))
    rows = [answers.Repository.of(r, has_own_key=(r.org_id, r.id) in keyed) for r in repos]
    return ok(answers.RepositoryList(repositories=rows))


async def get_repository(request: Request) -> Response:
    caller = await admin_principal(request)
    repo = await visible_repository(request, caller, repository_id(request))
    keyed = await gateway_of(request).store.provider_keys.repositories([repo.org_id])
    shown = answers.Repository.of(repo, has_own_key=(repo.org_id, repo.id) in keyed)
    return ok(answers.RepositoryEnvelope(repository=shown))


async def put_repository(request: Request) -> Response:
    caller = await admin_principal(request)
    rid = repository_id(request)
    body = await read_body(request, PutRepository)
    gw = gateway_of(request)
    if body.org_id is not None:
        caller.check_org(body.org_id)
    # the caller's own org's id: what another org holds under it changes nothing here
    named = body.org_id or read_query(request, AdminOrgQuery).org_id
    existing = await repository_of(request, caller, rid, org_scope(named, caller))
    org = body.org_id or (existing.org_id if existing else caller.org_id)
    if org is None:
        raise ValidationFailed("org_id: required when the platform admin creates a repository")
    caller.check_org(org)
    if gw.repositories.declared(rid, org):
        raise _config_owned(rid)
    if body.model is not None and await gw.connections.model(body.model, org) is None:
        raise ValidationFailed(f"model: {body.model!r} is not a served model")
    try:
        repo, created = await gw.repositories.put(
            rid, org_id=org, workspace_id=body.workspace_id, model=body.model, existing=existing
        )
    except ConfigOwned:
        raise _config_owned(rid) from None
    gw.audit.record(
        org,
        audit.REPOSITORY_SAVED,
        caller,
        repo_id=rid,
        workspace_id=body.workspace_id,
        model=body.model,
        created=int(created),
    )
    envelope = answers.RepositoryEnvelope(repository=answers.Repository.of(repo))
    return ok(envelope, 201 if created else 200)


async def delete_repository(request: Request) -> Response:
    caller = await admin_principal(request)
    rid = repository_id(request)
    gw = gateway_of(request)
    repo = await visible_repository(request, caller, rid)
    try:
        deleted = await gw.repositories.delete(rid, repo.org_id)
    except ConfigOwned:
        raise _config_owned(rid) from None
    if not deleted:
        raise NotFound(f"repository {rid!r} not found", code="repository_not_found")
    gw.audit.record(repo.org_id, audit.REPOSITORY_DELETED, caller, repo_id=rid)
    # its own provider keys go with it (an id made again later starts without them)
    gone = await gw.connections.keys.delete(repo.org_id, rid, list(PROVIDERS_WITH_KEYS))
    if gone:
        await gw.connections.changed("keys", repo.org_id)
    for provider in gone:
        gw.audit.record(
            repo.org_id, audit.PROVIDER_KEY_DELETED, caller, repo_id=rid, provider=provider
        )
    return ok(answers.RepositoryDeleted(repositoryId=rid))


async def list_events(request: Request) -> Response:
    caller = await admin_principal(request)
    q = read_query(request, EventsQuery)
    org = required_org(q.org_id, caller)
    events = await gateway_of(request).audit.read(
        org, since_ms=q.since, until_ms=q.until, before=q.before, take=q.take
    )
    return ok(
        answers.AuditEventPage(
            events=[answers.AuditEvent.of(e, org) for e in events],
            next_before=events[-1].id if len(events) == q.take else None,
        )
    )


routes = [
    Route("/admin/repositories", list_repositories, methods=["GET"]),
    Route("/admin/repositories/{repo_id}", get_repository, methods=["GET"]),
    Route("/admin/repositories/{repo_id}", put_repository, methods=["PUT"]),
    Route("/admin/repositories/{repo_id}", delete_repository, methods=["DELETE"]),
    Route("/admin/events", list_events, methods=["GET"]),
]
