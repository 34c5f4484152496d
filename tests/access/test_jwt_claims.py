"""JWTs from real identity providers, through real HTTP: `aud` and `iss` accepted when the
gateway is told to expect them (and refused otherwise), tokens without `exp` refused by
default, `sub: ""` refused, and no refusal ever carries PyJWT's own text or an exception's
repr (an RS256 token at a gateway with an EC key once answered `Expected one of <generator
object Algorithm.check_crypto_key_type...>`). Nothing is stored for a refused token."""

from __future__ import annotations

import base64
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import JWT_SECRET, bearer, make_jwt

LIST = f"/api/conversation/list?org_id={ORG}"
AUDIENCES = "api://chat-gateway,https://gw.example.com"
ISSUER = "https://idp.example.com/realms/acme"


def token(secret: str = JWT_SECRET, algorithm: str = "HS256", **claims: object) -> str:
    base: dict[str, object] = {"sub": "alice", "org_id": ORG, "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, secret, algorithm=algorithm)


def drop(claim: str, **claims: object) -> str:
    base: dict[str, object] = {"sub": "alice", "org_id": ORG, "exp": int(time.time()) + 600}
    base.update(claims)
    base.pop(claim, None)
    return jwt.encode(base, JWT_SECRET, algorithm="HS256")


def raw_token(header: object, claims: object, signature: bytes = b"sig") -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


async def refusal(http, tok: str) -> str:
    r = await http.get(LIST, headers=bearer(tok))
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["success"] is False and body["code"] in ("unauthorized", "token_expired")
    return body["message"]


async def test_an_identity_providers_token_with_aud_and_iss_is_accepted_when_expected(
    gateway_factory, redis
):
    env = {"GATEWAY_JWT_AUDIENCE": AUDIENCES, "GATEWAY_JWT_ISSUER": ISSUER}
    async with gateway_factory(env=env) as gw:
        for aud in ("api://chat-gateway", ["https://gw.example.com", "account"]):
            r = await gw.http.get(LIST, headers=bearer(token(aud=aud, iss=ISSUER)))
            assert r.status_code == 200, r.text
        before = await snapshot(redis)
        assert "aud" in await refusal(gw.http, token(aud="api://another-app", iss=ISSUER))
        assert "aud" in await refusal(gw.http, drop("aud", iss=ISSUER))
        assert "iss" in await refusal(gw.http, token(aud="api://chat-gateway", iss=ISSUER + "x"))
        assert "iss" in await refusal(gw.http, drop("iss", aud="api://chat-gateway"))
        assert await snapshot(redis) == before


async def test_a_token_with_aud_is_refused_by_a_gateway_not_told_to_expect_one(client):
    # a token meant for another audience must not pass because nobody set jwt_audience
    assert "aud" in await refusal(client.http, token(aud="api://chat-gateway"))


async def test_a_token_without_exp_never_expires_so_it_is_refused_unless_allowed(
    client, gateway_factory, redis
):
    before = await snapshot(redis)
    assert "exp" in await refusal(client.http, drop("exp"))
    assert await snapshot(redis) == before
    async with gateway_factory(env={"GATEWAY_JWT_REQUIRE_EXP": "false"}) as gw:
        assert (await gw.http.get(LIST, headers=bearer(drop("exp")))).status_code == 200


async def test_an_empty_sub_is_refused(client, redis):
    before = await snapshot(redis)
    assert "sub" in await refusal(client.http, make_jwt("", ORG, "user"))
    assert await snapshot(redis) == before


def ec_pair() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
WE_SAY = (
    "invalid JWT",
    "token expired",
    "JWT algorithm",
    "invalid token",
    "expected 'Authorization: Bearer <token>'",
)
LEAKS = ("<", "object at", "Error", "generator", "Traceback", "Expected one of", "PEM")


def hostile_tokens(ec_private: bytes) -> dict[str, str]:
    now = int(time.time())
    return {
        "rs256-at-an-ec-key": token(RSA_PRIVATE, "RS256"),
        "expired": token(ec_private, "ES256", exp=now - 60),
        "not-yet-valid": token(ec_private, "ES256", nbf=now + 600),
        "name-object": token(ec_private, "ES256", name={"first": "A"}),
        "email-list": token(ec_private, "ES256", email=["a@b"]),
        "role-admin": token(ec_private, "ES256", role="admin"),
        "sub-number": token(ec_private, "ES256", sub=42),
        "exp-text": token(ec_private, "ES256", exp="tomorrow"),
        "hs256-wrong-secret": token("not-the-secret-but-long-enough-for-hs256", "HS256"),
        "alg-none": raw_token({"alg": "none"}, {"sub": "alice", "org_id": ORG}, b""),
        "alg-list": raw_token({"alg": ["ES256"]}, {"sub": "alice"}),
        "alg-made-up": raw_token({"alg": "ES256<script>"}, {"sub": "alice"}),
        "claims-list": raw_token({"alg": "ES256"}, ["not", "an", "object"]),
        "header-list": raw_token(["header"], {"sub": "alice"}),
        "not-base64-json": "a.b.c",
        "garbage": "%%%.%%%.%%%",
    }


async def test_no_jwt_refusal_carries_an_exception_text(gateway_factory, redis):
    ec_private, ec_public = ec_pair()
    async with gateway_factory(env={"GATEWAY_JWT_PUBLIC_KEY": ec_public}) as gw:
        before = await snapshot(redis)
        for name, tok in hostile_tokens(ec_private).items():
            message = await refusal(gw.http, tok)
            assert message.startswith(WE_SAY), (name, message)
            assert not any(leak in message for leak in LEAKS), (name, message)
        assert await snapshot(redis) == before
