"""Helpers of the cluster tests."""

from __future__ import annotations

from typing import Any

from redis.asyncio import RedisCluster


class ClusterTestClient(RedisCluster):
    """The tests' raw client. KEYS goes to every primary (redis-py sends it to one node)."""

    async def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return await super().keys(pattern, **kwargs)
