"""Who is calling: admin token, API keys (stored hashed), HS256 and RS256/ES256 JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.access.auth import Authenticator, digest, new_api_key
from gateway.errors import Forbidden, Unauthorized
from gateway.settings import load_settings
from gateway.storage import keys
from gateway.storage.store import Store
from tests.gateway_fixtures import ORG
from tests.support import JWT_SECRET, bearer, commands_for, make_jwt


def _pem_pair(kind: str) -> tuple[bytes, str]:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
async def store(redis_url, redis):
    from redis.asyncio import Redis

    s = Store(Redis.from_url(redis_url, decode_responses=True))
    yield s
    await s.aclose()


def authenticator(store: Store, **env: str) -> Authenticator:
    return Authenticator(load_settings(env={"GATEWAY_REDIS_URL": "redis://x", **env}), store)


def _hs256_by_hand(claims: dict, secret: str) -> str:
    """PyJWT refuses to HMAC-sign with a PEM key; an attacker would not."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    return head + "." + b64(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())


@pytest.mark.parametrize("kind, alg", [("rsa", "RS256"), ("ec", "ES256")])
async def test_public_key_jwts(store, kind, alg):
    private, public = _pem_pair(kind)
    auth = authenticator(store, GATEWAY_JWT_PUBLIC_KEY=public)
    token = make_jwt(
        "u1",
        "org-9",
        "workspace_admin",
        managed=["ws-3"],
        secret=private,
        algorithm=alg,
        email="u1@example.com",
    )
    p = await auth.authenticate(f"Bearer {token}", client=None)
    assert (p.user_id, p.org_id, p.role, p.managed_workspaces, p.email) == (
        "u1",
        "org-9",
        "workspace_admin",
        frozenset({"ws-3"}),
        "u1@example.com",
    )
    other_private, _ = _pem_pair(kind)
    forged = make_jwt("u1", "org-9", secret=other_private, algorithm=alg)
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {forged}", client=None)
    # an HS256 token is refused when only a public key is configured (no alg confusion)
    with pytest.raises(Unauthorized, match="HS256"):
        await auth.authenticate(
            f"Bearer {_hs256_by_hand({'sub': 'u1', 'org_id': 'org-9'}, public)}", client=None
        )


async def test_jwt_claims_are_checked(store):
    auth = authenticator(store, GATEWAY_JWT_SECRET=JWT_SECRET)
    expired = jwt.encode(
        {"sub": "u", "org_id": "o", "exp": int(time.time()) - 10}, JWT_SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="expired"):
        await auth.authenticate(f"Bearer {expired}", client=None)
    no_org = jwt.encode(
        {"sub": "u", "role": "user", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="org_id"):
        await auth.authenticate(f"Bearer {no_org}", client=None)
    admin_claim = jwt.encode(
        {"sub": "u", "org_id": "o", "role": "admin", "exp": int(time.time()) + 60},
        JWT_SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized, match="role"):  # nobody becomes platform admin by JWT
        await auth.authenticate(f"Bearer {admin_claim}", client=None)


async def test_api_keys_are_stored_hashed_and_revocable(store, redis):
    auth = authenticator(store)
    key_id, key = new_api_key()
    await store.credentials.save_api_key(
        digest(key),
        {
            "key_id": key_id,
            "org_id": ORG,
            "user_id": "kim",
            "role": "workspace_admin",
            "workspaces": ["ws-1"],
        },
    )
    p = await auth.authenticate(f"Bearer {key}", client=None)
    assert (p.user_id, p.role, p.key_id, p.managed_workspaces) == (
        "kim",
        "workspace_admin",
        key_id,
        {"ws-1"},
    )
    for k in await redis.keys("*"):
        if await redis.type(k) == b"string":
            assert key.encode() not in await redis.get(k)
    assert await store.credentials.revoke_api_key(key_id)
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {key}", client=None)


async def test_admin_token_from_stored_hash(store):
    await store.credentials.set_admin_token_digest(digest("generated-secret"))
    auth = authenticator(store)
    await auth.load()
    assert (await auth.authenticate("Bearer generated-secret", client=None)).is_admin
    with pytest.raises(Unauthorized):
        await auth.authenticate("Bearer generated-secreT", client=None)


async def test_admin_may_use_any_org_a_user_only_theirs():
    from gateway.access.principal import Principal

    Principal("admin", "admin").check_org("any-org")
    with pytest.raises(Forbidden):
        Principal("u", "user", org_id="a").check_org("b")


async def test_api_key_over_http(client, store):
    key_id, key = new_api_key()
    await store.credentials.save_api_key(
        digest(key),
        {
            "key_id": key_id,
            "org_id": ORG,
            "user_id": "kim",
            "role": "user",
            "workspaces": ["ws-1"],
            "name": "Kim",
        },
    )
    conv = await client.create_conversation(key)
    assert conv["created_by"] == "kim" and conv["workspace_id"] == "ws-1"
    r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
    assert r.json()["total"] == 1
    await store.credentials.revoke_api_key(key_id)
    r, after = await first_refusal(client, key)
    assert r.status_code == 401 and after < 1.0


async def first_refusal(client, key: str) -> tuple[Any, float]:
    """The first answer to the revoked key that is not a 200, and the seconds it took: the
    workers hear of the revocation by pub/sub, which may trail the next request by a
    fraction of a millisecond."""
    revoked_at = time.monotonic()
    while True:
        r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
        after = time.monotonic() - revoked_at
        if r.status_code != 200 or after > 1.0:
            return r, after


@pytest.mark.serial  # refused within a second
async def test_a_known_key_costs_no_redis_round_trip_and_its_revocation_reaches_the_gateway(
    client, store, redis
):
    key_id, key = new_api_key()
    await store.credentials.save_api_key(
        digest(key),
        {"key_id": key_id, "org_id": ORG, "user_id": "kim", "role": "user", "workspaces": ["ws-1"]},
    )

    async def listing() -> None:
        r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
        assert r.status_code == 200

    await listing()  # the gateway has looked the key up once
    cost = await commands_for(redis, listing)
    assert "get" not in cost, cost  # the listing's own commands only, no key lookup
    # revoked as the CLI does it: deleted in Redis, announced to the workers
    await store.credentials.revoke_api_key(key_id)
    assert await redis.get(keys.api_key(digest(key))) is None
    r, after = await first_refusal(client, key)
    assert r.status_code == 401 and r.json()["message"] == "unknown or revoked API key"
    assert after < 1.0  # not the cache's TTL (60 s)
