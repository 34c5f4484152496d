"""Secrets: provider API keys, cloud and chat tokens, private keys, JWTs, and passwords.

Key shapes are the published prefixes and lengths that maintained scanners (gitleaks,
trufflehog, detect-secrets) key on, written here from the providers' own formats:

| label | shape | why it is safe to match anywhere |
| --- | --- | --- |
| openai_key | `sk-`, `sk-proj-`, `sk-svcacct-`, `sk-admin-` + 20..400 key chars | prefix + length |
| anthropic_key | `sk-ant-` + 20..400 | prefix |
| aws_access_key | `AKIA`/`ASIA`/`ABIA`/`ACCA` + 16 base-32 capitals | prefix + alphabet |
| github_token | `ghp_ gho_ ghu_ ghs_ ghr_` + 36.., `github_pat_` + 22.. | prefix |
| gitlab_token | `glpat-` (also `gldt- glrt- glptt- glcbt-`) + 20.. | prefix |
| slack_token | `xoxb- xoxp- xoxa- xoxr- xoxs- xoxo-`, `xapp-N-`; webhook URLs | prefix |
| stripe_key | `sk_live_ sk_test_ rk_live_ rk_test_` + 10..; `whsec_` + 32.. | prefix |
| google_api_key | `AIza` + exactly 35; OAuth `GOCSPX-` + 28, `ya29.` tokens | prefix + length |
| npm_token, pypi_token | `npm_` + 36, `pypi-AgEIcHlwaS5vcmc` + 50.. | prefix + length |
| huggingface_token | `hf_` + 34 letters | prefix + length |
| sendgrid_key, twilio_key | `SG.` + 22 `.` + 43, `SK` + 32 hex | prefix + alphabet |
| mailgun_key | `key-` + 32 hex | prefix + alphabet |
| shopify_token | `shpat_ shpca_ shppa_ shpss_` + 32 hex | prefix |
| digitalocean_token | `dop_v1_ doo_v1_ dor_v1_` + 64 hex | prefix |
| jwt | `eyJ` header `.` payload `.` signature, the header decoding to JSON with "alg" | structure |
| private_key | a PEM `-----BEGIN ... PRIVATE KEY-----` block | structure |
| credential | a value after password / secret / token words (passwords.py) | context |

A key whose body is a placeholder (`sk-xxxxxxxx...`, `sk-...`, `xoxb-your-bot-token`,
`AKIAIOSFODNN7EXAMPLE`, a body that counts up) is documentation, not a secret
(placeholders.py). Publishable keys (`pk_live_`) are public by design and not matched.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter

from gateway.policy.detectors import Shape, ShapeDetector, Tail
from gateway.policy.passwords import password_holds, password_shapes
from gateway.policy.placeholders import is_placeholder
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


_PREFIX = re.compile(
    r"sk-(?:ant-(?:[a-z]+[0-9]{2}-)?|proj-|svcacct-|admin-)?|[sr]k_(?:live|test)_|whsec_"
    r"|gh[pousr]_|github_pat_|gl(?:pat|dt|rt|ptt|cbt)-|xox[a-z]-|xapp-[0-9]-|npm_|hf_"
    r"|pypi-|shp(?:at|ca|pa|ss)_|do[opr]_v1_|key-|GOCSPX-|ya29\.|AIza|SG\.|SK|A(?:KIA|SIA|BIA|CCA)"
)


def _key_ok(text: str, start: int, end: int) -> bool:
    """A key shape with a body that is not a placeholder."""
    value = text[start:end]
    prefix = _PREFIX.match(value)
    body = value[prefix.end() :] if prefix else value
    return not is_placeholder(body) and not is_placeholder(value)


def _key(
    label: str,
    pattern: str,
    hints: tuple[str, ...],
    *,
    reach: int = 64,
    check: bool = True,
    requires: tuple[str, ...] = (),
) -> Shape:
    # Each shape is worth running only where its prefix occurs (`hints`, a plain substring
    # test), so its left boundary can come first, where the hold-back can see it. Shapes
    # with several prefixes that share a character test that one first (`requires`).
    return Shape(
        label,
        pattern,
        check=_key_ok if check else None,
        hints=hints,
        requires=requires,
        anchored=True,
        spaceless=True,
        reach=reach,
    )


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


def _private_key_ok(text: str, start: int, end: int) -> bool:
    # `-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----` in docs has no body.
    parts = text[start:end].split("-----")
    if len(parts) <= 3:
        return True  # no END line yet: what has arrived is held back, so it counts
    inner = parts[2].strip()
    return len(inner) >= 4 and not is_placeholder(inner, random=False)


_T = "[A-Za-z0-9_-]"


# Boundaries are ASCII: a key pasted into Japanese or Chinese prose touches letters that
# `\\w` counts as word characters (`このキーsk-proj-...を無効に`).
def _provider_keys() -> list[Shape]:  # long: a table, one entry per provider
    return [
        _key(
            "anthropic_key",
            rf"(?<![A-Za-z0-9_-])sk-ant-{_T}{{20,400}}(?!{_T})",
            ("sk-ant-",),
            reach=512,
        ),
        _key(
            "openai_key",
            rf"(?<![A-Za-z0-9_-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?{_T}{{20,400}}(?!{_T})",
            ("sk-",),
            reach=512,
        ),
        _key(
            "stripe_key",
            r"(?<![A-Za-z0-9_-])(?:[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}|whsec_[A-Za-z0-9]{32,64})"
            r"(?![A-Za-z0-9])",
            ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
            requires=("_",),
            reach=300,
        ),
        _key(
            "aws_access_key",
            r"(?<![A-Za-z0-9])A(?:KIA|SIA|BIA|CCA)[A-Z2-7]{16}(?![A-Za-z0-9])",
            ("AKIA", "ASIA", "ABIA", "ACCA"),
            requires=("A",),
        ),
        _key(
            "github_token",
            r"(?<![A-Za-z0-9_-])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9])"
            r"|(?<![A-Za-z0-9_-])github_pat_[A-Za-z0-9_]{22,251}(?![A-Za-z0-9_])",
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
            requires=("_",),
            reach=300,
        ),
        _key(
            "gitlab_token",
            r"(?<![A-Za-z0-9_-])gl(?:pat|dt|rt|ptt|cbt)-[A-Za-z0-9_-]{20,64}(?![A-Za-z0-9_-])",
            ("glpat-", "gldt-", "glrt-", "glptt-", "glcbt-"),
            requires=("gl",),
            reach=96,
        ),
        _key(
            "slack_token",
            r"(?<![A-Za-z0-9_-])x(?:ox[abposr]|app-[0-9])-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9-])"
            r"|(?<![A-Za-z0-9_.-])hooks\.slack\.com/(?:services|workflows)/T[A-Z0-9]{6,12}/[A-Z0-9]{6,14}"
            r"/[A-Za-z0-9]{16,48}(?![A-Za-z0-9])",
            ("xox", "xapp-", "hooks.slack.com/"),
            requires=("x", "hooks."),
            reach=300,
        ),
        _key(
            "google_api_key",
            r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"
            r"|(?<![A-Za-z0-9_-])GOCSPX-[0-9A-Za-z_-]{28}(?![A-Za-z0-9_-])"
            r"|(?<![A-Za-z0-9_.-])ya29\.[0-9A-Za-z_-]{20,400}(?![A-Za-z0-9_-])",
            ("AIza", "GOCSPX-", "ya29."),
            reach=420,
        ),
    ]


def _more_keys() -> list[Shape]:
    return [
        _key("npm_token", r"(?<![A-Za-z0-9_-])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])", ("npm_",)),
        _key(
            "pypi_token",
            r"(?<![A-Za-z0-9_-])pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,300}(?![A-Za-z0-9_-])",
            ("pypi-AgEI",),
            reach=320,
        ),
        _key("huggingface_token", r"(?<![A-Za-z0-9_-])hf_[A-Za-z]{34}(?![A-Za-z0-9])", ("hf_",)),
        _key(
            "sendgrid_key",
            r"(?<![A-Za-z0-9_.-])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])",
            ("SG.",),
            reach=80,
        ),
        _key("twilio_key", r"(?<![A-Za-z0-9])SK[0-9a-f]{32}(?![A-Za-z0-9])", ("SK",)),
        _key(
            "shopify_token",
            r"(?<![A-Za-z0-9_-])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![A-Za-z0-9])",
            ("shpat_", "shpca_", "shppa_", "shpss_"),
            requires=("shp",),
        ),
        _key(
            "digitalocean_token",
            r"(?<![A-Za-z0-9_-])do[opr]_v1_[a-f0-9]{64}(?![A-Za-z0-9])",
            ("dop_v1_", "doo_v1_", "dor_v1_"),
            requires=("_v1_",),
            reach=80,
        ),
        _key("mailgun_key", r"(?<![A-Za-z0-9_-])key-[0-9a-f]{32}(?![A-Za-z0-9])", ("key-",)),
    ]


def _structures() -> list[Shape]:
    return [
        Shape(
            "jwt",
            rf"(?<![A-Za-z0-9_-])eyJ{_T}{{5,8000}}\.{_T}{{5,16000}}\.{_T}{{0,2000}}(?!{_T})",
            check=_jwt_ok,
            hints=("eyJ",),
            anchored=True,
            spaceless=True,
            reach=26100,
        ),
        Shape(
            "private_key",
            _PRIVATE_KEY,
            check=_private_key_ok,
            hints=("-----BEGIN",),
            anchored=True,
            hold=False,  # withheld by _private_key_holdback instead
        ),
    ]


# The PEM hold-back holds nothing unless one of these matches: a block begun, or its head
# arriving.
_PEM_TRIGGERS = (
    Trigger(re.compile("-----BEGIN")),
    Trigger(_PEM_HEAD_TAIL.tail, tail=True),
)


def secrets_detector() -> ShapeDetector:
    return ShapeDetector(
        _provider_keys() + _more_keys() + _structures() + password_shapes(),
        holds=password_holds(),
        extra_holdback=_private_key_holdback,
        extra_triggers=_PEM_TRIGGERS,
    )
