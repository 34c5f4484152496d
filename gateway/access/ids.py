"""The ids callers name: orgs, workspaces, users, repositories and policies, each with one
documented alphabet, checked where an id enters the gateway (JWT claims, API-key records,
query parameters, request bodies): 400 for a request, 401 for a token whose claims break it.

| id | alphabet | length |
| --- | --- | --- |
| org, workspace | letters, digits, `.` `_` `-` | 1-128 |
| user | letters, digits, `.` `_` `-` `@` `+` `|` (bar) `:` `=` | 1-200 |
| repository | letters, digits, `.` `_` `:` `-`, first a letter or digit | 1-200 |
| policy | letters, digits, `.` `_` `:` `-`, first a letter or digit | 1-128 |

The user alphabet takes identity providers' subjects (`auth0|123`, e-mail addresses,
Keycloak's `f:<idp>:<name>`, UUIDs). Conversation, session and message ids are the gateway's
own UUIDs: an unknown one simply finds nothing.

Org and workspace ids hold no `:` (an org admin's policy ids are `<org>:<name>`, see
gateway/api/policies.py) and no `{` `}` (the org's hash tag). Whatever an id holds, the Redis
key layout escapes it (gateway/storage/keys.py part()), so this alphabet is the documented
contract, not the only guard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Kind = Literal["org", "workspace", "user", "repository", "policy"]

_ORG = re.compile(r"[A-Za-z0-9._-]{1,128}")
ALPHABETS: dict[Kind, tuple[re.Pattern[str], str]] = {
    "org": (_ORG, "1-128 letters, digits, '.', '_' or '-'"),
    "workspace": (_ORG, "1-128 letters, digits, '.', '_' or '-'"),
    "user": (re.compile(r"[A-Za-z0-9._@+|:=-]{1,200}"), "1-200 letters, digits or . _ - @ + | : ="),
    "repository": (
        re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}"),
        "1-200 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
    ),
    "policy": (
        re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"),
        "1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
    ),
}


_user_ok = ALPHABETS["user"][0].fullmatch
_org_ok = _ORG.fullmatch


def principal_ids_valid(user: str, org: object, workspaces: Iterable[str]) -> bool:
    """The ids a token or an API key carries, all of their alphabets: the fast path of every
    authenticated request that is not served from the key cache (a JWT's)."""
    return (
        _user_ok(user) is not None
        and isinstance(org, str)
        and _org_ok(org) is not None
        and all(_org_ok(w) is not None for w in workspaces)
    )


def valid(kind: Kind, value: object) -> bool:
    return isinstance(value, str) and ALPHABETS[kind][0].fullmatch(value) is not None


def problem(kind: Kind, value: object) -> str | None:
    """None for a valid id, else what a valid one looks like."""
    return None if valid(kind, value) else f"a {kind} id is {ALPHABETS[kind][1]}"


def first_problem(checks: Iterable[tuple[str, Kind, object]]) -> str | None:
    """The first of (where, kind, value) that is not a valid id, said with its place."""
    for where, kind, value in checks:
        found = problem(kind, value)
        if found is not None:
            return f"{where}: {found}"
    return None
