"""How many replicas acknowledge a write before the gateway says it is stored (WAIT), and,
on a Redis Cluster, running a write and its WAIT on one connection to the right primary."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    RedisError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from gateway.storage import keys
from gateway.storage.batch import batch
from gateway.storage.scripts import Script

REPLICA_CHECK_INTERVAL = 5.0
NODE_CONNECTIONS = 256  # per cluster primary, for the end of turns and their WAIT
_CLUSTER_MOVES = (ConnectionError, TimeoutError, AskError, ClusterDownError, TryAgainError)

# A write that changes nothing but is replicated, so that a WAIT after it means something.
_TOUCH = "return redis.call('HINCRBY', KEYS[1], 'tokens_in', 0)"


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must acknowledge an answer's write before its `end` goes out:
    "auto" waits for one whenever the primary has a replica (INFO replication, re-read every
    REPLICA_CHECK_INTERVAL seconds), 0 never waits."""

    replicas: Literal["auto"] | int = "auto"
    timeout_ms: int = 1000


class NotReplicated(RedisError):
    """The write is on the primary, but its replicas did not acknowledge it in time."""


class Replication:
    """WAIT for the replicas Durability asks for. On a cluster, a plain client per primary
    (its own pool, same options), so that a write and the WAIT after it share a connection."""

    def __init__(self, redis: Redis | RedisCluster, durability: Durability) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.durability = durability
        self._touch = Script(redis, _TOUCH)
        self._node_clients: dict[str, Redis] = {}
        self._replica_counts: dict[
            str, tuple[int, float]
        ] = {}  # node ("" = the one server) -> (n, until)

    async def aclose(self) -> None:
        for client in self._node_clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _primary_of(self, key: str) -> Any:
        assert isinstance(self.redis, RedisCluster)
        await self.redis.initialize()  # a no-op once the slots are known
        try:
            return self.redis.get_node_from_key(key)
        except SlotNotCoveredError as exc:  # mid-failover: a RedisError, retried like one
            await self.refresh_topology()
            raise ClusterDownError(str(exc)) from exc

    def _node_client(self, node: Any) -> Redis:
        """A full pool waits for a free connection rather than failing at once (a burst of
        turns ending together)."""
        client = self._node_clients.get(node.name)
        if client is None:
            pool = BlockingConnectionPool(
                connection_class=node.connection_class,
                max_connections=NODE_CONNECTIONS,
                timeout=5,
                **node.connection_kwargs,
            )
            client = self._node_clients[node.name] = Redis.from_pool(pool)
        return client

    async def refresh_topology(self) -> None:
        """After a failover the client's slot map is stale until something refreshes it."""
        if isinstance(self.redis, RedisCluster):
            with contextlib.suppress(Exception):
                await self.redis.nodes_manager.initialize()

    async def replicas_to_wait(self, node: Any = None) -> int:
        wanted = self.durability.replicas
        if wanted != "auto":
            return wanted
        name = node.name if node is not None else ""
        now = time.monotonic()
        cached = self._replica_counts.get(name)
        if cached is None or cached[1] < now:
            info = await self._replication_info(node)
            count = int(info.get("connected_slaves", 0)) if info.get("role") == "master" else 0
            cached = self._replica_counts[name] = (count, now + REPLICA_CHECK_INTERVAL)
        return min(1, cached[0])

    async def _replication_info(self, node: Any) -> dict[str, Any]:
        if node is not None:
            return await self._node_client(node).info("replication")
        if isinstance(self.redis, RedisCluster):
            return await self.redis.info("replication")
        # a plain client asks on its Lane (lane.py), as the turn it is for will write: no
        # pooled connection has to be opened for it (under a burst of turns ending at once,
        # with the process's descriptors all taken by streams, that open failed)
        pipe = batch(self.redis)
        pipe.execute_command("INFO", "replication")
        (info,) = await pipe.execute()
        return cast(dict[str, Any], info)

    def forget_replicas(self, node: Any = None) -> None:
        self._replica_counts.pop(node.name if node is not None else "", None)

    def queue_wait(self, pipe: Any, wait: int) -> None:
        if wait:
            pipe.execute_command("WAIT", wait, self.durability.timeout_ms)

    async def run_on_primary(
        self, key: str, script: Script, keys_: list[str], args: list[Any]
    ) -> tuple[Any, int, int]:
        """Cluster: the script, then WAIT, pipelined on one connection to the primary of
        `key`'s slot. Returns (script result, replicas wanted, replicas that acknowledged)."""
        node = await self._primary_of(key)
        try:
            wait = await self.replicas_to_wait(node)
            pipe = self._node_client(node).pipeline(transaction=False)
            script.queue(pipe, keys_, args)
            self.queue_wait(pipe, wait)
            results = await pipe.execute()
            acked = int(results[1]) if wait else 0
            if acked < wait:
                self.forget_replicas(node)
            return results[0], wait, acked
        except RedisError as exc:
            if isinstance(exc, _CLUSTER_MOVES):  # MovedError is an AskError
                self.forget_replicas(node)
                await self.refresh_topology()
            raise

    async def confirm(self, cid: str, *, required: bool = False) -> bool:
        """Ask the replicas again, for a turn whose WAIT fell short: a tiny write in the
        conversation's slot, then WAIT, on one connection (replication offsets only grow,
        so an acknowledgement of this write covers every earlier one). With `required`,
        raise NotReplicated instead of answering False (for a retry loop)."""
        key = keys.conversation(cid)
        if self.cluster:
            _, wait, acked = await self.run_on_primary(key, self._touch, [key], [])
        else:
            wait = await self.replicas_to_wait()
            acked = 0
            if wait:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hincrby(key, "tokens_in", 0)
                self.queue_wait(pipe, wait)
                acked = int((await pipe.execute())[1])
                if acked < wait:
                    self.forget_replicas()
        if acked < wait and required:
            raise NotReplicated(f"{acked} of {wait} replicas acknowledged conversation {cid}")
        return acked >= wait
