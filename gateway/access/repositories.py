"""The repository registry: what a repository-style conversation belongs to and which model
answers it. Repositories come from the config file ([[repositories]]) and the admin API.

Repository ids are per org: two orgs may each have a `repo-1`, and nothing one org does or
asks depends on another org's ids. Config wins within its org: an (org, id) the file
declares is served from the (frozen) settings, never read from Redis, and the admin API
refuses to change it (409). Every other repository lives in one Redis hash, written by the
admin API. A repository's own provider key (the seeds' "AI API Keys": `api_key_env` in the
file, or set through the admin API) is used for its prompts by gateway/models/
(provider_keys.py, connections.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from gateway.models.connections import Connections
from gateway.models.registry import ModelEntry
from gateway.settings import RepositoryConfig, Settings
from gateway.storage.records import now_ms
from gateway.storage.store import Store

Source = Literal["config", "api"]


@dataclass(slots=True, frozen=True)
class Repository:
    id: str
    org_id: str
    workspace_id: str | None
    model: str | None = None
    source: Source = "api"
    api_key_env: str | None = None
    created_at: int | None = None
    updated_at: int | None = None

    @classmethod
    def from_config(cls, r: RepositoryConfig) -> Repository:
        return cls(
            id=r.id,
            org_id=r.org_id,
            workspace_id=r.workspace_id,
            model=r.model,
            source="config",
            api_key_env=r.api_key_env,
        )


class ConfigOwned(Exception):
    """The id is declared in the config file; the admin API may not change it."""


class Repositories:
    def __init__(self, settings: Settings, store: Store, connections: Connections) -> None:
        self.settings = settings
        self.store = store
        self.connections = connections
        self._config = {(r.org_id, r.id): Repository.from_config(r) for r in settings.repositories}

    def declared(self, rid: str, org_id: str) -> bool:
        return (org_id, rid) in self._config

    async def get(self, rid: str, org_id: str) -> Repository | None:
        """The org's repository of that id (another org's never answers)."""
        if (org_id, rid) in self._config:
            return self._config[(org_id, rid)]
        record = await self.store.repositories.get(org_id, rid)
        return Repository(**record) if record else None

    async def find(self, rid: str) -> list[Repository]:
        """Every org's repository of that id: for the platform admin, who names no org."""
        stored = [Repository(**r) for r in await self.store.repositories.find(rid)]
        configured = [r for (_, i), r in self._config.items() if i == rid]
        return configured + [r for r in stored if (r.org_id, r.id) not in self._config]

    async def list(self, org_id: str | None = None) -> list[Repository]:
        stored = [Repository(**r) for r in await self.store.repositories.all()]
        repos = [
            *self._config.values(),
            *(r for r in stored if (r.org_id, r.id) not in self._config),
        ]
        if org_id is not None:
            repos = [r for r in repos if r.org_id == org_id]
        return sorted(repos, key=lambda r: (r.org_id, r.id))

    async def put(
        self,
        rid: str,
        *,
        org_id: str,
        workspace_id: str | None,
        model: str | None,
        existing: Repository | None,
    ) -> tuple[Repository, bool]:
        """Create or replace an admin-managed repository; (repository, created)."""
        if (org_id, rid) in self._config:
            raise ConfigOwned(rid)
        at = now_ms()
        repo = Repository(
            id=rid,
            org_id=org_id,
            workspace_id=workspace_id,
            model=model,
            created_at=existing.created_at if existing else at,
            updated_at=at,
        )
        record = asdict(repo)
        del record["api_key_env"]  # only the config file may name environment variables
        created = await self.store.repositories.put(record)
        return repo, created

    async def delete(self, rid: str, org_id: str) -> bool:
        if (org_id, rid) in self._config:
            raise ConfigOwned(rid)
        return await self.store.repositories.delete(org_id, rid)

    async def model_for(self, repo: Repository) -> ModelEntry | None:
        """The repository's model, as its org sees it; without one, the first of the file."""
        if repo.model is None:
            return self.connections.registry.first
        return await self.connections.model(repo.model, repo.org_id)
