"""The answers of /admin/api-keys: what a gateway API key is (never the key, but once)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.api.schemas.common import Schema, Timestamp


class ApiKey(Schema):
    id: str
    org_id: str
    user: str = Field(description="the user id it acts as")
    role: Literal["org_admin", "workspace_admin", "user"]
    workspaces: list[str]
    name: str | None
    last_name: str | None
    email: str | None
    models: list[str] | None = Field(description="the models it may use; null: any")
    budgets: dict[str, int] = Field(
        description="its own limits: requests_per_minute, tokens_per_minute, tokens_per_day, "
        "tokens_per_month"
    )
    prefix: str = Field(description="how the key begins: cgw_<id>_")
    created_at: Timestamp | None
    expires_at: Timestamp | None
    created_by: str | None

    @classmethod
    def of(cls, record: dict[str, Any]) -> ApiKey:
        return cls(
            id=record["key_id"],
            org_id=record["org_id"],
            user=record["user_id"],
            role=record["role"],
            workspaces=record.get("workspaces") or [],
            name=record.get("name"),
            last_name=record.get("family_name"),
            email=record.get("email"),
            models=record.get("models"),
            budgets=record.get("budgets") or {},
            prefix=f"cgw_{record['key_id']}_",
            created_at=record.get("created_at"),
            expires_at=record.get("expires_at"),
            created_by=record.get("created_by"),
        )


class ApiKeyCreated(ApiKey):
    success: Literal[True] = True
    key: str = Field(description="the key itself: shown this once, only its hash is kept")


class ApiKeyList(Schema):
    success: Literal[True] = True
    api_keys: list[ApiKey]
    total: int


class ApiKeyEnvelope(Schema):
    success: Literal[True] = True
    api_key: ApiKey


class ApiKeyRevoked(Schema):
    success: Literal[True] = True
    id: str
    revoked: Literal[True] = True
