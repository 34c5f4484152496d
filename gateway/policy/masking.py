"""Masked excerpts: enough of a violation to audit it, never the secret or the PII itself."""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.policy.detectors import Match

EXCERPT_CONTEXT = 24  # characters shown on each side of the match

# The part of a key that only says what kind of key it is.
_PUBLIC_PREFIX = {
    "openai_key": re.compile(r"sk-(?:proj-|svcacct-|admin-)?"),
    "anthropic_key": re.compile(r"sk-ant-(?:[a-z]+[0-9]{2}-)?"),
    "aws_access_key": re.compile(r"A[KS]IA"),
    "github_token": re.compile(r"gh[pousr]_|github_pat_"),
    "slack_token": re.compile(r"xox[abposr]-|xapp-"),
    "jwt": re.compile(r"eyJ"),
    "private_key": re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----"),
}
_SHOWN_AS_IS = frozenset({"override_instructions", "jailbreak", "prompt_leak", "role_marker"})
_INVISIBLE = frozenset({"invisible_char", "unicode_tag"})


def _keep_last(value: str, keep: int) -> str:
    # Star every digit or letter but the last `keep`; separators stay, for the shape.
    total = sum(ch.isalnum() for ch in value)
    seen = 0
    out = []
    for ch in value:
        if ch.isalnum():
            seen += 1
            out.append(ch if seen > total - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


def mask_value(value: str, label: str) -> str:
    """The matched value with what identifies a person or opens a door starred out."""
    if label in ("card", "ssn", "iban"):
        masked = _keep_last(value, 4)
        return value[:2] + masked[2:] if label == "iban" else masked
    if label == "phone":
        return _keep_last(value, 2)
    if label == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if label == "ipv4":
        return ".".join(value.split(".")[:2]) + ".*.*"
    if label == "ipv6":
        return value.split(":", 1)[0] + ":****"
    if label in _PUBLIC_PREFIX:
        m = _PUBLIC_PREFIX[label].match(value)
        return (m.group() if m else "") + "...[masked]"
    if label == "credential":
        return "[masked]"
    if label in _SHOWN_AS_IS:
        return value if len(value) <= 80 else value[:77] + "..."
    if label in _INVISIBLE:
        return "".join(f"<U+{ord(ch):04X}>" for ch in value[:8]) + ("..." if len(value) > 8 else "")
    # keywords, operators' own patterns: the first character and the length
    return value[:1] + "*" * min(len(value) - 1, 11)


def excerpt(
    text: str,
    target: Match,
    others: Sequence[Match] = (),
    *,
    context: int = EXCERPT_CONTEXT,
    floor: int = 0,
    before: str = "",
) -> str:
    """`target` masked inside a little of its surroundings, other matches masked too.

    `others` are every match found in the same text (the target may be among them); any of
    them that reaches into the window is masked, or cut off, never shown. Text before
    `floor` is not read: `before` (already masked, as sent) stands in for it."""
    lo = max(0, target.start - context)
    hi = min(len(text), target.end + context)
    lead = ""
    if lo < floor:
        lead = before[len(before) - (floor - lo) :] if floor - lo < len(before) else before
        lo = floor
    pieces = [lead]
    pos = lo
    for m in sorted({*others, target}, key=lambda m: m.start):
        if m.end <= lo or m.start >= hi:
            continue
        if m.start < pos:  # overlaps what is already shown: drop its visible part
            pos = max(pos, m.end)
            continue
        pieces.append(text[pos : m.start])
        if lo <= m.start and m.end <= hi:
            pieces.append(mask_value(text[m.start : m.end], m.label))
        else:
            pieces.append("[...]")
        pos = m.end
    pieces.append(text[pos:hi] if pos < hi else "")
    shown = " ".join("".join(pieces).split())
    return ("..." if lo - len(lead) > 0 else "") + shown + ("..." if hi < len(text) else "")
