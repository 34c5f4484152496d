"""The repository-style API (seeds 000, 001, 002, 004) through real HTTP and a real Redis:
create from a repository, prompt (JSON and SSE), messages, list, soft delete, and the same
conversation seen through /api/conversation."""

from __future__ import annotations

import json
import re

import pytest

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.repo_fixtures import REPO_KEY, conv_hash, indexes_holding, message_count
from tests.support import bearer, parse_sse

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def all_conversation_keys(redis) -> list[bytes]:
    return sorted(await redis.keys(keys.CONVERSATION_KEYS))


# -- POST /conversation ----------------------------------------------------------------------


async def test_create_inherits_workspace_and_org_from_the_repository(api, cast, redis):
    cid = await api.create(cast.alice, "repo-1")
    assert UUID.match(cid)
    h = await conv_hash(redis, cid)
    assert (h["org_id"], h["workspace_id"], h["repo_id"], h["created_by"]) == (
        ORG,
        "ws-1",
        "repo-1",
        "alice",
    )
    assert json.loads(h["creator"]) == {
        "id": "alice",
        "name": "Alice",
        "last_name": "Doe",
        "email": "alice@example.com",
    }
    # a default chat session on the repository's model, routable by its id
    sid = h["default_session_id"]
    session = json.loads(await redis.hget(keys.sessions(cid), sid))
    assert session["model_id"] == "gpt" and session["conversation_id"] == cid
    assert (await redis.get(keys.session_lookup(sid))).decode() == cid
    assert await indexes_holding(redis, cid) == sorted(
        [
            keys.org_index(ORG),
            keys.org_index(ORG, "u", "alice"),
            keys.org_index(ORG, "ws", "ws-1"),
            keys.org_index(ORG, "ws_u", "ws-1", "alice"),
            keys.org_index(ORG, "repo", "repo-1"),
            keys.org_index(ORG, "repo_u", "repo-1", "alice"),
            keys.org_index(ORG, "ws_repo", "ws-1", "repo-1"),
            keys.org_index(ORG, "ws_repo_u", "ws-1", "repo-1", "alice"),
        ]
    )
    # the audit event rode along with the writes
    [(_, event)] = await redis.xrange(keys.events(ORG))
    assert event[b"type"] == b"conversation_created" and event[b"conversation_id"] == cid.encode()


async def test_unknown_repository_is_404_and_stores_nothing(api, cast, redis):
    for repo in ("no-such-repo", "demo-9"):  # demo-9 exists, in another org: never revealed
        r = await api.http.post("/conversation", json={"repoId": repo}, headers=bearer(cast.alice))
        assert r.status_code == 404, repo
        assert r.json() == {
            "success": False,
            "code": "repository_not_found",
            "message": f"repository {repo!r} not found",
        }
    assert await all_conversation_keys(redis) == []


async def test_repository_without_workspace_is_400_orphan(api, cast, redis):
    r = await api.http.post(
        "/conversation", json={"repoId": "repo-orphan"}, headers=bearer(cast.org_admin)
    )
    assert r.status_code == 400 and r.json()["code"] == "repository_without_workspace"
    assert "orphaned" in r.json()["message"]
    assert await all_conversation_keys(redis) == []


async def test_no_access_to_the_repositorys_workspace_is_403(api, cast, redis):
    r = await api.http.post("/conversation", json={"repoId": "repo-2"}, headers=bearer(cast.alice))
    assert r.status_code == 403 and r.json()["success"] is False and r.json()["code"] == "forbidden"
    assert await all_conversation_keys(redis) == []
    assert await redis.keys(keys.org_index_pattern(ORG)) == []


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{}", "validation_error"),
        (b'{"repoId": ""}', "validation_error"),
        (b'{"repoId": 5}', "validation_error"),
        (b"[]", "invalid_json"),
        (b"nope", "invalid_json"),
    ],
)
async def test_create_with_a_bad_body_is_400(api, cast, redis, body, code):
    r = await api.http.post(
        "/conversation",
        content=body,
        headers={**bearer(cast.alice), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == code
    assert await all_conversation_keys(redis) == []


async def test_no_token_is_401(api, redis):
    r = await api.http.post("/conversation", json={"repoId": "repo-1"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = await api.http.get("/conversation")
    assert r.status_code == 401
    assert await all_conversation_keys(redis) == []


# -- POST /conversation/{id}/prompt ------------------------------------------------------------


async def test_prompt_json_answer(api, cast, upstream, redis):
    cid = await api.create(cast.alice, "repo-1")
    upstream.script(
        Reply(chunks=["Keep ", "keys ", "in a vault."], input_tokens=12, output_tokens=5)
    )
    r = await api.prompt(cast.alice, cid, "What is the best practice for securing API keys?")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    mid = body.pop("messageId")
    assert body == {
        "success": True,
        "message": "Prompt sent successfully",
        "conversationId": cid,
        "response": "Keep keys in a vault.",
        "model": "gpt",
        "tokensIn": 12,
        "tokensOut": 5,
        "cost": "0.0000048",  # gpt-4o-mini at the shipped list prices, as an exact string
        "finishReason": "stop",
    }
    # the repository's model answered, through the upstream named for it
    assert upstream.requests[0].body["model"] == "gpt-4o-mini"
    user, assistant = [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]
    assert (user["role"], user["content"]) == (
        "user",
        "What is the best practice for securing API keys?",
    )
    assert (assistant["id"], assistant["content"], assistant["status"]) == (
        mid,
        "Keep keys in a vault.",
        "complete",
    )
    assert (assistant["input_tokens"], assistant["output_tokens"]) == (12, 5)
    h = await conv_hash(redis, cid)
    assert (h["tokens_in"], h["tokens_out"]) == ("12", "5")


@pytest.mark.parametrize("how", ["accept", "body"])
async def test_prompt_sse_follows_the_contract(api, cast, upstream, redis, how):
    cid = await api.create(cast.alice, "repo-1")
    upstream.script(Reply(chunks=["Use ", "a ", "vault."], input_tokens=9, output_tokens=3))
    if how == "accept":
        r = await api.prompt(cast.alice, cid, "secrets?", sse=True)
    else:
        r = await api.prompt(cast.alice, cid, "secrets?", stream=True)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
    stream = parse_sse(r.content)
    assert stream.names == ["start", "content", "content", "content", "end"]
    start = stream.events[0].json
    h = await conv_hash(redis, cid)
    assert (start["conversation_id"], start["chat_session_id"], start["model"]) == (
        cid,
        h["default_session_id"],
        "gpt",
    )
    mid = start["message_id"]
    assert [e.id for e in stream.of("content")] == [f"{mid}:1", f"{mid}:2", f"{mid}:3"]
    assert stream.text == "Use a vault."
    end = stream.events[-1].json
    assert end["finish_reason"] == "stop" and end["usage"] == {
        "input_tokens": 9,
        "output_tokens": 3,
    }
    assert await message_count(redis, cid) == 2


async def test_json_and_sse_prompts_sum_into_the_listed_totals(api, cast, upstream, redis):
    cid = await api.create(cast.alice, "repo-1")
    upstream.script(
        Reply(chunks=["one"], input_tokens=10, output_tokens=3),
        Reply(chunks=["two"], input_tokens=25, output_tokens=4),
        Reply(chunks=["three"], input_tokens=40, output_tokens=6),
    )
    assert (await api.prompt(cast.alice, cid, "first")).status_code == 200
    r = await api.prompt(cast.alice, cid, "second", sse=True)
    assert parse_sse(r.content).events[-1].json["conversation_usage"] == {
        "tokens_in": 35,
        "tokens_out": 7,
        "cost": 0.00000945,  # gpt-4o-mini at the shipped list prices
    }
    assert (await api.prompt(cast.alice, cid, "third", stream=False)).json()["tokensIn"] == 40
    [listed] = (await api.list(cast.alice))["conversations"]
    assert (listed["tokensIn"], listed["tokensOut"]) == ("75", "13")  # strings, per the seeds
    h = await conv_hash(redis, cid)
    assert (h["tokens_in"], h["tokens_out"]) == ("75", "13")


async def test_multi_turn_sends_the_whole_history(api, cast, upstream):
    cid = await api.create(cast.alice, "repo-1")
    upstream.script(Reply(chunks=["Paris."]), Reply(chunks=["About 2.1 million."]))
    await api.prompt(cast.alice, cid, "Capital of France?")
    await api.prompt(cast.alice, cid, "Population?", sse=True)
    assert upstream.requests[1].body["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"},
    ]


async def test_anthropic_repository_answers_through_its_model(api, cast, upstream):
    cid = await api.create(cast.carol, "repo-2")
    upstream.script(Reply(chunks=["hi"], input_tokens=4, output_tokens=1))
    body = (await api.prompt(cast.carol, cid, "hello")).json()
    assert (body["model"], body["response"]) == ("claude", "hi")
    assert upstream.requests[0].path == "/v1/messages"


async def test_repository_without_model_uses_the_first_served_model(api, cast, upstream, redis):
    cid = await api.create(cast.alice, "repo-default-model")
    body = (await api.prompt(cast.alice, cid, "hello")).json()
    assert body["model"] == "gpt"  # the first [[models]] entry


async def test_repository_with_its_own_key_sends_that_key(api, cast, upstream):
    cid = await api.create(cast.alice, "repo-keyed")
    await api.prompt(cast.alice, cid, "hello")
    other = await api.create(cast.alice, "repo-1")
    await api.prompt(cast.alice, other, "hello")
    keyed, default = upstream.requests
    assert keyed.headers["authorization"] == f"Bearer {REPO_KEY}"
    assert default.headers["authorization"] == "Bearer sk-test-openai"


async def test_provider_error_in_json_mode_is_502_and_the_message_is_stored(
    api, cast, upstream, redis
):
    cid = await api.create(cast.alice, "repo-1")
    upstream.script(Reply(status=500))
    r = await api.prompt(cast.alice, cid, "hello")
    assert r.status_code == 502
    assert r.json()["success"] is False and r.json()["code"] == "provider_error"
    user, assistant = [json.loads(m) for m in await redis.lrange(keys.messages(cid), 0, -1)]
    assert user["status"] == "complete" and assistant["status"] == "error"


@pytest.mark.parametrize(
    "body", [{}, {"prompt": ""}, {"prompt": 5}, {"prompt": "x", "stream": "yes"}]
)
async def test_prompt_with_a_bad_body_is_400_and_stores_nothing(api, cast, upstream, redis, body):
    cid = await api.create(cast.alice)
    r = await api.http.post(f"/conversation/{cid}/prompt", json=body, headers=bearer(cast.alice))
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
    assert await message_count(redis, cid) == 0
    assert upstream.requests == []


async def test_prompt_to_an_unknown_conversation_is_404(api, cast, upstream, redis):
    r = await api.prompt(cast.alice, "00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404 and r.json()["code"] == "conversation_not_found"
    assert await all_conversation_keys(redis) == []
    assert upstream.requests == []


async def test_a_user_who_lost_the_workspace_may_no_longer_prompt(api, cast, upstream, redis):
    from tests.support import make_jwt

    cid = await api.create(cast.alice, "repo-1")
    moved = make_jwt("alice", ORG, "user", workspaces=["ws-2"])
    assert (await api.messages(moved, cid)).status_code == 200  # still their own history
    r = await api.prompt(moved, cid, "still here?")
    assert r.status_code == 403
    assert await message_count(redis, cid) == 0 and upstream.requests == []


# -- GET /conversation/{id}/messages -----------------------------------------------------------


async def test_messages_oldest_first_with_take_skip_and_total(api, cast):
    cid = await api.create(cast.alice)  # demo model
    for i in range(3):
        assert (await api.prompt(cast.alice, cid, f"question {i}")).status_code == 200
    page = (await api.messages(cast.alice, cid)).json()
    assert (
        page["success"] is True and page["total"] == 6 and (page["take"], page["skip"]) == (50, 0)
    )
    assert [m["role"] for m in page["messages"]] == ["user", "assistant"] * 3
    first, answer = page["messages"][:2]
    assert set(first) >= {
        "id",
        "role",
        "content",
        "createdAt",
        "tokensIn",
        "tokensOut",
        "model",
        "status",
    }
    assert (first["content"], first["model"], first["status"]) == ("question 0", "demo", "complete")
    assert ISO.match(first["createdAt"])
    assert answer["tokensOut"] > 0 and answer["tokensIn"] > 0
    page = (await api.messages(cast.alice, cid, take=2, skip=2)).json()
    assert page["messages"][0]["content"] == "question 1"
    assert page["total"] == 6 and len(page["messages"]) == 2
    for bad in ({"take": 0}, {"take": 101}, {"skip": -1}, {"take": "x"}):
        r = await api.messages(cast.alice, cid, **bad)
        assert r.status_code == 400 and r.json()["code"] == "validation_error", bad


# -- GET /conversation -------------------------------------------------------------------------


async def test_list_fields_newest_first(api, cast, upstream):
    first = await api.create(cast.alice, "repo-1")
    second = await api.create(cast.alice, "demo-1")
    upstream.script(Reply(chunks=["x"], input_tokens=1523, output_tokens=2847))
    await api.prompt(cast.alice, first, "hello")
    body = await api.list(cast.alice)
    assert body["success"] is True and body["total"] == 2
    assert [c["id"] for c in body["conversations"]] == [second, first]
    listed = body["conversations"][1]
    assert ISO.match(listed.pop("createdAt")) and ISO.match(listed.pop("lastUpdatedAt"))
    assert listed == {
        "id": first,
        "orgId": ORG,
        "createdBy": "alice",
        "workspaceId": "ws-1",
        "repoId": "repo-1",
        "tokensIn": "1523",
        "tokensOut": "2847",
        "cost": "0.00193665",  # 1523 x $0.15/M + 2847 x $0.60/M (gpt-4o-mini's list prices)
        "creator": {
            "id": "alice",
            "name": "Alice",
            "lastName": "Doe",
            "email": "alice@example.com",
        },
    }


async def test_list_take_and_dates_are_validated(api, cast):
    for params in (
        {"take": 101},
        {"take": 0},
        {"skip": -1},
        {"from": "yesterday"},
        {"to": "2024-13-01"},
        {"from": "2024-02-01", "to": "2024-01-01"},
    ):
        r = await api.http.get("/conversation", params=params, headers=bearer(cast.alice))
        assert r.status_code == 400, params
        assert r.json()["success"] is False and r.json()["code"] == "validation_error"
    r = await api.http.get("/conversation", params={"org_id": "org-2"}, headers=bearer(cast.alice))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    r = await api.http.get("/conversation", headers=bearer(cast.admin))
    assert r.status_code == 400 and "org_id" in r.json()["message"]
    assert (await api.list(cast.admin, org_id=ORG))["total"] == 0


# -- one conversation, two API styles ------------------------------------------------------------


async def test_a_repository_conversation_is_a_conversation_service_conversation(
    api, cast, upstream
):
    cid = await api.create(cast.alice, "repo-1")
    upstream.script(Reply(chunks=["A"]), Reply(chunks=["B"]))
    await api.prompt(cast.alice, cid, "one")
    r = await api.http.get(
        f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={cid}",
        headers=bearer(cast.alice),
    )
    assert r.status_code == 200
    conv = r.json()
    assert conv["repo_id"] == "repo-1" and conv["workspace_id"] == "ws-1"
    [session] = conv["sessions"]
    assert session["model_id"] == "gpt"
    # prompting through the other style continues the same history
    r = await api.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": session["id"], "message": "two"},
        headers=bearer(cast.alice),
    )
    assert parse_sse(r.content).text == "B"
    assert upstream.requests[1].body["messages"][:2] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "A"},
    ]
    page = (await api.messages(cast.alice, cid)).json()
    assert [m["content"] for m in page["messages"]] == ["one", "A", "two", "B"]
    listed = (
        await api.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(cast.alice))
    ).json()
    assert [c["id"] for c in listed["conversations"]] == [cid]


async def test_a_conversation_service_conversation_can_be_prompted_here(api, cast, upstream, redis):
    async def created() -> str:
        r = await api.http.post(
            f"/api/conversation/create?org_id={ORG}",
            json={"title": "t"},
            headers=bearer(cast.alice),
        )
        return r.json()["id"]

    # no session yet: one is opened on the first served model, kept as the default, reused
    bare = await created()
    assert (await api.prompt(cast.alice, bare, "one")).json()["model"] == "gpt"
    assert (await api.prompt(cast.alice, bare, "two")).json()["model"] == "gpt"
    [sid] = [k.decode() for k in await redis.hkeys(keys.sessions(bare))]
    assert (await conv_hash(redis, bare))["default_session_id"] == sid
    assert await message_count(redis, bare) == 4
    # with a session made there, that session answers
    with_session = await created()
    r = await api.http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": with_session, "model_id": "claude"},
        headers=bearer(cast.alice),
    )
    assert r.status_code == 201
    assert (await api.prompt(cast.alice, with_session, "three")).json()["model"] == "claude"
    assert len(await redis.hkeys(keys.sessions(with_session))) == 1


# -- DELETE /conversation/{id} -----------------------------------------------------------------


async def test_soft_delete_keeps_the_data_and_hides_it_everywhere(api, cast, upstream, redis):
    cid = await api.create(cast.alice, "repo-1")
    await api.prompt(cast.alice, cid, "keep me")
    sid = (await conv_hash(redis, cid))["default_session_id"]
    r = await api.delete(cast.alice, cid)
    assert r.status_code == 200
    assert r.json()["success"] is True and r.json()["conversationId"] == cid
    assert ISO.match(r.json()["deletedAt"])

    # Redis: still there, marked, and in no index
    h = await conv_hash(redis, cid)
    assert h["deleted_at"] and h["deleted_by"] == "alice"
    assert await message_count(redis, cid) == 2
    assert await indexes_holding(redis, cid) == []
    events = [e[b"type"] for _, e in await redis.xrange(keys.events(ORG))]
    assert events[0] == b"conversation_created" and events[-1] == b"conversation_deleted"

    # repository style: 404 to prompts, reads and a second delete; absent from lists
    n = len(upstream.requests)
    assert (await api.prompt(cast.alice, cid)).status_code == 404
    assert (await api.messages(cast.alice, cid)).status_code == 404
    assert (await api.delete(cast.alice, cid)).status_code == 404
    assert (await api.list(cast.alice)) == {"success": True, "conversations": [], "total": 0}
    assert (await api.list(cast.org_admin, repoId="repo-1"))["total"] == 0
    # Conversation Service style: the same
    h_alice = bearer(cast.alice)
    for path in (
        f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={cid}",
        f"/api/conversation/messages?org_id={ORG}&conversation_id={cid}",
    ):
        assert (await api.http.get(path, headers=h_alice)).status_code == 404
    r = await api.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": sid, "message": "x"},
        headers=h_alice,
    )
    assert r.status_code == 404
    r = await api.http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": cid, "model_id": "gpt"},
        headers=h_alice,
    )
    assert r.status_code == 404
    listed = (await api.http.get(f"/api/conversation/list?org_id={ORG}", headers=h_alice)).json()
    assert listed["total"] == 0
    assert len(upstream.requests) == n and await message_count(redis, cid) == 2


async def test_delete_of_an_unknown_conversation_is_404(api, cast, redis):
    r = await api.delete(cast.org_admin, "00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404 and r.json()["code"] == "conversation_not_found"
    assert await all_conversation_keys(redis) == []


async def test_unknown_method_on_a_route_is_405(api, cast):
    r = await api.http.put("/conversation", headers=bearer(cast.alice))
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
