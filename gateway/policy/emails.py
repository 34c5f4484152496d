"""Email addresses, internationalized ones included (RFC 6531 local parts, IDNA domains).

A regex proposes `local@domain.tld` (or `local%40domain.tld`, as URLs encode it); the rules
below decide, each for a reason:

- Letters of any script: `josé.garcía@correo.es`, `müller@bücher.de`, `用户@例子.广告`.
  A non-ASCII domain must be valid IDNA (UTS 46), as a mail server would require.
- One script per part: registries do not allow labels that mix scripts, and Japanese or
  Chinese prose puts an address right between two words without spaces
  (`メールはtaro@example.co.jpまで`): the address is the part in the script next to `@`
  (`taro`) and the top-level domain ends where its script does (`jp`).
- The top-level domain is letters (or an `xn--` label) and not a file extension: `logo@2x.png`
  is a retina image, `lodash@4.17.21` a package version.
- Structure that makes it something else: `git@github.com:org/repo` (a colon and a path after
  the host: an scp-style Git remote), `ssh deploy@db1.example.com` (after ssh, scp, sftp,
  rsync...: a login), `https://user@host/` (a URL's user info).
- Local parts start and end with a letter or digit; dots, `+`, `-`, `_` and an apostrophe
  (`o'brien`) may sit between.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

import idna

from gateway.policy.detectors import Shape

_LOCAL = r"(?:[\w.+'\-]|%[0-9A-Fa-f]{2}){0,63}"
_EMAIL = (
    r"[^\W_](?<![0-9A-Za-z\u00c0-\u024f_.+'%\-][^\W_])" + _LOCAL + r"(?<![.'+\-])(?:@|%40)"
    r"(?:[^\W_][\w\-]{0,62}\.){1,8}(?:xn--[a-z0-9\-]{1,59}|[^\W\d_]{2,63})"
    r"(?![\w\-]|\.[^\W_]|:[\w~/])"
)
# Extensions of files more often named than top-level domains that share them.
_FILE_EXTENSIONS = frozenset(
    [
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "bmp",
        "ico",
        "tif",
        "tiff",
        "psd",
        "heic",
        "avif",
        "pdf",
        "doc",
        "docx",
        "xls",
        "xlsx",
        "ppt",
        "pptx",
        "odt",
        "txt",
        "csv",
        "tsv",
        "json",
        "xml",
        "yaml",
        "yml",
        "toml",
        "ini",
        "cfg",
        "conf",
        "log",
        "html",
        "htm",
        "css",
        "scss",
        "less",
        "js",
        "mjs",
        "cjs",
        "jsx",
        "tsx",
        "ts",
        "vue",
        "java",
        "class",
        "jar",
        "war",
        "py",
        "pyc",
        "rb",
        "php",
        "go",
        "rs",
        "swift",
        "kt",
        "c",
        "cc",
        "cpp",
        "h",
        "hpp",
        "cs",
        "sh",
        "bash",
        "ps1",
        "bat",
        "exe",
        "dll",
        "so",
        "dylib",
        "bin",
        "iso",
        "dmg",
        "apk",
        "ipa",
        "msi",
        "deb",
        "rpm",
        "gz",
        "tgz",
        "bz2",
        "xz",
        "zst",
        "tar",
        "rar",
        "7z",
        "mp3",
        "wav",
        "flac",
        "ogg",
        "mp4",
        "mkv",
        "avi",
        "webm",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "map",
        "lock",
        "sql",
        "db",
        "sqlite",
        "bak",
        "tmp",
        "swp",
        "md",
        "rst",
        "tex",
        "ipynb",
        "pem",
        "crt",
        "key",
        "pub",
        "env",
    ]
)
_LOGIN_COMMANDS = re.compile(
    r"(?:^|[\s`'\"(;|&$])(?:ssh|scp|sftp|rsync|mosh|autossh|sshfs|ssh-copy-id|telnet|ftp)\s"
)


def _script(ch: str) -> str:
    """A coarse script of a letter: enough to tell where an address meets the prose."""
    code = ord(ch)
    if code < 0x250 or 0x1E00 <= code <= 0x1EFF:
        return "latin"
    if 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF:
        return "cjk"
    if 0xFF00 <= code <= 0xFFEF:
        return "cjk"
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "other"


def _letters_script(value: str) -> str | None:
    for ch in value:
        if ch.isalpha():
            return _script(ch)
    return None


def _email_spans(text: str, m: re.Match[str]) -> Iterator[tuple[int, int]]:
    start, end = m.span()
    value = text[start:end]
    at = value.find("@")
    width = 1
    if at < 0:
        at = value.lower().find("%40")
        width = 3
    local, domain = value[:at], value[at + width :]
    # The local part: the run in the script of the letter nearest to `@`.
    near = next((ch for ch in reversed(local) if ch.isalpha()), None)
    if near is not None:
        script = _script(near)
        cut = len(local)
        while cut > 0 and (not local[cut - 1].isalpha() or _script(local[cut - 1]) == script):
            cut -= 1
        while cut < len(local) and not local[cut].isalnum():
            cut += 1
        start += cut
        local = local[cut:]
    if not local:
        return
    # The domain: it ends where the top-level domain's script does.
    labels = domain.split(".")
    tld = labels[-1]
    script = _script(tld[0])
    keep = 1
    while keep < len(tld) and (not tld[keep].isalpha() or _script(tld[keep]) == script):
        keep += 1
    if keep < 2:
        return
    end -= len(tld) - keep
    labels[-1] = tld[:keep]
    if not _domain_ok(labels):
        return
    if _not_an_address(text, start, end):
        return
    yield start, end


def _domain_ok(labels: list[str]) -> bool:
    tld = labels[-1].lower()
    if tld.isascii() and tld in _FILE_EXTENSIONS:
        return False
    for label in labels:
        scripts = {_script(ch) for ch in label if ch.isalpha()}
        if len(scripts) > 1 or label.startswith("-") or label.endswith("-"):
            return False
    domain = ".".join(labels)
    if domain.isascii():
        return "_" not in domain
    try:
        idna.encode(domain, uts46=True)
    except idna.IDNAError:
        return False
    return True


def _not_an_address(text: str, start: int, end: int) -> bool:
    """A login or a URL's user info, by what precedes it on its line."""
    lo = max(0, start - 80, text.rfind("\n", 0, start) + 1)
    before = text[lo:start]
    token_start = max(before.rfind(" "), before.rfind("\t"), before.rfind("="), before.rfind("("))
    token = before[token_start + 1 :]
    if "://" in token and not token.lower().startswith("mailto:"):
        return True
    return _LOGIN_COMMANDS.search(before) is not None


def email_shapes() -> list[Shape]:
    return [
        Shape(
            "email",
            _EMAIL,
            spans=_email_spans,
            hints=("@", "%40"),
            spaceless=True,
            reach=400,
            context=80,
        )
    ]
