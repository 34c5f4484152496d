"""Bearer token -> Principal (admin token, API keys, JWT), and the role rules the seeds set.

Org admins see everything in their org; workspace admins see every conversation in the
workspaces they manage plus their own; users see and prompt only their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt

from gateway.errors import Forbidden, Unauthorized
from gateway.store import KEYS_REVOKED_CHANNEL

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.store import Conversation, Store

ROLES = ("admin", "org_admin", "workspace_admin", "user")
KEY_PREFIX = "cgw_"
KEY_CACHE_TTL = 60.0  # seconds an API key found in Redis is trusted without asking again...
KEY_CACHE_SIZE = 10_000  # ...for the newest this many keys; a revocation drops it at once


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """(key id, the key itself); the key embeds its id so a log line can name it safely."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


@dataclass(slots=True, frozen=True)
class Principal:
    user_id: str
    role: str
    org_id: str | None = None
    workspaces: frozenset[str] = field(default_factory=frozenset)
    managed_workspaces: frozenset[str] = field(default_factory=frozenset)
    name: str | None = None
    family_name: str | None = None
    email: str | None = None
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def check_org(self, org_id: str) -> None:
        """An org_id query parameter that is not the caller's org answers 403."""
        if not self.is_admin and org_id != self.org_id:
            raise Forbidden("org_id is not your organization", code="forbidden_org")

    def in_org(self, org_id: str) -> bool:
        return self.is_admin or org_id == self.org_id

    def can_see(self, conv: Conversation) -> bool:
        if conv.deleted_at is not None or not self.in_org(conv.org_id):
            return False
        if self.role in ("admin", "org_admin") or conv.created_by == self.user_id:
            return True
        return self.role == "workspace_admin" and conv.workspace_id in self.managed_workspaces

    def can_prompt(self, conv: Conversation) -> bool:
        """Seeds 000/002: a user prompts their own conversations, and only while they can
        still use its workspace; an org admin any in the org. A workspace admin reads the
        conversations of their workspaces but prompts only their own."""
        if not self.can_see(conv):
            return False
        if self.role in ("admin", "org_admin"):
            return True
        return conv.created_by == self.user_id and (
            conv.workspace_id is None or self.can_use_workspace(conv.workspace_id)
        )

    def can_delete(self, conv: Conversation) -> bool:
        """The creator, a workspace admin of its workspace, an org admin, the admin."""
        if not self.can_see(conv):
            return False
        if self.role in ("admin", "org_admin") or conv.created_by == self.user_id:
            return True
        return self.role == "workspace_admin" and conv.workspace_id in self.managed_workspaces

    def can_use_workspace(self, workspace_id: str) -> bool:
        if self.role in ("admin", "org_admin"):
            return True
        return workspace_id in self.workspaces or workspace_id in self.managed_workspaces


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

        # API keys seen lately: digest -> (principal, until). Used only while this worker
        # hears revocations (Store.revoke_api_key publishes them), so a revoked key stops
        # working on every worker within a message's delivery, not after the TTL.
        self._keys: dict[str, tuple[Principal, float]] = {}
        self._hearing_revocations = False
        self._listener: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Without GATEWAY_ADMIN_TOKEN, `serve` generated one and stored only its hash."""
        if self._admin_digest is None:
            self._admin_digest = await self.store.admin_token_digest()

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

        await self.store.listen(
            KEYS_REVOKED_CHANNEL, self._forget_key,
            what="key revocation listener", on_ready=subscribed, on_lost=lost,
        )

    def _forget_key(self, digest: str) -> None:
        self._keys.pop(digest, None)

    async def _api_key(self, d: str) -> Principal | None:
        """The key's Principal (frozen, so one serves every request of the key)."""
        cached = self._keys.get(d)
        now = time.monotonic()
        if cached is not None and cached[1] > now and self._hearing_revocations:
            return cached[0]
        record = await self.store.get_api_key(d)
        if record is None:
            return None
        principal = principal_from_key(record)
        if self._hearing_revocations:
            if len(self._keys) >= KEY_CACHE_SIZE:
                del self._keys[next(iter(self._keys))]
            self._keys[d] = (principal, now + KEY_CACHE_TTL)
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
            alg = jwt.get_unverified_header(token).get("alg")
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
        return Principal(
            user_id=str(claims["sub"]),
            role=role,
            org_id=org,
            workspaces=_str_set(claims.get("workspaces")),
            managed_workspaces=_str_set(claims.get("managed_workspaces")),
            name=claims.get("name"),
            family_name=claims.get("family_name"),
            email=claims.get("email"),
        )


def _str_set(value: Any) -> frozenset[str]:
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def principal_from_key(record: dict[str, Any]) -> Principal:
    role = record["role"]
    workspaces = frozenset(record.get("workspaces") or ())
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
    )
