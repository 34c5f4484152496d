"""Verified JWTs are kept per worker so their signature is not checked on every request, and
the cache changes no verdict: a token that expires is refused at its own `exp` although it
was cached, only verified tokens get in (a forger's floods leave nothing), and a flood of
distinct valid tokens keeps at most VERIFIED_CACHE_SIZE of them. Nothing is stored in Redis
for any of it."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from gateway.access.auth import Authenticator, digest
from gateway.access.jwts import VERIFIED_CACHE_SIZE
from gateway.errors import Unauthorized
from gateway.settings import load_settings
from gateway.storage.store import Store
from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import JWT_SECRET, bearer

LIST = f"/api/conversation/list?org_id={ORG}"


@pytest.fixture
async def auth(redis_url, redis):
    from redis.asyncio import Redis

    store = Store(Redis.from_url(redis_url, decode_responses=True))
    yield Authenticator(
        load_settings(env={"GATEWAY_REDIS_URL": "redis://x", "GATEWAY_JWT_SECRET": JWT_SECRET}),
        store,
    )
    await store.aclose()


def token(sub: str = "alice", *, exp: float | None = None, secret: str = JWT_SECRET) -> str:
    claims = {"sub": sub, "org_id": ORG, "role": "user", "exp": exp or int(time.time()) + 600}
    return jwt.encode(claims, secret, algorithm="HS256")


async def until_past(exp: int) -> None:
    await asyncio.sleep(max(exp - time.time(), 0) + 0.05)


async def test_a_cached_token_is_refused_at_its_own_exp(auth):
    exp = int(time.time()) + 2
    tok = token(exp=exp)
    first = await auth.authenticate(f"Bearer {tok}", client=None)
    again = await auth.authenticate(f"Bearer {tok}", client=None)
    assert again is first  # the second request was answered from the cache
    assert len(auth.verified_jwts) == 1
    await until_past(exp)
    with pytest.raises(Unauthorized, match="token expired") as refused:
        await auth.authenticate(f"Bearer {tok}", client=None)
    assert refused.value.code == "token_expired"  # the verifier's own refusal, word for word
    assert len(auth.verified_jwts) == 0


async def test_only_verified_tokens_are_kept(auth):
    for n in range(500):  # a forger's flood: signed with the wrong secret, or expired
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {token(f'u{n}', secret='x' * 32)}", client=None)
        with pytest.raises(Unauthorized, match="expired"):
            await auth.authenticate(f"Bearer {token(f'u{n}', exp=time.time() - 1)}", client=None)
    assert len(auth.verified_jwts) == 0


async def test_a_flood_of_distinct_valid_tokens_keeps_the_newest_up_to_the_bound(auth):
    tokens = [token(f"u{n}") for n in range(VERIFIED_CACHE_SIZE + 100)]
    for tok in tokens:
        await auth.authenticate(f"Bearer {tok}", client=None)
    assert len(auth.verified_jwts) == VERIFIED_CACHE_SIZE
    now = time.time()
    assert auth.verified_jwts.get(digest(tokens[-1]), now) is not None
    assert auth.verified_jwts.get(digest(tokens[0]), now) is None  # the oldest went first
    # an evicted token is simply verified again
    p = await auth.authenticate(f"Bearer {tokens[0]}", client=None)
    assert p.user_id == "u0" and len(auth.verified_jwts) == VERIFIED_CACHE_SIZE


async def test_over_http_a_cached_token_works_until_its_exp_even_from_a_throttled_address(
    gateway_factory, redis
):
    async with gateway_factory(env={"GATEWAY_AUTH_FAILURES_PER_MINUTE": "3"}) as gw:
        exp = int(time.time()) + 2
        seen = token(exp=exp)
        assert (await gw.http.get(LIST, headers=bearer(seen))).status_code == 200  # now cached
        before = await snapshot(redis)
        for n in range(3):
            r = await gw.http.get(LIST, headers=bearer(token(f"u{n}", secret="y" * 32)))
            assert r.status_code == 401
        # the address is throttled: a token never seen waits, the verified one still passes
        r = await gw.http.get(LIST, headers=bearer(token("bob")))
        assert (r.status_code, r.json()["code"]) == (429, "auth_throttled")
        assert (await gw.http.get(LIST, headers=bearer(seen))).status_code == 200
        await until_past(exp)
        # past its exp the cached token is no longer known: throttled like any other token
        r = await gw.http.get(LIST, headers=bearer(seen))
        assert (r.status_code, r.json()["code"]) == (429, "auth_throttled")
        assert await snapshot(redis) == before


async def test_over_http_an_expired_cached_token_is_answered_token_expired(client):
    exp = int(time.time()) + 2
    tok = token("carol", exp=exp)
    assert (await client.http.get(LIST, headers=bearer(tok))).status_code == 200
    assert (await client.http.get(LIST, headers=bearer(tok))).status_code == 200
    await until_past(exp)
    r = await client.http.get(LIST, headers=bearer(tok))
    assert r.status_code == 401
    assert r.json() == {"success": False, "code": "token_expired", "message": "token expired"}
