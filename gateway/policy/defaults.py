"""The policies a gateway operator would expect out of the box."""

from __future__ import annotations

from gateway.policy.model import PolicySpec


def default_policies() -> list[PolicySpec]:
    """A sensible baseline, and the set the benchmark measures:

    - `secrets-in-prompt` (secrets, pre, redact): a key pasted into a prompt reaches neither
      the provider nor the store.
    - `secrets-in-answer` (secrets, during + post, block): an answer that starts printing a
      credential is stopped before its first character reaches the client.
    - `payment-cards` (pii: card, pre + during + post, redact): card numbers (Luhn-valid)
      become `[REDACTED:card]` wherever they appear.
    - `prompt-injection` (prompt_injection, pre, log): override phrasings, jailbreak personas,
      role markers and invisible characters are recorded, not refused.
    """
    return [
        PolicySpec(
            id="secrets-in-prompt",
            name="Secrets in prompts",
            description="API keys, tokens, private keys and passwords are redacted from prompts.",
            kind="secrets",
            stages=("pre",),
            action="redact",
        ),
        PolicySpec(
            id="secrets-in-answer",
            name="Secrets in answers",
            description="An answer that contains a credential is stopped.",
            kind="secrets",
            stages=("during", "post"),
            action="block",
        ),
        PolicySpec(
            id="payment-cards",
            name="Payment card numbers",
            description="Card numbers are redacted from prompts and answers.",
            kind="pii",
            entities=("card",),
            stages=("pre", "during", "post"),
            action="redact",
        ),
        PolicySpec(
            id="prompt-injection",
            name="Prompt injection",
            description="Known injection and jailbreak patterns are logged.",
            kind="prompt_injection",
            stages=("pre",),
            action="log",
        ),
    ]
