"""The answers of /admin/repositories/{id}/provider-keys: what may be shown of a
repository's own provider key (never the key)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.api.schemas.common import Schema, Timestamp, is_none
from gateway.models.provider_keys import KeyInfo


class ProviderKey(Schema):
    provider: Literal["openai", "anthropic"]
    source: Literal["api", "config"] = Field(description="the admin API, or the config file")
    fingerprint: str | None = Field(
        None, exclude_if=is_none, description="tells keys apart; never the key"
    )
    last4: str | None = Field(None, exclude_if=is_none)
    kek: str | None = Field(
        None, exclude_if=is_none, description="the id of the key-encryption key that wraps it"
    )
    created_at: Timestamp | None = Field(None, exclude_if=is_none)

    @classmethod
    def of(cls, info: KeyInfo) -> ProviderKey:
        return cls.model_validate(  # the provider: one of PROVIDERS_WITH_KEYS, checked here
            {
                "provider": info.provider,
                "source": "api",
                "fingerprint": info.fingerprint,
                "last4": info.last4,
                "kek": info.kek,
                "created_at": info.created_at,
            }
        )


class ProviderKeyList(Schema):
    success: Literal[True] = True
    repositoryId: str
    provider_keys: list[ProviderKey]


class ProviderKeyEnvelope(Schema):
    success: Literal[True] = True
    repositoryId: str
    provider_key: ProviderKey


class ProviderKeyDeleted(Schema):
    success: Literal[True] = True
    repositoryId: str
    provider: str
