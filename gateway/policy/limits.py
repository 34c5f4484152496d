"""Checks on sizes and names rather than on content: max_length, max_output_tokens and
model_allowlist. Token counts are estimated at four characters a token where no provider
count is at hand."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str | int) -> int:
    n = text if isinstance(text, int) else len(text)
    return -(-n // CHARS_PER_TOKEN)


class LengthLimit:
    """At most `max_chars` characters and/or `max_tokens` (estimated) tokens."""

    def __init__(self, *, max_chars: int | None = None, max_tokens: int | None = None) -> None:
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        budgets = [b for b in (max_chars, max_tokens and max_tokens * CHARS_PER_TOKEN) if b]
        self.char_budget = min(budgets) if budgets else None  # characters allowed in a stream

    def exceeded(self, length: int, *, tokens: int | None = None) -> str | None:
        """A short reason when `length` characters (or `tokens`, if counted) are too many."""
        if self.max_chars is not None and length > self.max_chars:
            return f"{length} characters > max_chars {self.max_chars}"
        if self.max_tokens is not None:
            counted = tokens if tokens is not None else estimate_tokens(length)
            if counted > self.max_tokens:
                how = "" if tokens is not None else "about "
                return f"{how}{counted} tokens > {self.max_tokens}"
        return None


class ModelAllowlist:
    def __init__(self, models: Sequence[str]) -> None:
        self.models = tuple(models)

    def refused(self, model_id: str | None) -> str | None:
        if model_id is not None and any(fnmatchcase(model_id, m) for m in self.models):
            return None
        return f"model {model_id!r} is not in the allowlist"
