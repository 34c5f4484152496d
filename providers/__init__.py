"""Provider adapters: one per upstream API, each yielding providers.base events."""

from __future__ import annotations

from providers.base import ModelSpec, Provider


def build_provider(spec: ModelSpec) -> Provider:
    """Import only the SDK the configured model needs."""
    if spec.provider == "openai":
        from providers.openai import OpenAIProvider

        return OpenAIProvider(spec)
    if spec.provider == "anthropic":
        from providers.anthropic import AnthropicProvider

        return AnthropicProvider(spec)
    if spec.provider == "demo":
        from providers.demo import DemoProvider

        return DemoProvider(spec)
    raise ValueError(f"unknown provider {spec.provider!r}")
