"""The gateway's Redis clients per worker, and the aggregates that speak through them.

Requests share one client (its pool). Two more keep what must not wait behind a burst of
requests, nor make them wait, on connections of their own: `readers`, the resume followers'
blocking reads (one per followed message, gateway/turn/followers.py), and `control`, the
worker's heartbeat and the checks of other workers' heartbeats (a worker is declared gone
only when its heartbeat is absent, never because our own pool was busy)."""

from __future__ import annotations

from redis.asyncio import RedisCluster

from gateway.storage import client
from gateway.storage.admin_objects import Policies, Repositories
from gateway.storage.batch import batch
from gateway.storage.conversations import Conversations
from gateway.storage.credentials import Credentials
from gateway.storage.durability import Durability, Replication
from gateway.storage.events import Events
from gateway.storage.lane import lane
from gateway.storage.models import Models
from gateway.storage.provider_keys import ProviderKeys
from gateway.storage.pubsub import PubSub
from gateway.storage.quotas import Quotas
from gateway.storage.resume_log import ResumeLogs
from gateway.storage.turns import Turns
from gateway.storage.usage import Usage

READER_CONNECTIONS = 256  # followed messages read at once per worker; more wait their turn
CONTROL_CONNECTIONS = 4
# A connection Redis answered on this recently is taken as up, without a PING of its own:
# a Redis that went away closed it (a lost connection is known at once), one that hangs
# has not answered for longer than this. Under load every turn finds it so.
ANSWERED_LATELY = 0.5


class Store:
    """Only gateway/storage/ speaks Redis; everything else asks one of these."""

    def __init__(
        self,
        redis: client.AnyRedis,
        *,
        durability: Durability | None = None,
        readers: client.AnyRedis | None = None,
        control: client.AnyRedis | None = None,
    ) -> None:
        self.redis = redis
        self.readers = readers or redis
        self.control = control or redis
        self.replication = Replication(redis, durability or Durability())
        self.conversations = Conversations(redis)
        self.usage = Usage(redis)
        self.turns = Turns(redis, self.replication, self.usage)
        self.resume_logs = ResumeLogs(redis)
        self.resume_readers = ResumeLogs(self.readers)
        self.pubsub = PubSub(redis, control=self.control)
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
        return cls(
            client.connect(url, cluster=cluster),
            durability=durability,
            readers=client.connect(url, cluster=cluster, max_connections=READER_CONNECTIONS),
            control=client.connect(url, cluster=cluster, max_connections=CONTROL_CONNECTIONS),
        )

    def answered_lately(self) -> bool:
        """Whether Redis answered on the connection a plain client's batches share within
        ANSWERED_LATELY seconds (it is then as good as pinged; a cluster's client: never)."""
        if isinstance(self.redis, RedisCluster):
            return False
        shared = lane(self.redis)
        return shared is not None and shared.answered_within(ANSWERED_LATELY)

    async def ping(self) -> bool:
        """On the connection a plain client's batches share (lane.py): what a turn's writes
        would meet. A cluster's client pings its nodes."""
        if isinstance(self.redis, RedisCluster):
            return bool(await self.redis.ping())
        pipe = batch(self.redis)
        pipe.execute_command("PING")
        (pong,) = await pipe.execute()
        return bool(pong)

    async def aclose(self) -> None:
        await self.replication.aclose()
        for extra in {
            id(c): c for c in (self.readers, self.control) if c is not self.redis
        }.values():
            await client.close(extra)
        await client.close(self.redis)
