"""The model registry over Redis: the config file's entries, the shared ones, an org's own
(read on first use), an id not heard of yet read once before a 404, and which entry
versions are still served (a provider client of any other may be closed)."""

from __future__ import annotations

from gateway.models.registry import ModelEntry, ModelRegistry
from gateway.settings import ModelConfig, load_settings


def api_entry(model_id: str, org: str | None, updated_at: int) -> ModelEntry:
    config = ModelConfig(id=model_id, provider="demo")
    return ModelEntry(config, source="api", org_id=org, updated_at=updated_at)


async def test_lookup_order_and_the_versions_served(store, redis):
    registry = ModelRegistry(load_settings(None, env={}), store)
    await registry.load()
    assert [e.id for e in registry.config_entries()] == ["demo"]
    odd_org, odd_id = "org:with:colons", "model:id"
    shared = api_entry("shared-one", None, 1)
    own = api_entry(odd_id, odd_org, 7)
    await store.models.put(None, shared.id, shared.to_record(), limit=10)
    await store.models.put(odd_org, own.id, own.to_record(), limit=10)

    # not heard of yet: read once, then kept
    found = await registry.get("shared-one", "acme")
    assert found is not None and found.uid == shared.uid
    assert (await registry.get(odd_id, odd_org)).uid == own.uid
    assert await registry.get(odd_id, "another-org") is None  # an org's own is its own
    assert await registry.get("demo", odd_org) is registry.first
    assert registry.is_current(shared.uid) and registry.is_current(own.uid)
    assert registry.is_current(registry.first.uid)

    replaced = api_entry(odd_id, odd_org, 8)
    await store.models.put(odd_org, replaced.id, replaced.to_record(), limit=10)
    registry.forget_org(odd_org)
    assert (await registry.get(odd_id, odd_org)).uid == replaced.uid
    assert not registry.is_current(own.uid) and registry.is_current(replaced.uid)
    assert [e.id for e in await registry.visible(odd_org)] == ["demo", "shared-one", odd_id]
