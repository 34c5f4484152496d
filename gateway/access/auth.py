"""Bearer token -> Principal: the admin token, API keys (kept in memory while this worker
hears revocations) and JWTs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any

import jwt

from gateway.access import ids
from gateway.access.principal import Principal
from gateway.errors import Unauthorized
from gateway.storage import keys

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.storage.store import Store

KEY_PREFIX = "cgw_"
KEY_CACHE_TTL = 60.0  # seconds an API key found in Redis is trusted without asking again...
KEY_CACHE_SIZE = 10_000  # ...for the newest this many keys; a revocation drops it at once


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(key id, the key itself); the key embeds its id so a log line can name it safely."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class Authenticator:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.store = store
        self._admin_digest = digest(settings.admin_token) if settings.admin_token else None
        self._jwt_keys: dict[str, Any] = {}
        if settings.jwt_secret:
            self._jwt_keys["HS256"] = settings.jwt_secret
        if settings.jwt_public_key:
            for alg in ("RS256", "ES256"):
                self._jwt_keys[alg] = settings.jwt_public_key

        # API keys seen lately: digest -> (principal, until, expires). Used only while this worker
        # hears revocations (Store.revoke_api_key publishes them), so a revoked key stops
        # working on every worker within a message's delivery, not after the TTL.
        self._keys: dict[str, tuple[Principal, float, int | None]] = {}
        self._hearing_revocations = False
        self._listener: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Without GATEWAY_ADMIN_TOKEN, `serve` generated one and stored only its hash."""
        if self._admin_digest is None:
            self._admin_digest = await self.store.credentials.admin_token_digest()

    def start(self) -> None:
        """Listen for revoked keys, which turns the key cache on."""
        self._listener = asyncio.create_task(self._listen(), name="gateway-key-revocations")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        async def subscribed() -> None:
            self._keys.clear()  # a revocation may have gone by while we were not listening
            self._hearing_revocations = True

        def lost() -> None:  # every key is looked up again until we hear revocations again
            self._hearing_revocations = False
            self._keys.clear()

        await self.store.pubsub.listen(
            keys.KEYS_REVOKED_CHANNEL,
            self._forget_key,
            what="key revocation listener",
            on_ready=subscribed,
            on_lost=lost,
        )

    def _forget_key(self, digest: str) -> None:
        self._keys.pop(digest, None)

    async def _api_key(self, d: str) -> Principal | None:
        """The key's Principal (frozen, so one serves every request of the key); a key past
        its `expires_at` is refused, cached or not."""
        cached = self._keys.get(d)
        now = time.monotonic()
        if cached is not None and cached[1] > now and self._hearing_revocations:
            _check_expiry(cached[2])
            return cached[0]
        record = await self.store.credentials.api_key(d)
        if record is None:
            return None
        expires = record.get("expires_at")
        _check_expiry(expires)
        principal = principal_from_key(record)
        if self._hearing_revocations:
            if len(self._keys) >= KEY_CACHE_SIZE:
                del self._keys[next(iter(self._keys))]
            self._keys[d] = (principal, now + KEY_CACHE_TTL, expires)
        return principal

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        return await self.principal_for(token)

    async def principal_for(self, token: str) -> Principal:
        d = digest(token)
        if self._admin_digest and hmac.compare_digest(d, self._admin_digest):
            return Principal(user_id="admin", role="admin")
        if token.startswith(KEY_PREFIX):
            principal = await self._api_key(d)
            if principal is None:
                raise Unauthorized("unknown or revoked API key")
            return principal
        if token.count(".") == 2 and self._jwt_keys:
            return self._from_jwt(token)
        raise Unauthorized("invalid token")

    def _from_jwt(self, token: str) -> Principal:
        try:
            alg = str(jwt.get_unverified_header(token).get("alg"))
            key = self._jwt_keys.get(alg)
            if key is None:
                raise Unauthorized(f"JWT algorithm {alg!r} is not accepted")
            claims = jwt.decode(token, key, algorithms=[alg], options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired", code="token_expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid JWT: {exc}") from None
        role = claims.get("role", "user")
        if role not in ("org_admin", "workspace_admin", "user"):
            raise Unauthorized(f"invalid JWT: unknown role {role!r}")
        org = claims.get("org_id")
        if not isinstance(org, str) or not org:
            raise Unauthorized("invalid JWT: missing org_id claim")
        workspaces = _str_set(claims.get("workspaces"))
        managed = _str_set(claims.get("managed_workspaces"))
        bad = _id_problem(str(claims["sub"]), org, workspaces | managed)
        if bad is not None:
            raise Unauthorized(f"invalid JWT: {bad}")
        return Principal(
            user_id=str(claims["sub"]),
            role=role,
            org_id=org,
            workspaces=workspaces,
            managed_workspaces=managed,
            name=claims.get("name"),
            family_name=claims.get("family_name"),
            email=claims.get("email"),
        )


def _check_expiry(expires_at_ms: int | None) -> None:
    if expires_at_ms is not None and expires_at_ms <= time.time() * 1000:
        raise Unauthorized("API key expired", code="token_expired")


def _str_set(value: Any) -> frozenset[str]:
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def _id_problem(user: str, org: object, workspaces: frozenset[str]) -> str | None:
    """A token's ids go into Redis keys and indexes: each must be of its alphabet."""
    if ids.principal_ids_valid(user, org, workspaces):
        return None
    return ids.first_problem(
        [
            ("sub", "user", user),
            ("org_id", "org", org),
            *(("workspaces", "workspace", w) for w in sorted(workspaces)),
        ]
    )


def principal_from_key(record: dict[str, Any]) -> Principal:
    role = record["role"]
    workspaces = frozenset(record.get("workspaces") or ())
    bad = _id_problem(record["user_id"], record["org_id"], workspaces)
    if bad is not None:  # minted before ids were checked, or written by hand
        raise Unauthorized(f"this API key's record is not valid: {bad}")
    return Principal(
        user_id=record["user_id"],
        role=role,
        org_id=record["org_id"],
        workspaces=workspaces,
        managed_workspaces=workspaces if role == "workspace_admin" else frozenset(),
        name=record.get("name"),
        family_name=record.get("family_name"),
        email=record.get("email"),
        key_id=record["key_id"],
        models=frozenset(record["models"]) if record.get("models") is not None else None,
        budgets=tuple(sorted((k, int(v)) for k, v in (record.get("budgets") or {}).items())),
    )
