"""gateway/storage/client.py: which client a URL and the cluster setting give, and the
redis+sentinel:// URL form (its failover is exercised in tests/cluster/test_sentinel.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster

from gateway.settings import ConfigError, load_settings
from gateway.storage.client import SentinelTarget, connect, parse_sentinel_url


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_login():
    assert parse_sentinel_url(
        "redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2"
    ) == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)),
        service="mymaster",
        db=2,
        username=None,
        password="s@cret",
    )
    t = parse_sentinel_url("rediss+sentinel://app:pw@s1:5000/gw?sentinel_password=sp")
    assert (t.sentinels, t.service, t.db, t.username, t.password, t.sentinel_password, t.ssl) == (
        (("s1", 5000),),
        "gw",
        0,
        "app",
        "pw",
        "sp",
        True,
    )


@pytest.mark.parametrize(
    "url, why",
    [
        ("redis+sentinel://s1:26379", "no service name"),
        ("redis+sentinel://s1:26379/", "no service name"),
        ("redis+sentinel:///gw", "no sentinel address"),
        ("redis+sentinel://s1:port/gw", "bad port"),
        ("redis+sentinel://s1/gw/zero", "/<service>[/<db number>]"),
        ("redis+sentinel://s1/gw?timeout=3", "unknown option"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url, why):
    with pytest.raises(ValueError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_sentinel_url(url)
    with pytest.raises(ConfigError, match="^redis_url: "):
        load_settings(env={"GATEWAY_REDIS_URL": url})


async def test_the_factory_picks_the_client_for_the_url():
    plain = connect("redis://127.0.0.1:1/0")
    cluster = connect("redis://127.0.0.1:1", cluster=True)
    watched = connect("redis+sentinel://127.0.0.1:1/gw/3")
    assert type(plain) is Redis and type(cluster) is RedisCluster
    assert type(watched) is Redis and watched.connection_pool.service_name == "gw"
    assert watched.connection_pool.connection_kwargs["db"] == 3
    for client in (plain, cluster, watched):
        await client.aclose()
    with pytest.raises(ValueError):
        connect("unix:///tmp/redis.sock", cluster=True)


def test_cluster_and_durability_settings():
    s = load_settings(
        env={
            "GATEWAY_REDIS_URL": "redis://10.0.0.5:7000",
            "GATEWAY_REDIS_CLUSTER": "yes",
            "GATEWAY_DURABILITY_REPLICAS": "0",
            "GATEWAY_DURABILITY_TIMEOUT_MS": "250",
        }
    )
    assert (s.redis_cluster, s.durability_replicas, s.durability_timeout_ms) == (True, 0, 250)
    assert load_settings(env={}).durability_replicas == "auto"
    for env, field in [
        ({"GATEWAY_REDIS_CLUSTER": "true"}, "redis_cluster"),  # a cluster needs a node's URL
        (
            {"GATEWAY_REDIS_URL": "redis+sentinel://s/gw", "GATEWAY_REDIS_CLUSTER": "true"},
            "redis_cluster",
        ),
        ({"GATEWAY_DURABILITY_REPLICAS": "some"}, "durability_replicas"),
        ({"GATEWAY_DURABILITY_TIMEOUT_MS": "0"}, "durability_timeout_ms"),
    ]:
        with pytest.raises(ConfigError, match=f"^{field}"):
            load_settings(env=env)


async def test_a_full_pool_waits_instead_of_failing(redis_url, redis):
    """A burst larger than the pool queues for a connection rather than raising."""
    import asyncio

    from gateway.storage.client import close, connect

    client = connect(redis_url, max_connections=4)
    try:
        results = await asyncio.gather(*(client.incr("burst") for _ in range(200)))
        assert sorted(results) == list(range(1, 201))
    finally:
        await close(client)
