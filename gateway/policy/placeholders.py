"""Placeholders and example values: what documentation, templates and tests put where a
secret goes, so that a scanner does not cry wolf on every README.

A value is a placeholder when it says so (`your-api-key`, `<token>`, `${DB_PASSWORD}`,
`{{ secret }}`, `changeme`, `REDACTED`), when it is filler (`xxxxxxxx`, `********`, `...`,
`00000000`, one character repeated), when it is a published example (AWS's
`AKIAIOSFODNN7EXAMPLE` and `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`), or when it counts
up (`1234567890abcdef`): random keys almost never hold a six-character run of consecutive
characters, hand-typed stand-ins nearly always do.
"""

from __future__ import annotations

import re
from itertools import pairwise

_SAYS_SO = re.compile(
    r"example|sample|dummy|placeholder|redacted|changeme|change[_-]?me|replace[_-]?me"
    r"|your[_-]?(?:own[_-]?)?(?:api|key|token|secret|password|pass|app|bot|access|client)"
    r"|(?:insert|enter|put|add)[_-]?(?:your|key|token|here)|[_-]here\b|^here$"
    r"|^(?:xxx+|todo|fixme|tbd|none|null|nil|undefined|empty|secret|password|passwd|token"
    r"|apikey|api[_-]key|key|value|string|required|optional|hidden|masked|test|demo|foo"
    r"|bar|baz|qux|admin|root|user|username|default|true|false|yes|no)$",
    re.IGNORECASE,
)
_TEMPLATE = re.compile(
    r"<[^>]*>?|\[[^\]]*\]|\$\{?[\w.:-]+\}?|\{\{.*\}?\}?|\{[\w.-]*\}|%[sd]|%\(\w+\)[sd]|%\w+%"
    r"|\$\(.*\)?|@\w+@|__\w+__"
)


def _filler(value: str) -> bool:
    body = value.strip("'\"`")
    if not body:
        return True
    if len(set(body.lower())) <= 2:
        return True  # xxxxxxxx, ********, 00000000, abababab
    stars = sum(ch in "*x.X#•" for ch in body)
    return stars >= max(4, len(body) // 2)


def _counts_up(value: str, run: int = 6) -> bool:
    streak = 1
    for a, b in pairwise(value):
        streak = streak + 1 if ord(b) - ord(a) == 1 else 1
        if streak >= run:
            return True
    return False


def is_placeholder(value: str, *, random: bool = True) -> bool:
    """A value that stands in for a secret rather than being one. `random`: the value
    should be a random key, so a counting run (`123456`) gives it away; a password may be
    that weak for real."""
    if _filler(value) or _TEMPLATE.fullmatch(value) or _SAYS_SO.search(value):
        return True
    lowered = value.lower()
    if "xxxx" in lowered or "****" in value or "..." in value or "…" in value:
        return True
    return random and _counts_up(lowered)
