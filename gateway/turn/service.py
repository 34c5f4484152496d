"""The turn as the routes use it: prepare (every check that can still be an HTTP error),
open (the upstream accepts), run (the events that each API style frames)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.access.principal import Principal
from gateway.access.quotas import RateLimits
from gateway.governance import Governance
from gateway.models.connections import Connections
from gateway.observability import Metrics
from gateway.settings import Settings
from gateway.storage.records import Conversation
from gateway.storage.store import Store
from gateway.turn.events import ChatEvent
from gateway.turn.followers import Followers
from gateway.turn.live import Live
from gateway.turn.prepare import Preparation, Prompt
from gateway.turn.record import Recorder
from gateway.turn.run import Runner
from gateway.turn.salvage import Salvage
from gateway.turn.turn import Turn
from gateway.turn.upstream import Upstream


class ChatService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        connections: Connections,
        metrics: Metrics,
        live: Live,
        governance: Governance,
    ) -> None:
        self.settings = settings
        self.store = store
        self.live = live
        self.limits = RateLimits(settings.limits, store.quotas)
        recorder = Recorder(settings, store, live, governance, self.limits, metrics)
        self.upstream = Upstream(settings, connections, metrics, recorder)
        salvage = Salvage(settings, store, self.limits, connections)
        self.preparation = Preparation(
            settings, store, connections, governance, self.limits, live, salvage
        )
        self.runner = Runner(self.upstream, recorder, live, metrics)
        self.followers = Followers(settings, store, salvage)

    async def visible_conversation(self, principal: Principal, cid: str) -> Conversation:
        return await self.preparation.visible_conversation(principal, cid)

    async def prepare(self, ask: Prompt) -> Turn:
        return await self.preparation.prepare(ask)

    async def open(self, turn: Turn) -> None:
        await self.upstream.open(turn)

    def run(self, turn: Turn) -> AsyncIterator[ChatEvent]:
        return self.runner.run(turn)
