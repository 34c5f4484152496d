"""GET /conversation over thousands of conversations: pages, totals, date ranges, and what one
page costs Redis (it must not grow with the org's size). The conversations are written
straight into Redis in the store's layout, in pipelines, so seeding 5,000 takes a moment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.storage import keys
from gateway.storage.conversations import index_keys
from gateway.storage.records import Conversation, Creator, iso
from tests.gateway_fixtures import ORG
from tests.support import commands_for

BASE_MS = int(
    datetime(2025, 1, 1, 20, 0, tzinfo=UTC).timestamp() * 1000
)  # 240 minutes before midnight
MINUTE = 60_000
# (user, workspace, repositories of that workspace); conversation i belongs to CREATORS[i % 4]
CREATORS = [
    ("alice", "ws-1", ("demo-1", "repo-1")),
    ("bob", "ws-1", ("demo-1", "repo-1")),
    ("carol", "ws-2", ("demo-2",)),
    ("dave", "ws-3", ("repo-3",)),
]


def cid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def conversation(i: int) -> Conversation:
    user, ws, repos = CREATORS[i % 4]
    return Conversation(
        id=cid(i),
        org_id=ORG,
        title="",
        created_by=user,
        creator=Creator(id=user),
        workspace_id=ws,
        repo_id=repos[(i // 4) % len(repos)],
        created_at=BASE_MS + i * MINUTE,
        updated_at=BASE_MS + i * MINUTE,
        tokens_in=i,
        tokens_out=2 * i,
    )


def walters(j: int) -> Conversation:
    """The workspace admin's own: in ws-1, which he manages, and in ws-3, which he does not;
    half a minute off the others' so the merge must interleave them."""
    ws, repo = (("ws-1", "demo-1"), ("ws-3", "repo-3"))[j % 2]
    at = BASE_MS + (7 * j) * MINUTE + 30_000
    return Conversation(
        id=f"00000000-0000-4000-9000-{j:012d}",
        org_id=ORG,
        title="",
        created_by="walter",
        creator=Creator(id="walter"),
        workspace_id=ws,
        repo_id=repo,
        created_at=at,
        updated_at=at,
    )


async def seed(store: Any, start: int, stop: int, make: Any = None) -> None:
    """Conversations start..stop-1, one minute apart: hashes and every index, pipelined."""
    pipe = store.redis.pipeline(transaction=False)
    for i in range(start, stop):
        conv = (make or conversation)(i)
        pipe.hset(keys.conversation(conv.id), mapping=conv.to_hash())
        for key in index_keys(conv):
            pipe.zadd(key, {conv.id: conv.created_at})
        if len(pipe) >= 5000:
            await pipe.execute()
    await pipe.execute()


def expected(n: int, keep=lambda c: True) -> list[str]:
    """What a list should hold, newest first."""
    return [c.id for c in (conversation(i) for i in reversed(range(n))) if keep(c)]


async def walk(api: Any, token: str, take: int, **params: Any) -> tuple[list[str], set[int]]:
    ids: list[str] = []
    totals: set[int] = set()
    skip = 0
    while True:
        body = await api.list(token, take=take, skip=skip, **params)
        totals.add(body["total"])
        ids += [c["id"] for c in body["conversations"]]
        if len(body["conversations"]) < take:
            return ids, totals
        skip += take


async def test_walking_every_page_of_1000_conversations(api, cast, store):
    await seed(store, 0, 1000)
    ids, totals = await walk(api, cast.org_admin, 100)
    assert totals == {1000}
    assert ids == expected(1000)  # newest first, none twice, none missing

    body = await api.list(cast.org_admin)  # default take: 50
    assert len(body["conversations"]) == 50 and body["total"] == 1000
    assert body["conversations"][0] == {
        "id": cid(999),
        "orgId": ORG,
        "createdBy": "dave",
        "createdAt": iso(BASE_MS + 999 * MINUTE),
        "lastUpdatedAt": iso(BASE_MS + 999 * MINUTE),
        "workspaceId": "ws-3",
        "repoId": "repo-3",
        "tokensIn": "999",
        "tokensOut": "1998",
        "cost": "0",  # seeded without answers: nothing was priced
        "creator": {"id": "dave", "name": None, "lastName": None, "email": None},
    }
    last = await api.list(cast.org_admin, take=100, skip=950)
    assert [c["id"] for c in last["conversations"]] == expected(1000)[950:]
    assert last["total"] == 1000
    beyond = await api.list(cast.org_admin, take=100, skip=1000)
    assert beyond["conversations"] == [] and beyond["total"] == 1000
    assert len((await api.list(cast.org_admin, take=100))["conversations"]) == 100


async def test_filtered_pages_and_totals_by_role(api, cast, store):
    await seed(store, 0, 1000)
    cases = [
        (cast.org_admin, {"userId": "alice"}, lambda c: c.created_by == "alice"),
        (cast.org_admin, {"workspaceId": "ws-1"}, lambda c: c.workspace_id == "ws-1"),
        (cast.org_admin, {"repoId": "repo-1"}, lambda c: c.repo_id == "repo-1"),
        (
            cast.org_admin,
            {"workspaceId": "ws-1", "repoId": "demo-1", "userId": "bob"},
            lambda c: c.repo_id == "demo-1" and c.created_by == "bob",
        ),
        (
            cast.ws_admin,
            {},
            lambda c: c.workspace_id == "ws-1",
        ),  # manages ws-1, has none of its own
        (cast.ws_admin, {"userId": "carol"}, lambda c: False),  # ws-2 is not theirs
        (cast.alice, {}, lambda c: c.created_by == "alice"),
        (cast.alice, {"workspaceId": "ws-2"}, lambda c: False),
        (cast.carol, {"repoId": "demo-2"}, lambda c: c.created_by == "carol"),
    ]
    for token, params, keep in cases:
        ids, totals = await walk(api, token, 100, **params)
        want = expected(1000, keep)
        assert ids == want, params
        assert totals == {len(want)}, params


async def test_a_workspace_admins_union_pages_exactly(api, cast, store):
    """walter manages ws-1 and owns 60 conversations, 30 of them in ws-1: his list is ws-1's
    500 plus his 30 elsewhere, each once, newest first, whatever the page boundaries."""
    await seed(store, 0, 1000)
    await seed(store, 0, 60, walters)
    everything = [conversation(i) for i in range(1000)] + [walters(j) for j in range(60)]

    def want(keep) -> list[str]:
        chosen = [c for c in everything if keep(c)]
        return [c.id for c in sorted(chosen, key=lambda c: (c.created_at, c.id), reverse=True)]

    window = {"from": iso(BASE_MS + 100 * MINUTE), "to": iso(BASE_MS + 300 * MINUTE)}

    def in_window(c: Conversation) -> bool:
        return BASE_MS + 100 * MINUTE <= c.created_at <= BASE_MS + 300 * MINUTE

    cases = [
        ({}, lambda c: c.workspace_id == "ws-1" or c.created_by == "walter"),
        ({"repoId": "repo-3"}, lambda c: c.created_by == "walter" and c.repo_id == "repo-3"),
        ({"repoId": "demo-1"}, lambda c: c.repo_id == "demo-1"),
        ({"userId": "walter"}, lambda c: c.created_by == "walter"),
        ({"userId": "bob"}, lambda c: c.created_by == "bob"),
        ({"userId": "dave"}, lambda c: False),  # dave works in ws-3: not walter's to see
        ({"workspaceId": "ws-3"}, lambda c: c.workspace_id == "ws-3" and c.created_by == "walter"),
        (window, lambda c: in_window(c) and (c.workspace_id == "ws-1" or c.created_by == "walter")),
    ]
    for params, keep in cases:
        for take in (100, 37):
            ids, totals = await walk(api, cast.ws_admin, take, **params)
            assert ids == want(keep), (params, take)
            assert totals == {len(ids)}, (params, take)


async def test_date_ranges_over_1000_conversations(api, cast, store):
    await seed(store, 0, 1000)
    # conversations 100..199, both ends inclusive, to the millisecond
    window = {"from": iso(BASE_MS + 100 * MINUTE), "to": iso(BASE_MS + 199 * MINUTE)}
    ids, totals = await walk(api, cast.org_admin, 30, **window)
    assert totals == {100} and ids == [cid(i) for i in reversed(range(100, 200))]
    first = await api.list(cast.org_admin, take=30, **window)
    assert len(first["conversations"]) == 30 and first["conversations"][0]["id"] == cid(199)
    # with a filter and a role on top
    ids, totals = await walk(api, cast.alice, 10, **window)
    assert ids == [cid(i) for i in reversed(range(100, 200)) if i % 4 == 0] and totals == {25}
    # a bare date is a whole day: 20:00 to midnight holds the first 240
    assert (await api.list(cast.org_admin, to="2025-01-01"))["total"] == 240
    assert (await api.list(cast.org_admin, **{"from": "2025-01-02"}))["total"] == 760
    day2 = await api.list(cast.org_admin, take=5, **{"from": "2025-01-02", "to": "2025-01-02"})
    assert day2["total"] == 760 and day2["conversations"][0]["id"] == cid(999)
    # offsets are honoured: 21:00+01:00 is 20:00Z, the very first conversation
    assert (await api.list(cast.org_admin, **{"from": "2025-01-01T21:00:00+01:00"}))[
        "total"
    ] == 1000
    assert (await api.list(cast.org_admin, to="2025-01-01T20:00:59Z"))["total"] == 1
    assert (await api.list(cast.org_admin, **{"from": "2030-01-01"}))["total"] == 0


async def test_take_above_100_is_400(api, cast, store):
    await seed(store, 0, 150)
    for take in (101, 1000, 0, -1):
        r = await api.http.get(
            "/conversation",
            params={"take": take},
            headers={"Authorization": f"Bearer {cast.org_admin}"},
        )
        assert r.status_code == 400 and r.json()["code"] == "validation_error"
        assert "take" in r.json()["message"]


# -- what one page costs Redis --------------------------------------------------------------------


async def test_the_cost_of_a_page_does_not_grow_with_the_org(api, cast, store, redis, capsys):
    window = {"from": iso(BASE_MS + 100 * MINUTE), "to": iso(BASE_MS + 900 * MINUTE)}
    pages = {
        "org admin, newest 50": (cast.org_admin, {"take": 50}),
        "org admin, 20 deep in": (cast.org_admin, {"take": 20, "skip": 500}),
        "org admin, ws+repo+dates": (
            cast.org_admin,
            {"take": 50, "workspaceId": "ws-1", "repoId": "demo-1", **window},
        ),
        "org admin, user+dates": (cast.org_admin, {"take": 50, "userId": "alice", **window}),
        "user, own": (cast.alice, {"take": 50}),
        "workspace admin": (cast.ws_admin, {"take": 50}),
    }

    async def measure() -> dict[str, dict[str, int]]:
        out = {}
        for name, (token, params) in pages.items():

            async def one(token: str = token, params: dict[str, Any] = params) -> None:
                body = await api.list(token, **params)
                assert len(body["conversations"]) == params["take"]

            await one()  # warm: connections in the pool, scripts loaded
            out[name] = await commands_for(
                redis, one, repeat=6
            )  # a loaded machine: polls land in more windows
        return out

    await seed(store, 0, 1000)
    at_1000 = await measure()
    await seed(store, 1000, 5000)
    assert (await api.list(cast.org_admin))["total"] == 5000
    at_5000 = await measure()

    with capsys.disabled():
        print("\nRedis commands per page (1,000 -> 5,000 conversations in the org):")
        for name in pages:
            print(f"  {name:28} {at_1000[name]}  ->  {at_5000[name]}")
    assert at_5000 == at_1000
    # one sorted-set index: a range and a count, then one HGETALL per conversation shown
    one_index = {"hgetall": 50, "zcount": 1, "zrevrangebyscore": 1}
    for name in (
        "org admin, newest 50",
        "org admin, ws+repo+dates",
        "org admin, user+dates",
        "user, own",
    ):
        assert at_1000[name] == one_index, name
    assert at_1000["org admin, 20 deep in"] == {**one_index, "hgetall": 20}
    # ws-1's index and walter's own, merged; the count of his own in ws-1 is subtracted
    assert at_1000["workspace admin"] == {
        "multi": 1,
        "zrevrangebyscore": 2,
        "zcount": 3,
        "exec": 1,
        "hgetall": 50,
    }
    # and nothing that builds a set as large as the org's (ZUNIONSTORE, ZINTERSTORE, SORT...)
    assert not any(
        name.endswith("store") or name == "sort" for page in at_5000.values() for name in page
    )
