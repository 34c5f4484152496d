"""How the gateway reaches Redis: one factory for a single server (redis://, rediss://,
unix://), a Redis Cluster (`redis_cluster`: the URL names any node) and a primary watched
by Sentinel (redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]).

`serve`'s workers, the CLI and the tests all connect through `connect()`, so they agree on
timeouts, decoding and the cluster or sentinel client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel

from gateway.storage import lane

SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
SENTINEL_PORT = 26379
CLUSTER_MAX_CONNECTIONS = 1000  # per node; redis-py refuses (not waits) beyond it: keep it roomy

AnyRedis = Redis | RedisCluster


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a redis+sentinel:// URL names: where the sentinels listen, which service
    (the `sentinel monitor` name) and how to log in to its primary."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None  # ?sentinel_password=: when the sentinels want one
    ssl: bool = False


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEMES)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?sentinel_password=...]
    Raises ValueError with a one-line reason."""
    if not is_sentinel_url(url):
        raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
    scheme, rest = url.split("://", 1)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for part in hosts.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("["):  # [ipv6]:port
            host, _, tail = part[1:].partition("]")
            port_text = tail.removeprefix(":")
        else:
            host, _, port_text = part.partition(":")
        if not host:
            raise ValueError(f"sentinel address without a host: {part!r}")
        try:
            port = int(port_text) if port_text else SENTINEL_PORT
        except ValueError:
            raise ValueError(f"sentinel address with a bad port: {part!r}") from None
        sentinels.append((host, port))
    if not sentinels:
        raise ValueError("no sentinel address (host:port[,host:port])")
    segments = [unquote(s) for s in path.split("/") if s]
    if not segments:
        raise ValueError("no service name: redis+sentinel://host:26379/<service>[/db]")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError("the path is /<service>[/<db number>]")
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown option {min(unknown)!r} (known: sentinel_password)")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        service=segments[0],
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password"),
        ssl=scheme == "rediss+sentinel",
    )


def connect(
    url: str,
    *,
    cluster: bool = False,
    decode_responses: bool = True,
    max_connections: int = 512,
    **options: Any,
) -> AnyRedis:
    """The asyncio client for `url`: RedisCluster when `cluster`, a Sentinel-managed
    primary for redis+sentinel://, else a plain Redis. No I/O until the first command."""
    common: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        **options,
    }
    if is_sentinel_url(url):
        if cluster:
            raise ValueError("a Sentinel URL names one primary, not a Redis Cluster")
        target = parse_sentinel_url(url)
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": common["socket_timeout"],
            "socket_connect_timeout": common["socket_connect_timeout"],
        }
        if target.sentinel_password:
            sentinel_kwargs["password"] = target.sentinel_password
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        primary: Redis = sentinel.master_for(
            target.service,
            db=target.db,
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            health_check_interval=30,
            **common,
        )
        return primary
    if cluster:
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError(
                "a Redis Cluster is reached with a redis:// or rediss:// URL of any node"
            )
        return RedisCluster.from_url(url, max_connections=CLUSTER_MAX_CONNECTIONS, **common)
    # a full pool waits for a free connection (up to the socket timeout) instead of failing:
    # under a burst of stream opens the default pool raised MaxConnectionsError (BENCHMARKS.md)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=common["socket_timeout"],
        health_check_interval=30,
        **common,
    )
    return Redis.from_pool(pool)


async def close(client: AnyRedis) -> None:
    """Close the client, its Lane, and the sentinel connections a Sentinel-managed one
    holds."""
    if isinstance(client, Redis):
        await lane.close(client)
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
