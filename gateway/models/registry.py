"""The model registry: which model entries exist for a caller's org.

Three sources, looked up in this order for an org: the org's own entries (set by its org
admins or the platform admin, in `gw:{o:<org>}:models`), the config file's `[[models]]`
(read-only through the API), and the entries every org may use (set by the platform admin,
in `gw:{models}`). The config file's and the shared entries are held in memory; an org's own
are read on its first prompt and kept (at most ORG_CACHE_SIZE orgs). A worker that has not
heard of a new entry yet reads Redis once before it answers 404, so a model added on one
worker answers the next prompt on any other; a change or a deletion reaches every worker
with the message on MODELS_CHANNEL, or the version poll within a second (models/connections.py).
An entry is immutable: a turn keeps the one it started with, whatever happens to the id.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from gateway.settings import ModelConfig, Settings
from gateway.storage.store import Store

log = logging.getLogger("gateway.models")

MAX_SHARED_MODELS = 1000  # entries every org may use
MAX_ORG_MODELS = 100  # entries of one org
ORG_CACHE_SIZE = 10_000  # orgs whose own entries a worker keeps in memory

Source = Literal["config", "api"]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    config: ModelConfig
    source: Source = "config"
    org_id: str | None = None  # None: every org may use it
    created_at: int | None = None
    updated_at: int | None = None
    created_by: str | None = None
    # One version of one entry: what a provider client is built for (JSON: ids may hold any
    # character). Made once: every prompt asks for it.
    uid: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.source == "config":
            uid = json.dumps(["config", self.id])
        else:
            uid = json.dumps(["api", self.org_id, self.id, self.updated_at])
        object.__setattr__(self, "uid", uid)

    @property
    def id(self) -> str:
        return self.config.id

    def to_record(self) -> str:
        return json.dumps(
            {
                "config": self.config.model_dump(mode="json", exclude_defaults=True),
                "org_id": self.org_id,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "created_by": self.created_by,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_record(cls, raw: str) -> ModelEntry:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            config=ModelConfig.model_validate(data["config"]),
            source="api",
            org_id=data.get("org_id"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            created_by=data.get("created_by"),
        )


def _parse(raw: dict[str, str], where: str) -> dict[str, ModelEntry]:
    entries = {}
    for model_id, text in raw.items():
        try:
            entries[model_id] = ModelEntry.from_record(text)
        except (ValidationError, ValueError, KeyError) as exc:  # written by another version
            log.error("model %s (%s) in Redis is invalid and ignored: %s", model_id, where, exc)
    return entries


class ModelRegistry:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.store = store
        self._config = {m.id: ModelEntry(m) for m in settings.served_models}
        self._shared: dict[str, ModelEntry] = {}
        self._orgs: OrderedDict[str, dict[str, ModelEntry]] = OrderedDict()
        self._generation = 0  # every invalidation bumps it: a read begun before is not kept
        self.version: str | None = None

    @property
    def first(self) -> ModelEntry:
        """The first model of the config file (or the built-in demo): the default model."""
        return next(iter(self._config.values()))

    def declared(self, model_id: str) -> bool:
        return model_id in self._config

    def config_entries(self) -> list[ModelEntry]:
        return list(self._config.values())

    # -- reloads ------------------------------------------------------------------------------

    async def load(self) -> None:
        """The shared entries and the version, afresh; every org's own are read again on
        their next use."""
        self._generation += 1
        version, raw = await self.store.models.load()
        self._shared = _parse(raw, "every org")
        self._orgs.clear()
        self.version = version

    async def load_shared(self) -> None:
        """The shared entries afresh (the version is the caller's to move)."""
        self._generation += 1
        self._shared = _parse(await self.store.models.shared(), "every org")

    def forget_org(self, org: str) -> None:
        self._generation += 1
        self._orgs.pop(org, None)

    def is_current(self, uid: str) -> bool:
        """Whether an entry version is still the one served (a provider client built for
        any other may be closed once no turn uses it)."""
        parts = json.loads(uid)
        if parts[0] == "config":
            return bool(parts[1] in self._config)
        _, org, model_id, _ = parts
        entries = self._shared if org is None else self._orgs.get(org, {})
        entry = entries.get(model_id)
        return entry is not None and entry.uid == uid

    # -- lookups ------------------------------------------------------------------------------

    async def of_org(self, org: str) -> dict[str, ModelEntry]:
        """The org's own entries: from memory, or read once and kept."""
        found = self._orgs.get(org)
        if found is not None:
            self._orgs.move_to_end(org)
            return found
        generation = self._generation
        entries = _parse(await self.store.models.of_org(org), f"org {org}")
        if generation == self._generation:
            self._orgs[org] = entries
            if len(self._orgs) > ORG_CACHE_SIZE:
                self._orgs.popitem(last=False)
        return entries

    async def get(self, model_id: str, org: str | None) -> ModelEntry | None:
        """The entry `model_id` names for a caller of `org` (None: the platform admin, who
        has no org and sees the config file's and the shared entries)."""
        if org is not None:
            own = (await self.of_org(org)).get(model_id)
            if own is not None:
                return own
        found = self._config.get(model_id) or self._shared.get(model_id)
        if found is not None:
            return found
        # not heard of yet (the message is on its way): ask Redis once before a 404
        generation = self._generation
        raw_own, raw_shared = await self.store.models.lookup(org, model_id)
        for raw, scope in ((raw_own, org), (raw_shared, None)):
            if raw is None:
                continue
            entry = _parse({model_id: raw}, scope or "every org").get(model_id)
            if entry is not None:
                if generation == self._generation:
                    target = self._shared if scope is None else self._orgs.get(scope)
                    if target is not None:
                        target[model_id] = entry
                return entry
        return None

    async def visible(self, org: str | None) -> list[ModelEntry]:
        """Every entry a caller of `org` may use: the org's own hide others of their id."""
        own = await self.of_org(org) if org is not None else {}
        merged = {**self._config, **self._shared, **own}
        return [merged[k] for k in merged]

    async def scoped(self, org: str | None) -> dict[str, ModelEntry]:
        """The API entries of one scope, read from Redis (the admin API's own view)."""
        if org is None:
            return _parse(await self.store.models.shared(), "every org")
        return _parse(await self.store.models.of_org(org), f"org {org}")
