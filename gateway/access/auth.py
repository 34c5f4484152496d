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

from gateway.access import ids
from gateway.access.jwts import JwtVerifier
from gateway.access.principal import Principal
from gateway.access.throttle import FailureThrottle
from gateway.errors import RateLimited, Unauthorized
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
        self._jwt = JwtVerifier(settings)
        self.throttle = FailureThrottle(settings.auth_failures_per_minute)

        # API keys seen lately: digest -> (principal, until, expires). Used only while this worker
        # hears revocations (Store.revoke_api_key publishes them), so a revoked key stops
        # working on every worker within a message's delivery, not after the TTL.
        self._keys: dict[str, tuple[Principal, float, int | None]] = {}
        self._hearing_revocations = False
        # bumped by every revocation heard and every subscription lost or made: a lookup that
        # was in flight across one of them must not put what it read into the cache
        self._generation = 0
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
            self._generation += 1
            self._hearing_revocations = True

        def lost() -> None:  # every key is looked up again until we hear revocations again
            self._hearing_revocations = False
            self._generation += 1
            self._keys.clear()

        await self.store.pubsub.listen(
            keys.KEYS_REVOKED_CHANNEL,
            self._forget_key,
            what="key revocation listener",
            on_ready=subscribed,
            on_lost=lost,
        )

    def _forget_key(self, digest: str) -> None:
        self._generation += 1
        self._keys.pop(digest, None)

    def _cached_key(self, d: str, now: float) -> Principal | None:
        """A key this worker knows (401 token_expired once past its expires_at)."""
        cached = self._keys.get(d)
        if cached is not None and cached[1] > now and self._hearing_revocations:
            _check_expiry(cached[2])
            return cached[0]
        return None

    async def _api_key(self, d: str) -> Principal | None:
        """The key's Principal (frozen, so one serves every request of the key); a key past
        its `expires_at` is refused, cached or not."""
        now = time.monotonic()
        cached = self._cached_key(d, now)
        if cached is not None:
            return cached
        generation = self._generation
        record = await self.store.credentials.api_key(d)
        if record is None:
            return None
        expires = record.get("expires_at")
        _check_expiry(expires)
        principal = principal_from_key(record)
        if self._hearing_revocations and generation == self._generation:
            if len(self._keys) >= KEY_CACHE_SIZE:
                del self._keys[next(iter(self._keys))]
            self._keys[d] = (principal, now + KEY_CACHE_TTL, expires)
        return principal

    async def authenticate(self, authorization: str | None, *, client: str | None) -> Principal:
        """The caller of `Authorization: Bearer <token>`; `client` is the address whose
        failures are throttled (None: not throttled, e.g. a Unix socket)."""
        if not authorization:
            raise Unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        return await self.principal_for(token, client=client)

    async def principal_for(self, token: str, *, client: str | None) -> Principal:
        """An address with too many recent failures is answered 429 before its token is
        looked at, unless this worker already knows the token for good (the admin token,
        a cached API key): valid callers behind that address keep working."""
        d = digest(token)
        if self._admin_digest and hmac.compare_digest(d, self._admin_digest):
            return Principal(user_id="admin", role="admin")
        if client is None:
            return await self._principal(token, d)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            known = self._cached_key(d, time.monotonic())
            if known is None:
                raise RateLimited(
                    f"too many failed authentications from this address; retry in {wait} s",
                    code="auth_throttled",
                    headers={"Retry-After": str(wait)},
                )
            return known
        try:
            return await self._principal(token, d)
        except Unauthorized:
            self.throttle.failed(client)
            raise

    async def _principal(self, token: str, d: str) -> Principal:
        if token.startswith(KEY_PREFIX):
            principal = await self._api_key(d)
            if principal is None:
                raise Unauthorized("unknown or revoked API key")
            return principal
        if token.count(".") == 2 and self._jwt.enabled:
            return self._from_jwt(token)
        raise Unauthorized("invalid token")

    def _from_jwt(self, token: str) -> Principal:
        claims = self._jwt.claims(token)  # signature, aud, iss, exp, sub (access/jwts.py)
        role = claims.get("role", "user")
        if role not in ("org_admin", "workspace_admin", "user"):
            raise Unauthorized("invalid JWT: role must be org_admin, workspace_admin or user")
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
