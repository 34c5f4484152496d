"""A guesser presenting bad tokens from one address: after its budget of failures it gets 429
with Retry-After before its next token is looked at (no Redis lookup of an unknown key), while
tokens the gateway already holds for good keep working from that very address, other
addresses are untouched, and X-Forwarded-For moves nobody unless it comes from a trusted
proxy. Through real HTTP; nothing is stored for any refusal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from gateway.access.auth import digest, new_api_key
from gateway.storage import keys
from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import ADMIN_TOKEN, bearer

LIST = f"/api/conversation/list?org_id={ORG}"
BUDGET = 5  # failures per minute in these tests: one more every 12 s once spent


async def guess(http, n: int = 0, **headers: str) -> tuple[int, dict, dict]:
    key = f"cgw_{n:012x}_not-a-key-just-a-guess-of-the-right-shape"
    r = await http.get(LIST, headers={**bearer(key), **headers})
    return r.status_code, r.json(), dict(r.headers)


@contextlib.asynccontextmanager
async def monitored(redis_url: str) -> AsyncIterator[bytearray]:
    """Every command Redis runs meanwhile (MONITOR), as the raw text it streams."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(parts.path)
    else:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    seen = bytearray()
    writer.write(b"MONITOR\r\n")
    assert await reader.readline() == b"+OK\r\n"
    try:
        yield seen
        await asyncio.sleep(0.2)
        with contextlib.suppress(TimeoutError):
            while chunk := await asyncio.wait_for(reader.read(65536), 0.2):
                seen += chunk
    finally:
        writer.close()


async def mint(store) -> str:
    key_id, key = new_api_key()
    await store.credentials.save_api_key(
        digest(key),
        {"key_id": key_id, "org_id": ORG, "user_id": "kim", "role": "user", "workspaces": []},
    )
    return key


async def test_a_guesser_is_throttled_and_known_callers_at_its_address_are_not(
    gateway_factory, store, redis, redis_url
):
    env = {"GATEWAY_AUTH_FAILURES_PER_MINUTE": str(BUDGET)}
    async with gateway_factory(env=env) as gw:
        key = await mint(store)
        assert (await gw.http.get(LIST, headers=bearer(key))).status_code == 200  # now cached
        before = await snapshot(redis)
        async with monitored(redis_url) as commands:
            for n in range(BUDGET):
                status, body, _ = await guess(gw.http, n)
                assert (status, body["code"]) == (401, "unauthorized")
        assert keys.api_key("").encode() in commands  # each of these was looked up
        async with monitored(redis_url) as commands:
            for n in range(BUDGET, BUDGET + 20):
                status, body, headers = await guess(gw.http, n)
                assert (status, body["code"], body["success"]) == (429, "auth_throttled", False)
                assert 1 <= int(headers["retry-after"]) <= 60 // BUDGET
        assert keys.api_key("").encode() not in commands  # no guess was looked up in Redis
        # a spoofed X-Forwarded-For is not believed: no trusted proxy is configured
        status, _, _ = await guess(gw.http, 99, **{"X-Forwarded-For": "203.0.113.7"})
        assert status == 429
        # what this worker already holds for good still passes from the same address
        assert (await gw.http.get(LIST, headers=bearer(key))).status_code == 200
        assert (await gw.http.get(LIST, headers=bearer(ADMIN_TOKEN))).status_code == 200
        assert await snapshot(redis) == before


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(gateway_factory):
    env = {"GATEWAY_AUTH_FAILURES_PER_MINUTE": str(BUDGET), "GATEWAY_TRUSTED_PROXIES": "127.0.0.1"}
    async with gateway_factory(env=env) as gw:
        mallory = {"X-Forwarded-For": "203.0.113.7"}
        for n in range(BUDGET):
            assert (await guess(gw.http, n, **mallory))[0] == 401
        assert (await guess(gw.http, 50, **mallory))[0] == 429
        # another client behind the same proxy, and IPv6 clients of one /64 sharing a budget
        assert (await guess(gw.http, 51, **{"X-Forwarded-For": "198.51.100.20"}))[0] == 401
        for n in range(BUDGET):
            forwarded = {"X-Forwarded-For": f"2001:db8:1:2::{n + 1:x}"}
            assert (await guess(gw.http, 60 + n, **forwarded))[0] == 401
        neighbour = {"X-Forwarded-For": "2001:db8:1:2:ffff::9"}
        assert (await guess(gw.http, 70, **neighbour))[0] == 429
        assert (await guess(gw.http, 71, **{"X-Forwarded-For": "2001:db8:1:3::1"}))[0] == 401


async def test_the_compatible_apis_throttle_in_their_own_error_shape(gateway_factory):
    async with gateway_factory(env={"GATEWAY_AUTH_FAILURES_PER_MINUTE": "2"}) as gw:
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(2):
            r = await gw.http.post("/v1/chat/completions", json=body, headers={"x-api-key": "bad"})
            assert r.status_code == 401
        r = await gw.http.post("/v1/chat/completions", json=body, headers={"x-api-key": "bad"})
        assert r.status_code == 429 and "retry-after" in r.headers
        assert r.json()["error"]["code"] == "auth_throttled"
