"""Passwords and other secrets known by what is said around them (label `credential`).

A password has no shape; its context gives it away. Five forms, each for a reason:

- Assignment: `DB_PASSWORD=...`, `"client_secret": "..."`, `password: ...` (env files, JSON,
  YAML, INI, code). The key's last word must name a secret (`password`, `passwd`, `pwd`,
  `passphrase`, `Passwort`, `wachtwoord`, `senha`, `contraseña`, `mot de passe`; `secret`;
  `token`; `api_key`, `secret_key`, `access_key`...): `password_reset_url`, `max_tokens`,
  `next_page_token`, `primary_key` and `token_type` name something else.
- Command lines: `--password X`, `--token=X`, and the tools whose short flag takes one:
  `redis-cli -a`, `sshpass -p`, `mysql -pX`, `mongosh -p`, `ldapsearch -w`, `docker login -p`,
  `curl -u user:X`, `zip -P`.
- URL user info: `postgres://app:X@db:5432/`, `https://user:X@host/`.
- Code that passes a pair: `auth=("admin", "X")`, `HTTPBasicAuth("u", "X")`, `.login("u", "X")`;
  and HTTP `Authorization: Bearer X` / `Basic X` headers.
- Prose, in several languages: "the wifi password is X", "das Passwort lautet X",
  "le mot de passe est X", "la contraseña es X", "la password è X", "het wachtwoord is X",
  "a senha é X", "パスワードはX".

The value must then be one: not a placeholder (`<your password>`, `${DB_PASSWORD}`, `****`,
`changeme`, placeholders.py), not code that reads one (`os.environ["DB_PASSWORD"]`,
`get_access_token()`, `config.password`, a bare identifier after `=` in code), not a path or
URL, at least 8 characters after a key (6 in prose, 4 where a tool or URL says it is one),
and not a plain word where documentation puts one (`password: required`): an unquoted value
of letters only does not count. After `secret`, `token` or `key` words the value must also
look random (>= 3 bits of entropy per character), as keys do and prose does not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from gateway.policy.detectors import Hold, Shape
from gateway.policy.placeholders import is_placeholder

ENTROPY_BITS = 3.0

_STRONG_WORDS = frozenset(
    [
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "passwort",
        "kennwort",
        "wachtwoord",
        "senha",
        "contraseña",
        "contrasena",
        "clave",
        "mdp",
        "pass",
        "passcode",
        "motdepasse",
        "パスワード",
        "暗証番号",
    ]
)
# Words a key may end with, glued to another (PGPASSWORD, dbpasswd, adminpwd).
_GLUED_STRONG = ("password", "passwd", "passwort", "passphrase", "pwd")
_KEY_QUALIFIERS = frozenset(
    [
        "api",
        "secret",
        "access",
        "private",
        "signing",
        "encryption",
        "master",
        "auth",
        "client",
        "service",
        "account",
        "app",
        "storage",
        "shared",
        "sharedaccess",
        "webhook",
        "consumer",
        "admin",
        "deploy",
        "subscription",
        "license",
    ]
)
_NOT_TOKEN = frozenset(
    [
        "page",
        "next",
        "continuation",
        "pagination",
        "sync",
        "cancel",
        "cancellation",
        "csrf",
        "xsrf",
        "max",
        "num",
        "total",
        "count",
        "input",
        "output",
        "prompt",
        "completion",
        "reasoning",
        "cached",
    ]
)
_JOINED_KEYS = frozenset(
    [
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "accountkey",
        "sharedaccesskey",
        "signingkey",
        "masterkey",
        "clientsecret",
        "appsecret",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "apitoken",
        "bearertoken",
        "sessiontoken",
        "idtoken",
    ]
)
_PHRASE_KEYS = ("mot de passe", "palavra-passe", "palavra passe", "pass phrase")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[_\-.\s]+")


def key_strength(key: str) -> str | None:
    """ "strong" when `key` names a password, "weak" when it names a secret, token or key
    that should look random, None when it names something else."""
    lowered = key.strip("\"'` ").lower()
    if any(lowered.endswith(p) for p in _PHRASE_KEYS):
        return "strong"
    words = [w for w in _SPLIT.split(_CAMEL.sub("_", key.strip("\"'` "))) if w]
    if not words:
        return None
    words = [w.lower() for w in words]
    last = words[-1].rstrip("0123456789") or (words[-2] if len(words) > 1 else "")
    before = words[-2] if len(words) > 1 else ""
    if last in _STRONG_WORDS or any(last.endswith(w) for w in _GLUED_STRONG):
        return "strong"
    if last in ("secret", "credentials", "credential") or last in _JOINED_KEYS:
        return "weak"
    if last == "token" and before not in _NOT_TOKEN:
        return "weak"
    if last == "key" and before in _KEY_QUALIFIERS:
        return "weak"
    return None


def shannon_entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


_REFERENCE = re.compile(
    r"^[\w.]+[(\[]|\benviron\b|getenv|process\.env|^\$|^%\w+%$|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$"
    r"|^(?:vault|secret|secrets|ssm|arn|env|file|keyvault)[:/]"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_]*[A-Za-z0-9_]*")
_PATH = re.compile(r"^(?:/|\./|\.\./|~/|[A-Za-z]:\\|https?://|file://)")
_TRAILING = ".,;:!?)]}>»”'\"`」』】。、"


def trim_value(value: str) -> str:
    """The value without the sentence's punctuation after it, and without the Japanese or
    Chinese words that follow an ASCII value with no space between (`abc123です`)."""
    if value and value[0].isascii():
        for i, ch in enumerate(value):
            if not ch.isascii() and ch.isalpha():
                value = value[:i]
                break
    while value and value[-1] in _TRAILING and value[-1] not in "!?":
        value = value[:-1]
    while len(value) > 1 and value[-1] in "!?" and value[-2] in _TRAILING:
        value = value[:-1]
    return value


def value_ok(
    value: str, *, strength: str, quoted: bool, code: bool = False, minimum: int = 8
) -> bool:
    """Whether `value`, said to be a secret of `strength`, is a real one."""
    if len(value) < minimum or len(set(value)) < 3:
        return False
    if is_placeholder(value, random=strength == "weak") or _is_path(value, strength):
        return False
    if _REFERENCE.search(value) and not quoted:
        return False
    if not quoted:
        if value.isalpha():
            return False  # a word where documentation puts one: required, optional, hidden
        if code and _IDENTIFIER.fullmatch(value) and ("_" in value or not _has_digit(value)):
            return False  # a variable: password = user_password
    if strength == "weak":
        return shannon_entropy(value) >= ENTROPY_BITS and not value.isalpha()
    return True


def _is_path(value: str, strength: str) -> bool:
    """A file or URL (`/run/secrets/db`, `./key.pem`, `https://vault/...`). A random key may
    start with `/` too (base64); a path's parts are words, a key's mix cases and digits."""
    if not _PATH.match(value):
        return False
    if strength != "weak" or ":" in value:
        return True
    parts = [p for p in value.split("/") if len(p) > 2]
    return not parts or not all(_mixed(p) for p in parts)


def _mixed(part: str) -> bool:
    classes = (any(c.islower() for c in part), any(c.isupper() for c in part),
               any(c.isdigit() for c in part))  # fmt: skip
    return sum(classes) >= 2 and not part.replace("_", "").replace("-", "").isalpha()


def _has_digit(value: str) -> bool:
    return any(ch.isdigit() for ch in value)


# --- Assignment: found from a key word and the separator after it; the whole key is read
# back from there (DB_PASSWORD, "client_secret", apiKey) and judged by its last word ------

# Words a key ends with (lower-case: the pattern runs on the lowered text).
_KEY_WORDS = (
    r"(?:password|passwd|pwd|passphrase|passwort|kennwort|wachtwoord|senha|contraseña"
    r"|contrasena|clave|mdp|pass|passcode|mot de passe|palavra[- ]passe|パスワード|暗証番号"
    r"|secret|token|key|credentials?)[0-9]{0,3}"
)

# Where a key word starts: every assignment match begins with one of these.
_KEY_HINTS = (
    "pass", "pwd", "kennwort", "wachtwoord", "senha", "contrase", "clave", "mdp", "mot de passe",
    "palavra", "パスワード", "暗証番号", "secret", "token", "key", "credential",
)  # fmt: skip
_PROSE_HINTS = (
    "password", "passwort", "kennwort", "passphrase", "mot de passe", "contraseña", "contrasena",
    "clave", "wachtwoord", "senha", "palavra-passe", "パスワード", "暗証番号",
)  # fmt: skip
_VALUE = r"[^\s\"'`,;<>]"
_SEP = r"(?:=>|:=|[:=：])"
# The value sits in a look-ahead so that the match is the separator alone and the scan
# goes on from the next character: a long value never swallows the next `password=`.
_QUOTED = r"(?:\"(?P<d>[^\"\n]{1,200})\"|'(?P<s>[^'\n]{1,200})'|`(?P<b>[^`\n]{1,200})`)"
_ASSIGNMENT = (
    _KEY_WORDS
    + rf"s?[\"'`]?[ \t]{{0,3}}(?P<sep>{_SEP})[ \t]{{0,3}}(?:{_QUOTED}|(?P<value>{_VALUE}{{1,200}}))"
)
# Where an assignment can yield a value (the prefilter's test, prefilter.py): value_ok wants
# 8 characters or more, and an unquoted value that is not letters only, so prose such as
# "tokens: therefore" never runs the shape.
_ASSIGNED_VALUE = (
    _KEY_WORDS
    + rf"s?[\"'`]?[ \t]{{0,3}}{_SEP}[ \t]{{0,3}}"
    + r"(?:\"[^\"\n]{8}|'[^'\n]{8}|`[^`\n]{8}|[^\s\"'`,;<>]*[^\s\"'`,;<>a-z])"
)


def _quoted_group(m: re.Match[str]) -> str | None:
    return next((g for g in ("d", "s", "b") if m.group(g) is not None), None)


_KEY_CHARS = frozenset("_.-")
_KEY_OPENERS = frozenset(" \t\n\r{(,;\"'`[")


def key_before(text: str, sep: int) -> tuple[str, int] | None:
    """The key that ends just before the separator at `sep` (quotes and spaces skipped),
    and where it starts; None when what precedes is not a key."""
    i = sep
    while i > 0 and sep - i < 3 and text[i - 1] in " \t":
        i -= 1
    if i > 0 and text[i - 1] in "\"'`":
        i -= 1
    end = i
    tail = text[max(0, end - 14) : end].lower()
    for phrase in _PHRASE_KEYS:
        if tail.endswith(phrase):
            return text[end - len(phrase) : end], end - len(phrase)
    while i > 0 and end - i < 40 and (text[i - 1].isalnum() or text[i - 1] in _KEY_CHARS):
        i -= 1
    if i == end or (i > 0 and text[i - 1] not in _KEY_OPENERS):
        return None
    return text[i:end], i


def _assignment_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    sep = m.start("sep")
    found = key_before(text, sep)
    if found is None:
        return
    key, key_start = found
    strength = key_strength(key)
    if strength is None:
        return
    quote = _quoted_group(m)
    quoted = quote is not None
    group = quote or "value"
    s, e = m.span(group)
    raw = text[s:e]  # the match ran on the lowered text: the value is read from the original
    value = raw if quoted else trim_value(raw)
    e = s + len(value)
    before = text[max(0, sep - 1) : sep]
    after = text[m.end("sep") : m.end("sep") + 1]
    code = before == " " and after == " " and text[sep] == "="
    if key_start > 0 and text[key_start - 1] in ('"', "'") and not quoted:
        code = True  # a quoted key with a bare value: JSON or a dict, so a variable
    if value_ok(value, strength=strength, quoted=quoted, code=code):
        yield s, e


# --- Command lines -------------------------------------------------------------------------

_CMD_END = r"[^\n|;&]{0,64}?"
_FLAG_VALUE = r"(?P<q>[\"']?)(?P<value>[^\s\"']{1,200})"


def _word(word: str) -> str:
    """`word` at a word start, the boundary tested after its first character (so that the
    regex engine can skip ahead to the characters that begin some alternative)."""
    first = re.escape(word[0])
    return first + r"(?<![\w-]" + first + ")" + word[1:]


_CLI = (
    r"(?:" + _word("--") + r"(?:db-|admin-|root-|user-|api-|auth-|access-|client-|bind-)?"
    r"(?:password|passwd|pass|pwd|passphrase|secret|token|api-key|apikey|access-token"
    r"|auth-token|client-secret)(?:=|[ \t]+)"
    rf"|{_word('redis-cli')}\b{_CMD_END}[ \t]-a[ \t]+"
    rf"|{_word('sshpass')}[ \t]+-p[ \t]*"
    rf"|{_word('mongo')}(?:sh)?\b{_CMD_END}[ \t]-p[ \t]+"
    rf"|{_word('ldap')}(?:search|modify|add|delete|whoami|passwd)\b{_CMD_END}[ \t]-w[ \t]+"
    rf"|(?:{_word('docker')}|{_word('podman')}|{_word('buildah')}|{_word('helm')}|{_word('nerdctl')})"
    rf"[ \t]+(?:registry[ \t]+)?login\b{_CMD_END}[ \t]-p[ \t]+"
    rf"|{_word('zip')}\b{_CMD_END}[ \t]-P[ \t]*"
    rf"|(?:{_word('mysql')}(?:dump|admin)?|{_word('mariadb')}(?:-dump)?|{_word('7z')}a?)\b"
    rf"{_CMD_END}[ \t]-p(?=[^\s-])"
    rf"|{_word('curl')}\b{_CMD_END}[ \t](?:-u|--user)[ \t]+[\"']?[^\s:\"']{{1,64}}:"
    rf"|{_word('smbclient')}\b{_CMD_END}[ \t]-U[ \t]+[^\s%]{{1,64}}%"
    r")" + _FLAG_VALUE
)


def _cli_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    value = trim_value(m.group("value")) if not m.group("q") else m.group("value")
    s = m.start("value")
    if value_ok(value, strength="strong", quoted=bool(m.group("q")), minimum=4):
        yield s, s + len(value)


# --- URL user info and HTTP Authorization ------------------------------------------------

_URL = r"://(?P<user>[^\s:/@\"'<>]{1,48}):(?P<value>[^\s@/\"'<>]{1,128})@(?=[\w\[])"


def _url_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    value = m.group("value")
    if value == m.group("user"):
        return  # postgres:postgres@localhost: the image's default, not a secret
    if value_ok(value, strength="strong", quoted=True, minimum=4):
        yield m.span("value")


_AUTH = (
    r"authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:bearer|token|basic)[ \t]+"
    r"(?P<value>[a-z0-9._~+/=\-]{8,600})"
    r"|b(?<![\w-]b)earer[ \t]+(?P<bare>[a-z0-9._~+/=\-]{16,600})"
)


def _auth_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    group = "value" if m.group("value") is not None else "bare"
    s, e = m.span(group)
    value = text[s:e]
    if value.startswith("eyJ"):
        return  # a JWT: its own shape finds it
    if value_ok(value, strength="weak", quoted=True, minimum=8):
        yield s, e


# --- Pairs in code ---------------------------------------------------------------------

_PAIR_HEAD = (
    r"(?:a(?<![\w.]a)uth[ \t]*=[ \t]*\(|basicauth\(|httpbasicauth\(|httpdigestauth\(|\.login\()"
    r"[ \t]*[\"'][^\"'\n]{1,48}[\"'][ \t]*,[ \t]*"
)
_PAIR = _PAIR_HEAD + r"(?:\"(?P<d>[^\"\n]{1,200})\"|'(?P<s>[^'\n]{1,200})')"


def _pair_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    group = _quoted_group(m) or "d"
    if value_ok(text[m.start(group) : m.end(group)], strength="strong", quoted=True, minimum=4):
        yield m.span(group)


# --- Prose ---------------------------------------------------------------------------------

# Latin words start at a word boundary; Japanese ones follow any character (no spaces).
_PROSE_KEY = (
    r"(?:(?<![^\W_])(?:password|passwort|kennwort|passphrase|mot de passe|contraseña"
    r"|contrasena|clave|wachtwoord|senha|palavra-passe)|パスワード|暗証番号)"
)
_FOR = (
    r"(?:[ \t]+(?:for|of|to|für|zum|pour|du|de|del|di|voor|van|do|da)[ \t]+"
    r"(?:(?:the|das|den|der|die|le|la|el|il|lo|het|o|a)[ \t]+)?[^\s:：]{1,30})?"
)
_COPULA = (
    r"(?:[ \t]+(?:is|was|lautet|ist|est|es|era|è|é|e|blijft)(?![^\W_])[ \t]*[:：]?[ \t]*"
    r"|[ \t]*は[ \t]*"
    r"|[ \t]*[:：][ \t]*)"
)
_PROSE = (
    _PROSE_KEY
    + _FOR
    + _COPULA
    + r"(?:(?P<q>[\"'`“„«「])(?P<quoted>[^\"'`”“»」\n]{1,100})|(?P<value>[^\s\"'`”“»」]{1,100}))"
)


def _prose_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    quoted = m.group("quoted") is not None
    group = "quoted" if quoted else "value"
    s = m.start(group)
    raw = text[s : m.end(group)]
    value = raw if quoted else trim_value(raw)
    if quoted:
        close = text[m.end(group) : m.end(group) + 1]
        if not close:
            return  # the closing quote has not arrived: held, decided then
    if value_ok(value, strength="strong", quoted=quoted, minimum=6):
        yield s, s + len(value)


def password_shapes() -> list[Shape]:
    """The forms' shapes; what they withhold while a value arrives is password_holds()."""
    return _keyed_forms() + _said_forms()


def _keyed_forms() -> list[Shape]:
    """Assignments, command lines and URL user info: a key, a flag or a URL names the value."""
    return [
        Shape(
            "credential",
            _ASSIGNMENT,
            spans=_assignment_spans,
            presence=_ASSIGNED_VALUE,
            casefold=True,
            hints=_KEY_HINTS,
            requires=(":", "=", "："),
            anchored=True,
            back=40,
            context=84,
            hold=False,
        ),
        Shape(
            "credential",
            _CLI,
            spans=_cli_spans,
            hints=(
                "--",
                "redis-cli",
                "sshpass",
                "mongo",
                "ldap",
                "docker",
                "podman",
                "buildah",
                "helm",
                "nerdctl",
                "zip",
                "mysql",
                "mariadb",
                "7z",
                "curl",
                "smbclient",
            ),
            requires=(" -",),  # every form has a flag
            anchored=True,
            back=100,
            hold=False,
        ),
        Shape(
            "credential",
            _URL,
            spans=_url_spans,
            hints=("://",),
            anchored=True,
            back=64,
            hold=False,
        ),
    ]


def _said_forms() -> list[Shape]:
    """HTTP authorization, pairs passed in code, and prose that says what the value is."""
    return [
        Shape(
            "credential",
            _AUTH,
            spans=_auth_spans,
            casefold=True,
            hints=("bearer", "authorization"),
            anchored=True,
            back=48,
            hold=False,
        ),
        Shape(
            "credential",
            _PAIR,
            spans=_pair_spans,
            casefold=True,
            hints=("auth", "basicauth(", "httpbasicauth(", "httpdigestauth(", ".login("),
            anchored=True,
            back=80,
            hold=False,
        ),
        Shape(
            "credential",
            _PROSE,
            spans=_prose_spans,
            casefold=True,
            hints=_PROSE_HINTS,
            requires=(
                "passw",
                "kennw",
                "passe",
                "contrase",
                "clave",
                "wachtw",
                "senha",
                "パスワード",
                "暗証番号",
            ),
            anchored=True,
            back=80,
            hold=False,
        ),
    ]


_HOLD_VALUE = r"(?P<hold>[\"'`“„«「][^\"'`”“»」\n]{0,200}|[^\s\"'`,;<>]{0,200})\Z"


def password_holds() -> list[Hold]:
    """A value after each form's words, still arriving: withheld until it ends."""
    return [
        Hold(
            _KEY_WORDS + r"s?[\"'`]?[ \t]{0,3}" + _SEP + r"[ \t]{0,3}" + _HOLD_VALUE,
            casefold=True,
            hints=_KEY_HINTS,
        ),
        Hold(_CLI.replace(_FLAG_VALUE, "") + r"(?P<hold>[\"']?[^\s\"']{0,200})\Z", hints=("-",)),
        Hold(
            # Until the host's first character arrives, `@` may still end a password.
            r"://[^\s:/@\"'<>]{1,48}:(?P<hold>[^\s@/\"'<>]{0,128}@?)\Z",
            hints=("://",),
        ),
        Hold(
            r"(?:authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:bearer|token|basic)|bearer)[ \t]+"
            r"(?P<hold>[a-z0-9._~+/=\-]{0,600})\Z",
            casefold=True,
            hints=("bearer", "authorization"),
            reach=700,
        ),
        Hold(
            _PAIR_HEAD + r"(?P<hold>[\"'][^\"'\n]{0,200})\Z",
            casefold=True,
            hints=("auth", "login("),
        ),
        Hold(
            _PROSE_KEY + _FOR + _COPULA + _HOLD_VALUE,
            casefold=True,
            hints=(
                "passw",
                "kennwort",
                "passe",
                "contrase",
                "clave",
                "wachtwoord",
                "senha",
                "palavra",
                "パスワード",
                "暗証番号",
            ),
        ),
    ]
