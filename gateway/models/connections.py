"""The provider connections a worker serves: the model registry, repositories' own provider
keys under the KEK, and the provider clients built from both; and how a change made on any
worker reaches this one within a second (the MODELS_CHANNEL message, or the version poll),
the pattern of gateway/governance/registry.py.

A message reads "<version> models:<org>" (an org's own entries; no org: the shared ones) or
"<version> keys:<org>"; a worker that sees a version it did not expect (it missed one)
forgets everything and reads again, as it does when the poll finds the version moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from gateway.errors import BadRequest
from gateway.models.clients import ProviderClients
from gateway.models.probe import ProbeResult, probe
from gateway.models.provider_keys import ProviderKeys
from gateway.models.registry import MAX_ORG_MODELS, MAX_SHARED_MODELS, ModelEntry, ModelRegistry
from gateway.models.vault import Vault, parse_keks, refuse_without_vault
from gateway.settings import Settings
from gateway.storage import keys
from gateway.storage.records import now_ms
from gateway.storage.store import Store
from providers.base import Provider

log = logging.getLogger("gateway.models")

POLL_INTERVAL = 1.0  # a missed message still reaches the worker within this
TEST_TIMEOUT = 15.0  # the longest a connection test may take


class NoCredential(BadRequest):
    code = "provider_key_missing"


class Connections:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.registry = ModelRegistry(settings, store)
        self.keys = ProviderKeys(settings, store)
        self.clients = ProviderClients(settings)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def vault(self) -> Vault | None:
        return self.keys.vault

    async def start(self) -> None:
        """Open the vault (a KEK that does not match what Redis holds stops the start, with
        VaultError naming it), read the entries, then follow changes."""
        self.keys.vault = await open_vault(self.settings, self.store)
        await self.registry.load()
        self._tasks = [
            asyncio.create_task(self._listen(), name="gateway-models-listener"),
            asyncio.create_task(self._poll(), name="gateway-models-poll"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.clients.aclose()

    # -- what a turn asks --------------------------------------------------------------------

    async def model(self, model_id: str, org: str | None) -> ModelEntry | None:
        return await self.registry.get(model_id, org)

    async def provider(self, entry: ModelEntry, org: str, repo_id: str | None) -> Provider:
        """The client a prompt of `org` (and of repository `repo_id`) goes through: the
        repository's own key for the entry's provider when it has one; else the platform's
        credential, which an org's own entries never get (NoCredential, 400)."""
        key = None
        if repo_id is not None and entry.config.provider != "demo":
            key = await self.keys.key_for(org, repo_id, entry.config.provider)
        own_entry = entry.org_id is not None
        if key is None and own_entry and entry.config.provider != "demo":
            missing = (
                "this conversation has no repository"
                if repo_id is None
                else f"repository {repo_id!r} has none"
            )
            raise NoCredential(
                f"model {entry.id!r} is your organization's own: it answers with a "
                f"repository's own {entry.config.provider} key, and {missing}"
            )
        return self.clients.provider(entry, key, shared=not own_entry)

    def hold(self, holder: Any, provider: Provider) -> None:
        self.clients.hold(holder, provider)

    # -- changes -----------------------------------------------------------------------------

    async def changed(self, kind: str, org: str | None) -> None:
        """After a write: this worker at once, the others by the message or the poll."""
        scope = f"{kind}:{org or ''}"
        before = self.registry.version
        version = await self.store.models.bump()
        await self._apply(scope)
        if int(before or 0) + 1 == int(version):  # else another change went by: the poll resets
            self.registry.version = version
        await self.store.pubsub.publish(keys.MODELS_CHANNEL, f"{version} {scope}")

    async def _apply(self, scope: str) -> None:
        kind, _, org = scope.partition(":")
        if kind == "keys":
            self.keys.forget_org(org)
        elif org:
            self.registry.forget_org(org)
        else:
            await self.registry.load_shared()

    async def _heard(self, message: str) -> None:
        version, _, scope = message.partition(" ")
        if not version.isdigit():
            return
        current = int(self.registry.version or 0)
        if int(version) <= current:  # this worker's own change, or one already read
            return
        if int(version) > current + 1:  # one went by unheard: read everything again
            await self.reset()
            return
        await self._apply(scope)
        self.registry.version = version

    async def reset(self) -> None:
        """Forget every cached entry and key, and read the entries again."""
        self.keys.forget_all()
        await self.registry.load()

    async def _listen(self) -> None:
        await self.store.pubsub.listen(
            keys.MODELS_CHANNEL, self._heard, what="models listener", on_ready=self.reset
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                if await self.store.models.version() != self.registry.version:
                    await self.reset()
                await self.clients.sweep(self.registry.is_current)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("models poll failed: %s", type(exc).__name__)

    # -- the admin API's writes --------------------------------------------------------------

    async def put_model(self, entry: ModelEntry) -> bool | None:
        """Create or replace an API entry; True created, False replaced, None refused (its
        scope holds the most entries it may)."""
        limit = MAX_SHARED_MODELS if entry.org_id is None else MAX_ORG_MODELS
        result = await self.store.models.put(entry.org_id, entry.id, entry.to_record(), limit=limit)
        if result < 0:
            return None
        await self.changed("models", entry.org_id)
        return result == 1

    async def delete_model(self, org: str | None, model_id: str) -> bool:
        deleted = await self.store.models.delete(org, model_id)
        if deleted:
            await self.changed("models", org)
        return deleted

    # -- the connection test -----------------------------------------------------------------

    async def test(self, entry: ModelEntry, api_key: str | None = None) -> ProbeResult | None:
        """One test of the entry at a time across workers (None: another is running), with
        the platform's credential or `api_key` (a repository's); its result is kept for the
        admin page."""
        token = secrets.token_hex(8)
        timeout = min(TEST_TIMEOUT, entry.config.connect_timeout + entry.config.read_timeout)
        org = entry.org_id
        if not await self.store.models.begin_test(org, entry.id, token, int(timeout * 1000) + 1000):
            return None
        try:
            provider = self.clients.provider(entry, api_key, shared=org is None)
            holder = _Test()
            self.hold(holder, provider)  # not closed under the test, like a turn's client
            result = await probe(
                provider, entry.config.upstream_model, timeout=timeout, at=now_ms()
            )
            del holder
            await self.store.models.save_health(org, entry.id, result.to_record())
            return result
        finally:
            with contextlib.suppress(Exception):
                await self.store.models.end_test(org, entry.id, token)

    async def health(self, org: str | None) -> dict[str, ProbeResult]:
        found = {}
        for model_id, raw in (await self.store.models.health(org)).items():
            with contextlib.suppress(ValueError, TypeError):
                found[model_id] = ProbeResult.from_record(raw)
        return found


class _Test:
    """What holds a provider client while a connection test runs."""


async def open_vault(settings: Settings, store: Store) -> Vault | None:
    """The KEKs the settings name, checked against what Redis holds (models/vault.py)."""
    canaries = await store.provider_keys.canaries()
    if not settings.encryption_key:
        refuse_without_vault(canaries)
        return None
    secret = await store.credentials.shared_secret("provider-key-fingerprint")
    vault = Vault(parse_keks(settings.encryption_key), fingerprint_secret=secret)
    vault.check(canaries)
    return vault
