"""System events: every conversation created or deleted, prompt sent, access denied, key
created or revoked lands on the org's capped stream, and /admin/events reads it back."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis as sync_redis

from gateway import cli
from gateway.access import audit
from gateway.access.audit import Audit
from gateway.storage import keys
from gateway.storage.records import iso
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


async def events(api: Any, token: str, **params: Any) -> dict[str, Any]:
    r = await api.http.get("/admin/events", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


async def event_types(api: Any, token: str, want: int, **params: Any) -> list[dict[str, Any]]:
    """Some events are written in the background: wait (briefly) until `want` are there."""
    for _ in range(100):
        body = await events(api, token, **params)
        if len(body["events"]) >= want:
            return body["events"]
        await asyncio.sleep(0.02)
    return body["events"]


async def test_conversation_lifecycle_and_refusals_are_recorded(api, cast):
    cid = await api.create(cast.alice, "demo-1")
    assert (await api.prompt(cast.alice, cid, "hello")).status_code == 200
    r = await api.http.post("/conversation", json={"repoId": "demo-1"}, headers=bearer(cast.carol))
    assert r.status_code == 403
    assert (await api.prompt(cast.ws_admin, cid, "mine now")).status_code == 403
    assert (await api.delete(cast.org_admin, cid)).status_code == 200

    got = await event_types(api, cast.org_admin, 5)
    assert [e["type"] for e in got] == [
        "conversation_deleted",
        "access_denied",
        "access_denied",
        "prompt_sent",
        "conversation_created",
    ]
    deleted, denied_prompt, denied_create, prompted, created = got
    assert created["conversation_id"] == cid and created["actor"] == "alice"
    assert (created["repo_id"], created["workspace_id"], created["model"]) == (
        "demo-1",
        "ws-1",
        "demo",
    )
    assert created["org_id"] == ORG and created["actor_role"] == "user"
    assert (
        prompted["conversation_id"] == cid
        and prompted["model"] == "demo"
        and prompted["message_id"]
    )
    assert (denied_create["actor"], denied_create["path"], denied_create["method"]) == (
        "carol",
        "/conversation",
        "POST",
    )
    assert (
        denied_prompt["actor"] == "walter"
        and denied_prompt["path"] == f"/conversation/{cid}/prompt"
    )
    assert (deleted["actor"], deleted["actor_role"], deleted["created_by"]) == (
        "olivia",
        "org_admin",
        "alice",
    )
    # ids are stream ids, times are ISO 8601, newest first
    stream_order = sorted(got, key=lambda e: tuple(map(int, e["id"].split("-"))), reverse=True)
    assert got == stream_order
    assert all(e["at"].endswith("Z") for e in got)


async def test_the_conversation_service_api_is_audited_too(api, cast):
    r = await api.http.post(
        f"/api/conversation/create?org_id={ORG}", json={"title": "t"}, headers=bearer(cast.alice)
    )
    cid = r.json()["id"]
    r = await api.http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": cid, "model_id": "demo"},
        headers=bearer(cast.alice),
    )
    sid = r.json()["id"]
    r = await api.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": sid, "message": "hi"},
        headers=bearer(cast.alice),
    )
    assert r.status_code == 200
    r = await api.http.get("/api/conversation/list?org_id=org-2", headers=bearer(cast.alice))
    assert r.status_code == 403
    got = await event_types(api, cast.org_admin, 3)
    assert [e["type"] for e in got] == ["access_denied", "prompt_sent", "conversation_created"]
    assert got[0]["code"] == "forbidden_org"
    assert got[1]["conversation_id"] == cid and got[1]["chat_session_id"] == sid


async def test_who_may_read_events(api, cast):
    await api.create(cast.mallory, "demo-9")
    r = await api.http.get("/admin/events", headers=bearer(cast.alice))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = await api.http.get("/admin/events?org_id=org-2", headers=bearer(cast.org_admin))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    r = await api.http.get("/admin/events", headers=bearer(cast.admin))
    assert r.status_code == 400 and "org_id" in r.json()["message"]
    theirs = await event_types(api, cast.admin, 1, org_id="org-2")
    assert [e["type"] for e in theirs] == ["conversation_created"] and theirs[0][
        "actor"
    ] == "mallory"
    assert {e["org_id"] for e in theirs} == {"org-2"}
    # org-1's trail holds the two refusals above, and nothing of org-2
    mine = await event_types(api, cast.org_admin, 2)
    assert [(e["type"], e["actor"]) for e in mine] == [
        ("access_denied", "olivia"),
        ("access_denied", "alice"),
    ]
    other_admin = make_jwt("oscar", "org-2", "org_admin")
    assert [e["type"] for e in (await events(api, other_admin))["events"]] == [
        "conversation_created"
    ]


async def test_from_to_take_and_paging_back(api, cast, redis):
    # 100 events, one a second from T0, written with explicit stream ids
    for k in range(100):
        await redis.xadd(
            keys.events(ORG), {"type": "prompt_sent", "n": str(k)}, id=f"{T0 + k * 1000}-0"
        )
    window = {"from": iso(T0 + 10_000), "to": iso(T0 + 59_000)}  # events 10..59
    seen: list[str] = []
    before = None
    while True:
        page = await events(
            api, cast.org_admin, take=15, **window, **({"before": before} if before else {})
        )
        seen += [e["n"] for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [str(k) for k in reversed(range(10, 60))]
    newest = await events(api, cast.org_admin, take=3)
    assert [e["n"] for e in newest["events"]] == ["99", "98", "97"]
    assert newest["events"][0]["at"] == iso(T0 + 99_000)
    full = await events(api, cast.org_admin)  # default take: 50 of 100, so there is more
    assert len(full["events"]) == 50 and full["next_before"] == full["events"][-1]["id"]
    assert len((await events(api, cast.org_admin, to="2025-01-01"))["events"]) == 50  # default take
    assert (await events(api, cast.org_admin, **{"from": "2025-01-02"}))["events"] == []
    for bad in (
        {"take": 0},
        {"take": 1001},
        {"from": "soon"},
        {"before": "abc"},
        {"from": "2025-01-02", "to": "2025-01-01"},
    ):
        r = await api.http.get("/admin/events", params=bad, headers=bearer(cast.org_admin))
        assert r.status_code == 400 and r.json()["code"] == "validation_error", bad


async def test_the_stream_is_capped(store, redis):
    trail = Audit(store.events, maxlen=100)
    for _ in range(1000):
        await store.events.append(ORG, {"type": "prompt_sent"}, trail.maxlen)
    # MAXLEN ~ trims whole stream nodes (100 entries by default): about the cap, never unbounded
    assert 100 <= await redis.xlen(keys.events(ORG)) <= 200
    assert len(await trail.read(ORG, take=1000)) == await redis.xlen(keys.events(ORG))


async def test_a_failing_audit_write_is_logged_not_raised(caplog):
    class BrokenEvents:
        async def append_many(self, *args: Any) -> None:
            raise ConnectionError("redis went away")

    trail = Audit(BrokenEvents())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="gateway.audit"):
        trail.record(ORG, audit.PROMPT_SENT, None, conversation_id="c-1")
        await trail.aclose()
    assert "audit event prompt_sent for org org-1 was not recorded" in caplog.text


def test_keys_created_and_revoked_by_the_cli_are_recorded(redis_url, monkeypatch, capsys):
    client = sync_redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    for var in ("GATEWAY_CONFIG", "GATEWAY_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GATEWAY_REDIS_URL", redis_url)
    assert cli.main(["keys", "create", "--org", "org-k", "--user", "kim", "--role", "user"]) == 0
    key_id = capsys.readouterr().out.split("key id: ")[1].split()[0]
    assert cli.main(["keys", "revoke", key_id]) == 0
    rows = client.xrange(keys.events("org-k"))
    client.close()
    assert [fields for _, fields in rows] == [
        {
            "type": "api_key_created",
            "key_id": key_id,
            "user_id": "kim",
            "role": "user",
            "via": "cli",
        },
        {
            "type": "api_key_revoked",
            "key_id": key_id,
            "user_id": "kim",
            "role": "user",
            "via": "cli",
        },
    ]


def test_event_fields_skip_empty_details():
    fields = audit.fields_of(audit.PROMPT_SENT, None, a=None, b=0, c="x")
    assert fields == {"type": "prompt_sent", "b": "0", "c": "x"}


async def test_events_recorded_together_are_written_in_one_round_trip(store, redis):
    class CountingEvents(type(store.events)):  # the real storage, counting its audit writes
        writes = 0

        async def append_many(self, events: Any) -> None:
            CountingEvents.writes += 1
            await super().append_many(events)

    trail = Audit(CountingEvents(store.redis), maxlen=10_000)
    for i in range(200):  # a burst: all queued before the writer runs
        trail.record(ORG, audit.PROMPT_SENT, None, message_id=f"m-{i}")
    await trail.aclose()
    assert CountingEvents.writes == 1
    rows = await redis.xrange(keys.events(ORG))
    assert [fields[b"message_id"] for _, fields in rows] == [f"m-{i}".encode() for i in range(200)]
    trail.record(ORG, audit.PROMPT_SENT, None, message_id="later")  # a new writer starts
    await trail.aclose()
    assert CountingEvents.writes == 2 and await redis.xlen(keys.events(ORG)) == 201
