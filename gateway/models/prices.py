"""What an answer costs: per-model prices in USD per million tokens, from the model entry
(`price_input_per_mtok`, `price_output_per_mtok`) or, when it sets none, from the table
below of well-known upstream models (list prices; set the entry's own to override them).

A turn's cost is computed once, when it is recorded, and stored as an integer of nano-USD
beside its tokens: a later price change never rewrites history, and sums are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from gateway.settings import ModelConfig

# upstream model name (or the prefix of its dated versions) -> (input, output) USD per Mtok
PRICE_TABLE: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4": (30.0, 60.0),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.0, 60.0),
    "o1-mini": (1.10, 4.40),
    "o3": (2.0, 8.0),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-3-5-haiku": (0.80, 4.0),
    "claude-3-opus": (15.0, 75.0),
    "claude-3-haiku": (0.25, 1.25),
}
_NANO_PER_MTOK_TOKEN = Decimal(1000)  # USD per Mtok -> nano-USD per token

PriceSource = Literal["entry", "table", "none"]


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_mtok: float | None
    output_per_mtok: float | None
    source: PriceSource

    def cost_nusd(self, input_tokens: int, output_tokens: int) -> int:
        """The cost in nano-USD (rounded half to even: at most half a nano-dollar off)."""
        total = Decimal(0)
        if self.input_per_mtok:
            total += Decimal(str(self.input_per_mtok)) * input_tokens
        if self.output_per_mtok:
            total += Decimal(str(self.output_per_mtok)) * output_tokens
        return int((total * _NANO_PER_MTOK_TOKEN).to_integral_value(ROUND_HALF_EVEN))


def table_price(upstream_model: str) -> tuple[float, float] | None:
    """The longest table name that is the model's name or a prefix of it at a '-' (dated
    versions: gpt-4o-2024-08-06, claude-3-5-sonnet-20241022)."""
    name = upstream_model.lower()
    best: str | None = None
    for known in PRICE_TABLE:
        if (name == known or name.startswith(known + "-")) and len(known) > len(best or ""):
            best = known
    return PRICE_TABLE[best] if best else None


def prices_of(model: ModelConfig) -> Prices:
    """The entry's prices; where it sets neither, the table's; else none (cost 0)."""
    if model.price_input_per_mtok is not None or model.price_output_per_mtok is not None:
        return Prices(model.price_input_per_mtok, model.price_output_per_mtok, "entry")
    found = table_price(model.upstream_model) if model.provider != "demo" else None
    if found is not None:
        return Prices(found[0], found[1], "table")
    return Prices(None, None, "none")
