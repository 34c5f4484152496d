"""Provider clients: one per entry version and credential, never closed while a turn holds
it, closed once nothing serves it (its entry replaced, or idle with a repository's key)."""

from __future__ import annotations

import gc

from gateway.models.clients import ProviderClients
from gateway.models.registry import ModelEntry
from gateway.settings import ModelConfig, load_settings


class Holder:
    """Stands for a turn: anything a weak reference can point at."""


def entry(updated_at: int) -> ModelEntry:
    config = ModelConfig(id="m", provider="demo")
    return ModelEntry(config, source="api", org_id="acme", updated_at=updated_at)


async def test_a_replaced_entrys_client_waits_for_its_last_turn():
    clients = ProviderClients(load_settings(None, env={}))
    old, new = entry(1), entry(2)
    provider = clients.provider(old, None, shared=False)
    assert clients.provider(old, None, shared=False) is provider  # one per entry version
    turn = Holder()
    clients.hold(turn, provider)
    current = {new.uid}
    assert clients.provider(new, None, shared=False) is not provider
    assert await clients.sweep(lambda uid: uid in current) == 0  # the turn still streams
    assert clients.holders(provider) == 1 and len(clients) == 2
    del turn
    gc.collect()
    assert await clients.sweep(lambda uid: uid in current) == 1
    assert len(clients) == 1 and clients.holders(provider) == 0


async def test_a_repository_key_gets_a_client_of_its_own():
    clients = ProviderClients(load_settings(None, env={}))
    e = entry(1)
    shared = clients.provider(e, None, shared=False)
    keyed = clients.provider(e, "sk-repo-key-1", shared=False)
    other = clients.provider(e, "sk-repo-key-2", shared=False)
    assert len({id(shared), id(keyed), id(other)}) == 3
    assert clients.spec(e, "sk-repo-key-1", shared=False).api_key == "sk-repo-key-1"
    await clients.aclose()
    assert len(clients) == 0


def test_an_orgs_own_entry_never_gets_the_platforms_credential():
    settings = load_settings(None, env={"OPENAI_API_KEY": "sk-platform"})
    clients = ProviderClients(settings)
    config = ModelConfig(id="o", provider="openai")
    own = ModelEntry(config, source="api", org_id="acme", updated_at=1)
    shared = ModelEntry(config, source="api", org_id=None, updated_at=1)
    assert clients.spec(own, None, shared=False).api_key is None
    assert clients.spec(shared, None, shared=True).api_key == "sk-platform"
    assert clients.spec(own, "sk-repo", shared=False).api_key == "sk-repo"
