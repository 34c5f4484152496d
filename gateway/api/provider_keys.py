"""Repository AI keys through the admin API (/admin/repositories/{id}/provider-keys): a
repository's own credential per provider, used for every prompt of its conversations. Set
once, never shown again (a fingerprint and the last 4 characters); sealed under the KEK.

The platform admin and the repository's org admins manage them; another org's repository is
404; a repository of the config file takes its key from the file (409).
"""

from __future__ import annotations

import re

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import audit
from gateway.access.principal import Principal
from gateway.access.repositories import Repository
from gateway.api.admin import admin_principal, repository_id, visible_repository
from gateway.api.inputs import StrictBody, gateway_of, ok, read_body
from gateway.api.schemas import provider_keys as answers
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.models.provider_keys import PROVIDERS_WITH_KEYS

# what providers' keys look like: printable ASCII, no spaces (it travels in a header)
API_KEY = re.compile(r"^[\x21-\x7e]{8,1024}$")


class PutProviderKey(StrictBody):
    api_key: str = Field(min_length=1, max_length=4096)


async def _repository(request: Request, caller: Principal) -> Repository:
    return await visible_repository(request, caller, repository_id(request))


def _provider(request: Request) -> str:
    provider = str(request.path_params["provider"])
    if provider not in PROVIDERS_WITH_KEYS:
        raise ValidationFailed(
            f"provider: one of {', '.join(PROVIDERS_WITH_KEYS)} (the demo provider needs no key)"
        )
    return provider


def _config_owned(repo: Repository) -> Conflict:
    return Conflict(
        f"repository {repo.id!r} is declared in the config file, which names its key "
        "(api_key_env); change it there",
        code="repository_in_config",
    )


async def list_keys(request: Request) -> Response:
    caller = await admin_principal(request)
    repo = await _repository(request, caller)
    gw = gateway_of(request)
    rows: list[answers.ProviderKey] = []
    if repo.source == "config":
        model = await gw.repositories.model_for(repo) if repo.api_key_env else None
        if model is not None and model.config.provider in PROVIDERS_WITH_KEYS:
            shown = {"provider": model.config.provider, "source": "config"}
            rows.append(answers.ProviderKey.model_validate(shown))
    else:
        found = await gw.connections.keys.of_repository(repo.org_id, repo.id)
        rows = [answers.ProviderKey.of(info) for info in found]
    return ok(answers.ProviderKeyList(repositoryId=repo.id, provider_keys=rows))


async def put_key(request: Request) -> Response:
    caller = await admin_principal(request)
    repo = await _repository(request, caller)
    provider = _provider(request)
    body = await read_body(request, PutProviderKey)
    if not API_KEY.match(body.api_key):
        raise ValidationFailed(
            "api_key: 8-1024 printable ASCII characters, without spaces or line breaks"
        )
    if repo.source == "config":
        raise _config_owned(repo)
    gw = gateway_of(request)
    info, replaced = await gw.connections.keys.set(repo.org_id, repo.id, provider, body.api_key)
    await gw.connections.changed("keys", repo.org_id)
    gw.audit.record(
        repo.org_id,
        audit.PROVIDER_KEY_ROTATED if replaced else audit.PROVIDER_KEY_SET,
        caller,
        repo_id=repo.id,
        provider=provider,
        fingerprint=info.fingerprint,
        last4=info.last4,
    )
    shown = answers.ProviderKeyEnvelope(
        repositoryId=repo.id, provider_key=answers.ProviderKey.of(info)
    )
    return ok(shown, 200 if replaced else 201)


async def delete_key(request: Request) -> Response:
    caller = await admin_principal(request)
    repo = await _repository(request, caller)
    provider = _provider(request)
    if repo.source == "config":
        raise _config_owned(repo)
    gw = gateway_of(request)
    if not await gw.connections.keys.delete(repo.org_id, repo.id, [provider]):
        raise NotFound(
            f"repository {repo.id!r} has no {provider} key", code="provider_key_not_found"
        )
    await gw.connections.changed("keys", repo.org_id)
    gw.audit.record(
        repo.org_id, audit.PROVIDER_KEY_DELETED, caller, repo_id=repo.id, provider=provider
    )
    return ok(answers.ProviderKeyDeleted(repositoryId=repo.id, provider=provider))


routes = [
    Route("/admin/repositories/{repo_id}/provider-keys", list_keys, methods=["GET"]),
    Route("/admin/repositories/{repo_id}/provider-keys/{provider}", put_key, methods=["PUT"]),
    Route("/admin/repositories/{repo_id}/provider-keys/{provider}", delete_key, methods=["DELETE"]),
]
