"""Who may do what, exactly as the seeds put it: role x action, with the status every caller
gets and what every list holds; the Conversation Service API (/api/conversation) obeys the
same rules. Every refusal also checks that Redis did not change.

Cast: org_admin (olivia), ws_admin (walter, manages ws-1), alice and bob (users of ws-1),
carol (user of ws-2), mallory (user of another org), admin (the platform operator).
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.storage import keys
from tests.gateway_fixtures import ORG
from tests.repo_fixtures import USER_IDS, conv_hash, indexes_holding, message_count
from tests.support import bearer

ACTORS = ("admin", "org_admin", "ws_admin", "alice", "bob", "carol", "mallory")


def token(cast, who: str) -> str:
    return getattr(cast, who)


# -- create --------------------------------------------------------------------------------------

CREATE = {
    # repository (its workspace):  admin org_admin ws_admin alice bob carol mallory
    "demo-1 (ws-1)": ("demo-1", (200, 200, 200, 200, 200, 403, 404)),
    "demo-2 (ws-2)": ("demo-2", (200, 200, 403, 403, 403, 200, 404)),
    "demo-9 (org-2)": ("demo-9", (200, 404, 404, 404, 404, 404, 200)),
    "orphan": ("repo-orphan", (400, 400, 400, 400, 400, 400, 404)),
    "unknown": ("nope", (404, 404, 404, 404, 404, 404, 404)),
}


@pytest.mark.parametrize("case", list(CREATE))
async def test_create(api, cast, redis, case):
    repo, expected = CREATE[case]
    got = []
    for who in ACTORS:
        before = set(await redis.keys(keys.CONVERSATION_KEYS)) | set(
            await redis.keys(keys.org_index_pattern())
        )
        r = await api.http.post(
            "/conversation", json={"repoId": repo}, headers=bearer(token(cast, who))
        )
        got.append(r.status_code)
        after = set(await redis.keys(keys.CONVERSATION_KEYS)) | set(
            await redis.keys(keys.org_index_pattern())
        )
        if r.status_code == 200:
            h = await conv_hash(redis, r.json()["conversationId"])
            assert (h["repo_id"], h["created_by"]) == (repo, USER_IDS[who])
        else:
            assert r.json()["success"] is False
            assert after == before  # no conversation, no index entry
    assert dict(zip(ACTORS, got, strict=True)) == dict(zip(ACTORS, expected, strict=True))


# -- one org's conversations, seen by everyone --------------------------------------------------


@pytest.fixture
async def world(api, cast):
    """A1, B1, W1 in ws-1 (alice, bob, walter); C2, O2 in ws-2 (carol, olivia); M in org-2.
    Created in that order, a few milliseconds apart, so from/to can cut between them."""
    made = {}
    for name, who, repo in (
        ("A1", "alice", "demo-1"),
        ("B1", "bob", "demo-1"),
        ("W1", "ws_admin", "demo-1"),
        ("C2", "carol", "demo-2"),
        ("O2", "org_admin", "demo-2"),
        ("M", "mallory", "demo-9"),
    ):
        made[name] = await api.create(token(cast, who), repo)
        await asyncio.sleep(0.005)
    return made


NEWEST_FIRST = ("O2", "C2", "W1", "B1", "A1")


def names(world, ids: list[str]) -> list[str]:
    back = {v: k for k, v in world.items()}
    return [back.get(i, i) for i in ids]


def visible(*which: str) -> list[str]:
    return [n for n in NEWEST_FIRST if n in which]


LIST = {
    # filter -> what each caller's list holds, newest first
    "none": {
        "admin": visible("A1", "B1", "W1", "C2", "O2"),
        "org_admin": visible("A1", "B1", "W1", "C2", "O2"),
        "ws_admin": visible("A1", "B1", "W1"),
        "alice": ["A1"],
        "bob": ["B1"],
        "carol": ["C2"],
        "mallory": ["M"],
    },
    "workspaceId=ws-1": {
        "admin": visible("A1", "B1", "W1"),
        "org_admin": visible("A1", "B1", "W1"),
        "ws_admin": visible("A1", "B1", "W1"),
        "alice": ["A1"],
        "bob": ["B1"],
        "carol": [],
        "mallory": [],
    },
    "workspaceId=ws-2": {
        "admin": visible("C2", "O2"),
        "org_admin": visible("C2", "O2"),
        "ws_admin": [],
        "alice": [],
        "bob": [],
        "carol": ["C2"],
        "mallory": [],
    },
    "repoId=demo-1": {
        "admin": visible("A1", "B1", "W1"),
        "org_admin": visible("A1", "B1", "W1"),
        "ws_admin": visible("A1", "B1", "W1"),
        "alice": ["A1"],
        "bob": ["B1"],
        "carol": [],
        "mallory": [],
    },
    "repoId=demo-2": {
        "admin": visible("C2", "O2"),
        "org_admin": visible("C2", "O2"),
        "ws_admin": [],
        "alice": [],
        "bob": [],
        "carol": ["C2"],
        "mallory": [],
    },
    "userId=alice": {
        "admin": ["A1"],
        "org_admin": ["A1"],
        "ws_admin": ["A1"],
        "alice": ["A1"],
        "bob": [],
        "carol": [],
        "mallory": [],
    },
    "userId=carol": {
        "admin": ["C2"],
        "org_admin": ["C2"],
        "ws_admin": [],
        "alice": [],
        "bob": [],
        "carol": ["C2"],
        "mallory": [],
    },
    "userId=walter&workspaceId=ws-1&repoId=demo-1": {
        "admin": ["W1"],
        "org_admin": ["W1"],
        "ws_admin": ["W1"],
        "alice": [],
        "bob": [],
        "carol": [],
        "mallory": [],
    },
    "from=W1": {  # from the creation of W1 on (inclusive)
        "admin": visible("W1", "C2", "O2"),
        "org_admin": visible("W1", "C2", "O2"),
        "ws_admin": ["W1"],
        "alice": [],
        "bob": [],
        "carol": ["C2"],
        "mallory": ["M"],
    },
    "to=B1": {  # up to the creation of B1 (inclusive)
        "admin": visible("A1", "B1"),
        "org_admin": visible("A1", "B1"),
        "ws_admin": visible("A1", "B1"),
        "alice": ["A1"],
        "bob": ["B1"],
        "carol": [],
        "mallory": [],
    },
}


@pytest.mark.parametrize("flt", list(LIST))
async def test_list(api, cast, world, flt):
    params: dict[str, str] = {}
    for part in flt.split("&"):
        if part == "none":
            continue
        key, value = part.split("=")
        if key in ("from", "to"):
            conv = (await api.list(cast.org_admin))["conversations"]
            value = next(c["createdAt"] for c in conv if c["id"] == world[value])
        params[key] = value
    got = {}
    for who in ACTORS:
        extra = {"org_id": ORG} if who == "admin" else {}
        body = await api.list(token(cast, who), **params, **extra)
        got[who] = names(world, [c["id"] for c in body["conversations"]])
        assert body["total"] == len(got[who])
    expected = dict(LIST[flt])
    assert got == expected


async def test_list_of_another_org_is_403_but_the_admin_may_name_any(api, cast, world):
    for who in ("org_admin", "ws_admin", "alice"):
        r = await api.http.get(
            "/conversation", params={"org_id": "org-2"}, headers=bearer(token(cast, who))
        )
        assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    assert names(world, await api.list_ids(cast.admin, org_id="org-2")) == ["M"]


# -- read messages, prompt -----------------------------------------------------------------------

READ = {
    # conversation: admin org_admin ws_admin alice bob carol mallory
    "A1": (200, 200, 200, 200, 404, 404, 404),
    "W1": (200, 200, 200, 404, 404, 404, 404),
    "C2": (200, 200, 404, 404, 404, 200, 404),
    "O2": (200, 200, 404, 404, 404, 404, 404),
    "M": (200, 404, 404, 404, 404, 404, 200),
}
PROMPT = {
    # a workspace admin reads the conversations of their workspace, but prompts only their own
    "A1": (200, 200, 403, 200, 404, 404, 404),
    "W1": (200, 200, 200, 404, 404, 404, 404),
    "C2": (200, 200, 404, 404, 404, 200, 404),
    "O2": (200, 200, 404, 404, 404, 404, 404),
    "M": (200, 404, 404, 404, 404, 404, 200),
}


@pytest.mark.parametrize("conv", list(READ))
async def test_read_messages_both_api_styles(api, cast, world, conv):
    cid = world[conv]
    got, got_api = [], []
    for who in ACTORS:
        got.append((await api.messages(token(cast, who), cid)).status_code)
        # each asks in their own org; the admin in the conversation's
        org = (
            ("org-2" if conv == "M" else ORG)
            if who == "admin"
            else ("org-2" if who == "mallory" else ORG)
        )
        r = await api.http.get(
            "/api/conversation/get_with_sessions",
            params={"org_id": org, "conversation_id": cid},
            headers=bearer(token(cast, who)),
        )
        got_api.append(r.status_code)
    assert dict(zip(ACTORS, got, strict=True)) == dict(zip(ACTORS, READ[conv], strict=True))
    assert dict(zip(ACTORS, got_api, strict=True)) == dict(zip(ACTORS, READ[conv], strict=True))


@pytest.mark.parametrize("conv", list(PROMPT))
async def test_prompt(api, cast, redis, upstream, world, conv):
    cid = world[conv]
    got = []
    for who in ACTORS:
        before = await message_count(redis, cid)
        r = await api.prompt(token(cast, who), cid, f"from {who}")
        got.append(r.status_code)
        if r.status_code == 200:
            assert await message_count(redis, cid) == before + 2
        else:
            assert r.json()["success"] is False
            assert await message_count(redis, cid) == before  # nothing stored, nothing sent
    assert dict(zip(ACTORS, got, strict=True)) == dict(zip(ACTORS, PROMPT[conv], strict=True))
    assert upstream.requests == []  # the demo model answers locally


async def test_prompt_rules_hold_for_the_conversation_service_stream(api, cast, redis, world):
    """walter may read alice's conversation (ws-1) but not prompt it: 403 there too; bob
    does not even see it: 404."""
    sid = (await conv_hash(redis, world["A1"]))["default_session_id"]
    for who, status in (("ws_admin", 403), ("bob", 404), ("alice", 200)):
        r = await api.http.post(
            f"/api/conversation/stream_chat?org_id={ORG}",
            json={"chat_session_id": sid, "message": "hi"},
            headers=bearer(token(cast, who)),
        )
        assert r.status_code == status, who
    assert await message_count(redis, world["A1"]) == 2


async def test_the_conversation_service_list_shows_what_the_repository_list_shows(api, cast, world):
    for who in ACTORS:
        org = "org-2" if who == "mallory" else ORG
        r = await api.http.get(
            f"/api/conversation/list?org_id={org}", headers=bearer(token(cast, who))
        )
        ids = [c["id"] for c in r.json()["conversations"]]
        params = {"org_id": org} if who == "admin" else {}
        assert ids == await api.list_ids(token(cast, who), **params), who


# -- delete --------------------------------------------------------------------------------------

DELETE = {
    # whose conversation: admin org_admin ws_admin alice bob carol mallory
    "alice's (ws-1)": ("alice", "demo-1", (200, 200, 200, 200, 404, 404, 404)),
    "carol's (ws-2)": ("carol", "demo-2", (200, 200, 404, 404, 404, 200, 404)),
    "walter's (ws-1)": ("ws_admin", "demo-1", (200, 200, 200, 404, 404, 404, 404)),
    "mallory's (org-2)": ("mallory", "demo-9", (200, 404, 404, 404, 404, 404, 200)),
}


@pytest.mark.parametrize("case", list(DELETE))
async def test_delete(api, cast, redis, case):
    owner, repo, expected = DELETE[case]
    org = "org-2" if owner == "mallory" else ORG
    got = []
    for who in ACTORS:
        cid = await api.create(token(cast, owner), repo)  # a fresh one for every caller
        indexed = await indexes_holding(redis, cid, org)
        r = await api.delete(token(cast, who), cid)
        got.append(r.status_code)
        h = await conv_hash(redis, cid)
        if r.status_code == 200:
            assert h["deleted_at"] and h["deleted_by"] == USER_IDS[who]
            assert await indexes_holding(redis, cid, org) == []
        else:
            assert r.json()["code"] == "conversation_not_found"
            assert "deleted_at" not in h and await indexes_holding(redis, cid, org) == indexed
    assert dict(zip(ACTORS, got, strict=True)) == dict(zip(ACTORS, expected, strict=True))
