"""The gateway's one Redis client per worker, and the aggregates that speak through it."""

from __future__ import annotations

from gateway.storage import client
from gateway.storage.admin_objects import Policies, Repositories
from gateway.storage.conversations import Conversations
from gateway.storage.credentials import Credentials
from gateway.storage.durability import Durability, Replication
from gateway.storage.events import Events
from gateway.storage.models import Models
from gateway.storage.provider_keys import ProviderKeys
from gateway.storage.pubsub import PubSub
from gateway.storage.quotas import Quotas
from gateway.storage.resume_log import ResumeLogs
from gateway.storage.turns import Turns
from gateway.storage.usage import Usage


class Store:
    """Only gateway/storage/ speaks Redis; everything else asks one of these."""

    def __init__(self, redis: client.AnyRedis, *, durability: Durability | None = None) -> None:
        self.redis = redis
        self.replication = Replication(redis, durability or Durability())
        self.conversations = Conversations(redis)
        self.usage = Usage(redis)
        self.turns = Turns(redis, self.replication, self.usage)
        self.resume_logs = ResumeLogs(redis)
        self.pubsub = PubSub(redis)
        self.credentials = Credentials(redis)
        self.policies = Policies(redis)
        self.repositories = Repositories(redis)
        self.events = Events(redis)
        self.quotas = Quotas(redis)
        self.models = Models(redis)
        self.provider_keys = ProviderKeys(redis)

    @classmethod
    def connect(
        cls, url: str, *, cluster: bool = False, durability: Durability | None = None
    ) -> Store:
        return cls(client.connect(url, cluster=cluster), durability=durability)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def aclose(self) -> None:
        await self.replication.aclose()
        await client.close(self.redis)
