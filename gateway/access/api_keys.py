"""Gateway API keys: minted, listed, read and revoked by the admin API (/admin/api-keys) and
by `python -m gateway keys`, through this one code path.

A key is shown once, when it is minted; Redis keeps its SHA-256 only. Nobody mints a key
above their own role (the platform admin, or the operator at the CLI, mints org admins at
most); an org admin mints and revokes their own org's keys only. A key may be limited to
some models, expire, and carry its own budgets (gateway/access/quotas.py); a revoked key
stops at once on every worker (the revocation pub/sub of gateway/access/auth.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gateway.access import audit, ids
from gateway.access.auth import digest, new_api_key
from gateway.access.principal import RANK, Principal
from gateway.errors import Conflict, Forbidden, ValidationFailed
from gateway.storage.records import now_ms
from gateway.storage.store import Store

MAX_KEYS_PER_ORG = 1000
MAX_LIFETIME_MS = 10 * 366 * 86_400_000  # an expiry at most ten years ahead
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_ID = Field(min_length=1, max_length=200)
_NAME = Field(default=None, min_length=1, max_length=200)


class KeyBudgetsSpec(BaseModel):
    """A key's own budgets; absent: only the user's and the org's limits apply."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(default=None, ge=1, le=10**15)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=10**15)
    tokens_per_day: int | None = Field(default=None, ge=1, le=10**15)
    tokens_per_month: int | None = Field(default=None, ge=1, le=10**15)


class KeySpec(BaseModel):
    """What a new key is: whose, which role, where and for how long."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    org_id: str | None = Field(default=None, min_length=1, max_length=200)
    user: str = _ID
    role: str
    workspaces: list[str] = Field(default_factory=list, max_length=100)
    name: str | None = _NAME
    last_name: str | None = _NAME
    email: str | None = Field(default=None, min_length=3, max_length=320)
    expires_at: str | None = Field(default=None, max_length=40)  # ISO 8601; no zone: UTC
    models: list[str] | None = Field(default=None, min_length=1, max_length=100)
    budgets: KeyBudgetsSpec | None = None

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ("org_admin", "workspace_admin", "user"):
            raise ValueError("must be org_admin, workspace_admin or user")
        return v

    @field_validator("org_id", "user", "workspaces")
    @classmethod
    def _alphabet(cls, v: str | list[str] | None, info: ValidationInfo) -> str | list[str] | None:
        """The ids a key carries are refused now, not at its first use (a 401)."""
        kinds: dict[str, ids.Kind] = {"org_id": "org", "user": "user"}
        kind = kinds.get(info.field_name or "", "workspace")
        for value in [v] if isinstance(v, str) else v or []:
            found = ids.problem(kind, value)
            if found is not None:
                raise ValueError(found)
        return v

    @field_validator("workspaces", "models")
    @classmethod
    def _ids(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if any(not 1 <= len(x) <= 200 for x in v):
                raise ValueError("each entry: 1-200 characters")
            if len(set(v)) != len(v):
                raise ValueError("an entry is listed twice")
        return v

    def expiry_ms(self, now: int) -> int | None:
        if self.expires_at is None:
            return None
        try:
            at = datetime.fromisoformat(self.expires_at)
        except ValueError:
            raise ValidationFailed("expires_at: not an ISO 8601 date-time") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        ms = int(at.timestamp() * 1000)
        if ms <= now:
            raise ValidationFailed("expires_at: must be in the future")
        if ms > now + MAX_LIFETIME_MS:
            raise ValidationFailed("expires_at: at most ten years ahead")
        return ms


def may_mint(actor: Principal | None, org: str, role: str) -> None:
    """The operator at the CLI (actor None) and the platform admin mint in any org; an org
    admin in theirs; nobody above their own role."""
    if actor is None:
        return
    if actor.role not in ("admin", "org_admin"):
        raise Forbidden(
            "API keys are managed by org admins and the platform admin", code="forbidden_role"
        )
    actor.check_org(org)
    if RANK[role] > RANK[actor.role]:
        raise Forbidden(f"a {actor.role} cannot mint a {role} key", code="forbidden_role")


class ApiKeys:
    def __init__(self, store: Store, *, limit: int = MAX_KEYS_PER_ORG) -> None:
        self.store = store
        self.limit = limit

    async def create(
        self, spec: KeySpec, actor: Principal | None, *, via: str
    ) -> tuple[dict[str, Any], str]:
        """(the stored record, the key itself: shown this once)."""
        org = spec.org_id or (actor.org_id if actor is not None else None)
        if org is None:
            raise ValidationFailed("org_id: required when the platform admin mints a key")
        may_mint(actor, org, spec.role)
        at = now_ms()
        key_id, key = new_api_key()
        record: dict[str, Any] = {
            "key_id": key_id,
            "org_id": org,
            "user_id": spec.user,
            "role": spec.role,
            "workspaces": spec.workspaces,
            "name": spec.name,
            "family_name": spec.last_name,
            "email": spec.email,
            "created_at": at,
            "created_by": actor.user_id if actor is not None else "cli",
        }
        expires = spec.expiry_ms(at)
        if expires is not None:
            record["expires_at"] = expires
        if spec.models is not None:
            record["models"] = spec.models
        if spec.budgets is not None:
            record["budgets"] = spec.budgets.model_dump(exclude_none=True)
        event = audit.queued(
            org, audit.KEY_CREATED, actor, key_id=key_id, user_id=spec.user, role=spec.role, via=via
        )
        if not await self.store.credentials.save_api_key(
            digest(key), record, limit=self.limit, event=event
        ):
            raise Conflict(
                f"org {org!r} holds {self.limit} API keys already; revoke some first",
                code="too_many_keys",
            )
        return record, key

    async def list(self, org: str | None) -> list[dict[str, Any]]:
        return await self.store.credentials.api_keys(org)

    async def get(self, key_id: str) -> dict[str, Any] | None:
        if not KEY_ID.match(key_id):
            return None
        return await self.store.credentials.api_key_record(key_id)

    async def revoke(self, record: dict[str, Any], actor: Principal | None, *, via: str) -> bool:
        event = audit.queued(
            record["org_id"],
            audit.KEY_REVOKED,
            actor,
            key_id=record["key_id"],
            user_id=record["user_id"],
            role=record["role"],
            via=via,
        )
        return await self.store.credentials.revoke_api_key(record["key_id"], event=event)
