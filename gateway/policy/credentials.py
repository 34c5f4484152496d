"""Secrets: provider API keys, cloud and chat tokens, private keys, JWTs, and passwords.

Key shapes are recognised by their published prefixes; a JWT must decode to a JSON header
with "alg"; a value after `password=`, `secret:`, `token=`... counts when it looks random
(Shannon entropy), so `password=<your password>` in documentation does not.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterator

from gateway.policy.detectors import Shape, ShapeDetector, Tail, last_space
from gateway.policy.triggers import Trigger

ENTROPY_BITS = 3.0  # per character; random keys score 4 to 6, English words about 2.5
PRIVATE_KEY_HOLD = 16384  # a PEM block is withheld until its END line, up to this many chars


def shannon_entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def _jwt_ok(text: str, start: int, end: int) -> bool:
    header = text[start : text.index(".", start)]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


_PLACEHOLDER = re.compile(
    r"[A-Z][A-Z0-9_]*|<[^>]*>?|\$\{?[\w.]+\}?|\{\{.*|\*+|x+|\.{3,}"
    r"|(?i:.*(?:example|your|placeholder|changeme|redacted).*)"
)


def _credential_ok(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    if _PLACEHOLDER.fullmatch(value) or value.lower().startswith(("http://", "https://")):
        return False
    return shannon_entropy(value) >= ENTROPY_BITS


_KEYS = (
    r"(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|client[_-]?secret|private[_-]?key|credentials?)"
)
_VALUE = r"[^\s\"'`,;<>]"
# Found from the separator (rare in prose) rather than from the key words (common letters).
# The value sits in a look-ahead so that the match is the separator alone and the scan
# goes on from the next character: a long value never swallows the next `password=`.
_CREDENTIAL = rf"[:=](?=\s{{0,3}}[\"'`]?(?P<value>{_VALUE}{{8,200}}))"
_KEY_BEFORE = re.compile(_KEYS + r"s?[\"']?\s{0,3}\Z", re.IGNORECASE)
_CREDENTIAL_TAIL = re.compile(
    _KEYS + rf"s?[\"']?\s{{0,3}}[:=]\s{{0,3}}[\"'`]?(?P<hold>{_VALUE}{{0,200}})\Z", re.IGNORECASE
)


def _credential_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    sep = m.start()
    if _KEY_BEFORE.search(text, max(0, sep - 40), sep) is None:
        return
    s, e = m.span("value")
    if _credential_ok(text, s, e):
        yield s, e


def _credential_holdback(text: str) -> int:
    # Only the value is ever a match, so only a value still arriving is withheld.
    n = len(text)
    lo = max(0, n - 260, last_space(text, max(0, n - 260)) - 48)
    if text.find(":", lo) < 0 and text.find("=", lo) < 0:
        return 0
    m = _CREDENTIAL_TAIL.search(text, lo)
    return n - m.start("hold") if m is not None else 0


_PEM_HEAD = r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----"
_PRIVATE_KEY = (
    _PEM_HEAD
    + r"(?:[\s\S]*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----|[\s\S]{0,"
    + str(PRIVATE_KEY_HOLD)
    + "})"
)
_PEM_HEAD_TAIL = Tail.derive(re.compile(_PEM_HEAD), reach=80)


def _private_key_holdback(text: str) -> int:
    n = len(text)
    begin = text.rfind("-----BEGIN", max(0, n - PRIVATE_KEY_HOLD))
    if begin >= 0 and text.find("-----END", begin) < 0:
        return n - begin  # inside a block: hold it until the END line arrives
    return _PEM_HEAD_TAIL.holdback(text, None)


def _shapes() -> list[Shape]:
    # Each shape is worth running only where its prefix occurs (`hints`, a plain substring
    # test), so its left boundary can come first, where the hold-back can see it.
    token = "[A-Za-z0-9_-]"
    return [
        Shape(
            "anthropic_key",
            rf"(?<![\w-])sk-ant-{token}{{20,400}}(?!{token})",
            hints=("sk-ant-",),
            anchored=True,
            spaceless=True,
            reach=512,
        ),
        Shape(
            "openai_key",
            rf"(?<![\w-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?{token}{{20,400}}(?!{token})",
            hints=("sk-",),
            anchored=True,
            spaceless=True,
            reach=512,
        ),
        Shape(
            "aws_access_key",
            r"(?<![A-Za-z0-9])A(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
            hints=("AKIA", "ASIA"),
            anchored=True,
            spaceless=True,
        ),
        Shape(
            "github_token",
            r"(?<![\w-])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9])"
            r"|(?<![\w-])github_pat_[A-Za-z0-9_]{22,251}(?![A-Za-z0-9_])",
            hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
            anchored=True,
            spaceless=True,
            reach=300,
        ),
        Shape(
            "slack_token",
            r"(?<![\w-])x(?:ox[abposr]|app-[0-9])-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9-])",
            hints=("xox", "xapp-"),
            anchored=True,
            spaceless=True,
            reach=300,
        ),
        Shape(
            "jwt",
            rf"(?<![\w-])eyJ{token}{{5,8000}}\.{token}{{5,16000}}\.{token}{{0,2000}}(?!{token})",
            check=_jwt_ok,
            hints=("eyJ",),
            anchored=True,
            spaceless=True,
            reach=26100,
        ),
        Shape(
            "private_key",
            _PRIVATE_KEY,
            hints=("-----BEGIN",),
            anchored=True,
            hold=False,  # withheld by _private_key_holdback instead
        ),
        Shape(
            "credential",
            _CREDENTIAL,
            spans=_credential_spans,
            hints=(":", "="),
            anchored=True,
            back=48,
            hold=False,  # withheld by _credential_holdback instead
        ),
    ]


# The hold-backs above hold nothing unless one of these matches: a separator whose value
# runs to the end of the text (_CREDENTIAL_TAIL without its key words), a PEM block begun,
# or its head arriving.
_HOLDBACK_TRIGGERS = (
    Trigger(re.compile(rf"[:=]\s{{0,3}}[\"'`]?{_VALUE}{{0,200}}\Z", re.IGNORECASE)),
    Trigger(re.compile("-----BEGIN")),
    Trigger(_PEM_HEAD_TAIL.tail, tail=True),
)


def secrets_detector() -> ShapeDetector:
    def holdback(text: str) -> int:
        return max(_private_key_holdback(text), _credential_holdback(text))

    return ShapeDetector(_shapes(), extra_holdback=holdback, extra_triggers=_HOLDBACK_TRIGGERS)
