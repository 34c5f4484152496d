"""Provider clients: one per model entry version and credential (the platform's, or a
repository's own key), built on first use and kept while they serve.

A client is never closed under a running stream: every turn that uses one is registered as
its holder (a weak reference: a turn that is gone, on whatever path it ended, no longer
holds). A client whose entry was replaced or deleted, or that has been idle for IDLE_CLOSE,
or that fell out of the MAX_CLIENTS most recently used, is closed once it has no holder
(sweep(), every second from models/connections.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.models.registry import ModelEntry
from gateway.settings import Settings
from providers import build_provider
from providers.base import ModelSpec, Provider

log = logging.getLogger("gateway.models")

MAX_CLIENTS = 1000  # clients kept per worker (each holds a connection pool)
IDLE_CLOSE = 600.0  # seconds without a turn before a repository key's client is closed

SHARED = ""  # the credential of the platform (the config file's variables)


@dataclass(slots=True)
class _Slot:
    uid: str
    credential: str  # SHARED, or a digest of the repository's key
    provider: Provider
    holders: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    used: float = field(default_factory=time.monotonic)


def credential_id(api_key: str | None) -> str:
    return SHARED if api_key is None else hashlib.sha256(api_key.encode()).hexdigest()


class ProviderClients:
    def __init__(self, settings: Settings, *, max_clients: int = MAX_CLIENTS) -> None:
        self.settings = settings
        self.max_clients = max_clients
        self._slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()
        self._by_provider: dict[int, _Slot] = {}
        self._retired: list[_Slot] = []  # out of the cache, waiting for their holders

    def spec(self, entry: ModelEntry, api_key: str | None, *, shared: bool) -> ModelSpec:
        """The entry as its adapter needs it: with `api_key`, or with the platform's own
        credential when `shared` (else none: an org's own entry never gets the platform's)."""
        spec = self.settings.model_spec(entry.config)
        if api_key is not None or not shared:
            spec = replace(spec, api_key=api_key)
        return spec

    def provider(self, entry: ModelEntry, api_key: str | None, *, shared: bool) -> Provider:
        key = (entry.uid, credential_id(api_key))
        slot = self._slots.get(key)
        if slot is None:
            provider = build_provider(self.spec(entry, api_key, shared=shared))
            slot = self._slots[key] = _Slot(entry.uid, key[1], provider)
            self._by_provider[id(provider)] = slot
            while len(self._slots) > self.max_clients:
                _, oldest = self._slots.popitem(last=False)
                self._retired.append(oldest)
        else:
            self._slots.move_to_end(key)
        slot.used = time.monotonic()
        return slot.provider

    def hold(self, holder: Any, provider: Provider) -> None:
        """`holder` (a turn) uses `provider` until it is gone."""
        slot = self._by_provider.get(id(provider))
        if slot is not None:
            slot.holders.add(holder)
            slot.used = time.monotonic()

    def holders(self, provider: Provider) -> int:
        slot = self._by_provider.get(id(provider))
        return len(slot.holders) if slot is not None else 0

    def __len__(self) -> int:
        return len(self._slots) + len(self._retired)

    async def sweep(self, current: Callable[[str], bool]) -> int:
        """Close what nothing serves any more; returns how many were closed."""
        now = time.monotonic()
        for key, slot in list(self._slots.items()):
            idle = slot.credential != SHARED and now - slot.used > IDLE_CLOSE
            if not current(slot.uid) or idle:
                del self._slots[key]
                self._retired.append(slot)
        closing = [s for s in self._retired if not s.holders]
        self._retired = [s for s in self._retired if s.holders]
        for slot in closing:
            self._by_provider.pop(id(slot.provider), None)
            with contextlib.suppress(Exception):
                await slot.provider.aclose()
        return len(closing)

    async def aclose(self) -> None:
        for slot in [*self._slots.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await slot.provider.aclose()
        self._slots.clear()
        self._retired.clear()
        self._by_provider.clear()
