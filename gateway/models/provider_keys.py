"""Repositories' own provider keys (the seeds' "AI API Keys"): set through the admin API,
sealed under the KEK (models/vault.py) in the repository's org, never shown again (a
fingerprint and the last 4 characters), and used for every prompt of the repository's
conversations on a model of that provider, whichever API style sends it.

A repository of the config file takes its key from the file instead (`api_key_env`, for the
provider of its model), and the API leaves it alone (409). A worker reads an org's
envelopes on the first prompt that needs them, opens each once, and keeps them until a
change of the org's keys is announced (MODELS_CHANNEL "keys:<org>", or the version poll).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from gateway.errors import Conflict
from gateway.models.vault import Envelope, Vault, VaultError
from gateway.settings import Settings
from gateway.storage import provider_keys as layout
from gateway.storage.records import now_ms
from gateway.storage.store import Store

log = logging.getLogger("gateway.models")

PROVIDERS_WITH_KEYS = ("openai", "anthropic")
MAX_KEYS_PER_ORG = 1000
ORG_CACHE_SIZE = 10_000


def aad(org: str, provider: str, repo_id: str) -> bytes:
    """What an envelope is bound to: moved to another org, repository or provider, it does
    not open."""
    return f"provider-key|{org}|{provider}|{repo_id}".encode()


def encryption_missing() -> Conflict:
    return Conflict(
        "the gateway has no key-encryption key, so it cannot store provider keys: set "
        "GATEWAY_ENCRYPTION_KEY (32 random bytes, URL-safe base64) or encryption_key_file, "
        "and restart",
        code="encryption_key_missing",
    )


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of a stored key."""

    repo_id: str
    provider: str
    fingerprint: str
    last4: str
    kek: str
    created_at: int


def info_of(name: str, envelope: Envelope) -> KeyInfo:
    provider, repo_id = layout.split_field(name)
    return KeyInfo(
        repo_id, provider, envelope.fingerprint, envelope.last4, envelope.kek, envelope.created_at
    )


class ProviderKeys:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.store = store
        self.vault: Vault | None = None  # set at start when a KEK is configured
        # config repositories: (org, id) -> (provider of its model, the key from its variable)
        self._config: dict[tuple[str, str], tuple[str, str | None]] = {}
        served = {m.id: m for m in settings.served_models}
        for repo in settings.repositories:
            model = served.get(repo.model) if repo.model else settings.served_models[0]
            if model is not None:
                key = settings.secrets.get(repo.api_key_env) if repo.api_key_env else None
                self._config[(repo.org_id, repo.id)] = (model.provider, key)
        self._orgs: OrderedDict[str, dict[str, str]] = OrderedDict()  # raw envelopes
        self._opened: dict[tuple[str, str], tuple[str, str]] = {}  # -> (ciphertext, key)
        self._generation = 0

    def forget_org(self, org: str) -> None:
        self._generation += 1
        self._orgs.pop(org, None)
        for k in [k for k in self._opened if k[0] == org]:
            del self._opened[k]

    def forget_all(self) -> None:
        self._generation += 1
        self._orgs.clear()
        self._opened.clear()

    async def _envelopes(self, org: str) -> dict[str, str]:
        found = self._orgs.get(org)
        if found is not None:
            self._orgs.move_to_end(org)
            return found
        generation = self._generation
        raw = await self.store.provider_keys.of_org(org)
        if generation == self._generation:
            self._orgs[org] = raw
            if len(self._orgs) > ORG_CACHE_SIZE:
                gone, _ = self._orgs.popitem(last=False)
                for k in [k for k in self._opened if k[0] == gone]:
                    del self._opened[k]
        return raw

    async def key_for(self, org: str, repo_id: str, provider: str) -> str | None:
        """The repository's own key for `provider`, in clear; None: it has none."""
        if (org, repo_id) in self._config:  # repository ids are per org
            own_provider, key = self._config[(org, repo_id)]
            return key if own_provider == provider else None
        name = layout.field(provider, repo_id)
        raw = (await self._envelopes(org)).get(name)
        if raw is None:
            return None
        envelope = Envelope.from_json(raw)
        opened = self._opened.get((org, name))
        if opened is not None and opened[0] == envelope.ciphertext:
            return opened[1]
        if self.vault is None:
            raise VaultError("a provider key is stored but no GATEWAY_ENCRYPTION_KEY is set")
        key = self.vault.open(envelope, aad=aad(org, provider, repo_id))
        self._opened[(org, name)] = (envelope.ciphertext, key)
        return key

    # -- the admin API ------------------------------------------------------------------------

    async def of_repository(self, org: str, repo_id: str) -> list[KeyInfo]:
        raw = await self.store.provider_keys.of_org(org)
        found = []
        for provider in PROVIDERS_WITH_KEYS:
            text = raw.get(layout.field(provider, repo_id))
            if text is not None:
                found.append(info_of(layout.field(provider, repo_id), Envelope.from_json(text)))
        return found

    async def set(self, org: str, repo_id: str, provider: str, secret: str) -> tuple[KeyInfo, bool]:
        """(what may be shown of it, whether it replaced a key); raises Conflict without a
        KEK or when the org holds MAX_KEYS_PER_ORG keys."""
        if self.vault is None:
            raise encryption_missing()
        envelope = self.vault.seal(secret, aad=aad(org, provider, repo_id), at=now_ms())
        result = await self.store.provider_keys.put(
            org,
            provider,
            repo_id,
            envelope.to_json(),
            limit=MAX_KEYS_PER_ORG,
            kek=self.vault.current,
            canary=self.vault.canary(),
        )
        if result < 0:
            raise Conflict(
                f"org {org!r} holds {MAX_KEYS_PER_ORG} provider keys already",
                code="too_many_provider_keys",
            )
        self.forget_org(org)
        return info_of(layout.field(provider, repo_id), envelope), result == 0

    async def delete(self, org: str, repo_id: str, providers: list[str]) -> list[str]:
        gone = await self.store.provider_keys.delete(org, providers, repo_id)
        if gone:
            self.forget_org(org)
        return gone


@dataclass(slots=True)
class Rewrapped:
    orgs: int = 0
    rewrapped: int = 0
    current: int = 0  # already under the current KEK
    changed: int = 0  # set or deleted while this ran: run it again for those
    failed: int = 0  # wrapped by a KEK that is not configured, or not opening


async def rotate(store: Store, vault: Vault) -> tuple[Rewrapped, dict[str, int]]:
    """`python -m gateway keys rotate-kek`: re-wrap every stored key's DEK with the current
    KEK (the sealed keys themselves stay), org by org, each field compared-and-set so a key
    set meanwhile is never overwritten. Workers keep serving throughout: they open either
    KEK. Returns the totals and the re-wrapped count per org; when every key is under the
    current KEK, forgets the check values of the others (a start without them is fine)."""
    totals, per_org = Rewrapped(), {}
    await store.provider_keys.add_canary(vault.current, vault.canary())
    async for org in store.provider_keys.orgs():
        totals.orgs += 1
        count = 0
        for name, raw in (await store.provider_keys.of_org(org)).items():
            provider, repo_id = layout.split_field(name)
            try:
                new = vault.rewrap(Envelope.from_json(raw), aad=aad(org, provider, repo_id))
            except VaultError as exc:
                log.error("org %s: %s: %s", org, name, exc)
                totals.failed += 1
                continue
            if new is None:
                totals.current += 1
            elif await store.provider_keys.replace_if(org, name, raw, new.to_json()):
                count += 1
            else:
                totals.changed += 1
        if count:
            per_org[org] = count
            totals.rewrapped += count
    if not totals.failed and not totals.changed:
        stale = [k for k in await store.provider_keys.canaries() if k != vault.current]
        await store.provider_keys.forget_canaries(stale)
    return totals, per_org
