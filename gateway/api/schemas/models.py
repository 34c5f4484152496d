"""The answers of /admin/models: model entries (every field of the config file's [[models]],
where it comes from, its prices in force and its last connection test)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from gateway.api.schemas.common import Schema, Timestamp, is_none
from gateway.models import registry
from gateway.models.prices import prices_of
from gateway.models.probe import ProbeResult
from gateway.settings import ModelConfig


class ModelPrices(Schema):
    input_per_mtok: float | None = Field(description="USD per million input tokens")
    output_per_mtok: float | None = Field(description="USD per million output tokens")
    source: Literal["entry", "table", "none"] = Field(
        description="the entry's own, the shipped table's (well-known models), or none: "
        "no cost is recorded"
    )


class ModelHealth(Schema):
    """A connection test: one tiny upstream call."""

    ok: bool
    at: int = Field(description="epoch milliseconds")
    latency_ms: float | None = Field(
        None, exclude_if=is_none, description="until the upstream accepted the request"
    )
    first_token_ms: float | None = Field(None, exclude_if=is_none)
    error_kind: str | None = Field(
        None, exclude_if=is_none, description="auth, rate_limit, timeout, connection, server, ..."
    )
    error_status: int | None = Field(None, exclude_if=is_none)
    error: str | None = Field(None, exclude_if=is_none, description="the provider's words")

    @classmethod
    def of(cls, r: ProbeResult | None) -> ModelHealth | None:
        if r is None:
            return None
        return cls(
            ok=r.ok,
            at=r.at,
            latency_ms=r.latency_ms,
            first_token_ms=r.first_token_ms,
            error_kind=r.error_kind,
            error_status=r.error_status,
            error=r.error,
        )


class ModelEntry(ModelConfig):
    """A model entry: every field of the config file's [[models]] (api_key_env is a
    variable's name, never a credential), plus where it comes from."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True, extra="forbid", frozen=True
    )

    source: Literal["config", "api"] = Field(description="the config file, or the admin API")
    org_id: str | None = Field(description="the org whose own entry it is; null: every org's")
    prices: ModelPrices = Field(description="the prices in force")
    created_at: Timestamp | None
    updated_at: Timestamp | None
    created_by: str | None
    health: ModelHealth | None = Field(description="the last connection test")

    @classmethod
    def of(cls, e: registry.ModelEntry, health: ProbeResult | None) -> ModelEntry:
        prices = prices_of(e.config)
        return cls(
            **dict(e.config),
            source=e.source,
            org_id=e.org_id,
            prices=ModelPrices(
                input_per_mtok=prices.input_per_mtok,
                output_per_mtok=prices.output_per_mtok,
                source=prices.source,
            ),
            created_at=e.created_at,
            updated_at=e.updated_at,
            created_by=e.created_by,
            health=ModelHealth.of(health),
        )


class ModelList(Schema):
    success: Literal[True] = True
    models: list[ModelEntry]
    total: int


class ModelEnvelope(Schema):
    success: Literal[True] = True
    model: ModelEntry


class ModelDeleted(Schema):
    success: Literal[True] = True
    modelId: str


class ModelTest(Schema):
    success: Literal[True] = True
    model: str
    result: ModelHealth = Field(description="also kept as the entry's health")
