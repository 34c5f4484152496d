"""GET /usage: totals, series and groups that add up to exactly what the stored messages
(and the compatible APIs' answers) say, in hour, day and month buckets, under the
conversations' role rules; and the bounds that keep any request's work small."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.storage import keys
from gateway.storage.usage import bucket_of
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.repo_fixtures import OTHER_ORG
from tests.support import bearer, make_jwt

ANTHROPIC = {"anthropic-version": "2023-06-01"}


async def get_usage(api, token: str, **params: Any):
    return await api.http.get("/usage", params=params, headers=bearer(token))


async def stored_answers(redis, org: str = ORG) -> list[dict]:
    """Every assistant message of the org, read from Redis itself."""
    found = []
    for cid in await redis.zrange(keys.org_index(org), 0, -1):
        cid = cid.decode()
        conv = await redis.hgetall(keys.conversation(cid))
        for raw in await redis.lrange(keys.messages(cid), 0, -1):
            m = json.loads(raw)
            if m["role"] == "assistant":
                m["workspace_id"] = conv[b"workspace_id"].decode()
                m["repo_id"] = conv[b"repo_id"].decode()
                found.append(m)
    return found


def sums(rows) -> tuple[int, int, int, int]:
    return (
        sum(r["input_tokens"] for r in rows),
        sum(r["output_tokens"] for r in rows),
        sum(r["cost_nusd"] for r in rows),
        sum(r.get("requests", 1) for r in rows),
    )


async def traffic(api, cast, upstream) -> list[dict]:
    """Prompts through every API style; returns what the compatible APIs answered without a
    stored conversation (their usage is counted, not stored as messages)."""
    a1 = await api.create(cast.alice, "repo-1")  # gpt: priced by the shipped table
    upstream.script(
        Reply(chunks=["one"], input_tokens=1200, output_tokens=300),
        Reply(chunks=["two"], input_tokens=800, output_tokens=700),
    )
    assert (await api.prompt(cast.alice, a1, "json")).status_code == 200
    assert (await api.prompt(cast.alice, a1, "sse", sse=True)).status_code == 200
    a2 = await api.create(cast.alice, "demo-1")
    assert (await api.prompt(cast.alice, a2, "demo")).status_code == 200
    c2 = await api.create(cast.carol, "repo-2")  # claude, ws-2
    upstream.script(Reply(chunks=["claude"], input_tokens=50, output_tokens=25))
    assert (await api.prompt(cast.carol, c2, "hi")).status_code == 200
    b1 = await api.create(cast.bob, "repo-1")
    upstream.script(Reply(chunks=["bob"], input_tokens=10, output_tokens=5))
    assert (await api.prompt(cast.bob, b1, "hi")).status_code == 200
    # the conversation service on alice's repository conversation
    r = await api.http.get(
        f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={a1}",
        headers=bearer(cast.alice),
    )
    upstream.script(Reply(chunks=["cs"], input_tokens=70, output_tokens=30))
    r = await api.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": r.json()["sessions"][0]["id"], "message": "native"},
        headers=bearer(cast.alice),
    )
    assert r.status_code == 200
    # the compatible APIs, appending to a stored conversation and without one
    upstream.script(
        Reply(chunks=["oa"], input_tokens=33, output_tokens=11),
        Reply(chunks=["an"], input_tokens=44, output_tokens=22),
        Reply(chunks=["oa-direct"], input_tokens=55, output_tokens=33),
        Reply(chunks=["an-direct"], input_tokens=66, output_tokens=44),
    )
    question = [{"role": "user", "content": "compat"}]
    r = await api.http.post(
        "/v1/chat/completions",
        json={"model": "gpt", "messages": question},
        headers={**bearer(cast.alice), "X-Conversation-Id": a1},
    )
    assert r.status_code == 200
    r = await api.http.post(
        "/v1/messages",
        json={"model": "claude", "max_tokens": 64, "messages": question},
        headers={**bearer(cast.alice), **ANTHROPIC, "X-Conversation-Id": a1},
    )
    assert r.status_code == 200
    direct = []
    r = await api.http.post(
        "/v1/chat/completions",
        json={"model": "claude", "messages": question},
        headers=bearer(cast.alice),
    )
    u = r.json()["usage"]
    direct.append(
        {
            "input_tokens": u["prompt_tokens"],
            "output_tokens": u["completion_tokens"],
            "cost_nusd": 0,
            "model": "claude",
        }
    )  # claude-test-model has no price
    r = await api.http.post(
        "/v1/messages",
        json={"model": "claude", "max_tokens": 64, "messages": question},
        headers={**bearer(cast.alice), **ANTHROPIC},
    )
    u = r.json()["usage"]
    direct.append(
        {
            "input_tokens": u["input_tokens"],
            "output_tokens": u["output_tokens"],
            "cost_nusd": 0,
            "model": "claude",
        }
    )
    return direct


async def test_the_series_sums_to_the_stored_messages_in_every_bucket(api, cast, upstream, redis):
    direct = await traffic(api, cast, upstream)
    answers = await stored_answers(redis)
    assert len(answers) == 8 and sum(a["cost_nusd"] for a in answers) > 0
    expected = sums(answers + direct)
    for bucket in ("hour", "day", "month"):
        r = await get_usage(api, cast.org_admin, bucket=bucket, group_by="model,user")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["org_ids"] == [ORG] and body["bucket"] == bucket
        totals = body["totals"]
        assert (
            totals["input_tokens"],
            totals["output_tokens"],
            totals["cost_nusd"],
            totals["requests"],
        ) == expected, bucket
        assert sums(body["series"]) == expected, bucket
        assert totals["cost"] == pytest.approx(expected[2] / 1e9)
        # every group's share is its messages' share
        for point in body["groups"]:
            mine = [
                a
                for a in answers + direct
                if (a.get("model_id") or a.get("model"), a.get("user_id", "alice"))
                == (point["group"]["model"], point["group"]["user"])
            ]
            assert sums([point])[:3] == sums(mine)[:3], point
    # the buckets are what the messages' times say: this hour, today, this month
    r = await get_usage(api, cast.org_admin, bucket="hour")
    [point] = r.json()["series"]
    hour = bucket_of("h", answers[-1]["created_at"])
    assert point["bucket"] == datetime.strptime(hour, "%Y%m%d%H").strftime("%Y-%m-%dT%H:00:00Z")
    assert point["group"] == {}


# gpt-4o-mini's list prices (gateway/models/prices.py), in nano-USD per token
GPT_IN_NUSD, GPT_OUT_NUSD = 150, 600


async def test_the_newer_compatible_routes_count_tokens_and_cost_like_a_turn(
    api, cast, upstream, redis
):
    """Embeddings (a direct call), legacy completions and the Responses API (turns, the
    latter stored as a conversation) land in the same buckets, priced at the model's prices;
    a token count is not usage."""
    upstream.script(
        Reply(input_tokens=7),  # the embeddings
        Reply(chunks=["legacy"], input_tokens=20, output_tokens=5),
        Reply(chunks=["resp"], input_tokens=30, output_tokens=9),
    )
    alice = bearer(cast.alice)
    r = await api.http.post("/v1/embeddings", json={"model": "gpt", "input": "hi"}, headers=alice)
    assert r.status_code == 200, r.text
    r = await api.http.post(
        "/v1/completions", json={"model": "gpt", "prompt": "hi", "max_tokens": 8}, headers=alice
    )
    assert r.status_code == 200, r.text
    r = await api.http.post("/v1/responses", json={"model": "gpt", "input": "hi"}, headers=alice)
    assert r.status_code == 200, r.text
    r = await api.http.post(
        "/v1/messages/count_tokens",
        json={"model": "claude", "messages": [{"role": "user", "content": "hi"}]},
        headers={**alice, **ANTHROPIC},
    )
    assert r.status_code == 200, r.text

    tokens_in, tokens_out = 7 + 20 + 30, 5 + 9
    cost = tokens_in * GPT_IN_NUSD + tokens_out * GPT_OUT_NUSD
    r = await get_usage(api, cast.org_admin, bucket="day", group_by="model,user")
    assert r.status_code == 200, r.text
    body = r.json()
    assert sums([body["totals"]]) == (tokens_in, tokens_out, cost, 3)
    [group] = body["groups"]
    assert group["group"] == {"model": "gpt", "user": "alice"}
    assert sums([group]) == (tokens_in, tokens_out, cost, 3)
    # the stored response's answer carries its own cost, as every stored answer does
    [answer] = await stored_answers(redis)
    assert answer["cost_nusd"] == 30 * GPT_IN_NUSD + 9 * GPT_OUT_NUSD


async def test_every_dimension_groups_the_same_rows(api, cast, upstream, redis):
    await traffic(api, cast, upstream)
    answers = await stored_answers(redis)
    r = await get_usage(api, cast.org_admin, group_by="repository,workspace")
    groups = {(g["group"]["repository"], g["group"]["workspace"]): g for g in r.json()["groups"]}
    per_repo = Counter()
    for a in answers:
        per_repo[(a["repo_id"], a["workspace_id"])] += a["input_tokens"]
    for where, tokens in per_repo.items():
        assert groups[where]["input_tokens"] == tokens
    assert groups[("", "")]["requests"] == 2  # the direct compatible calls: no repository
    r = await get_usage(api, cast.org_admin, group_by="org,key")
    assert {(g["group"]["org"], g["group"]["key"]) for g in r.json()["groups"]} == {(ORG, "")}
    r = await get_usage(api, cast.org_admin, group_by="model")
    costliest = r.json()["groups"][0]
    assert costliest["group"] == {"model": "gpt"} and costliest["cost_nusd"] > 0


async def test_each_role_sees_what_its_conversations_rules_say(api, cast, upstream, redis):
    direct = await traffic(api, cast, upstream)
    answers = await stored_answers(redis)

    def of(pred) -> tuple[int, int, int, int]:
        return sums([a for a in answers if pred(a)])

    r = await get_usage(api, cast.alice)
    mine = sums([a for a in answers if a["user_id"] == "alice"] + direct)
    body = r.json()
    assert (
        body["totals"]["input_tokens"],
        body["totals"]["output_tokens"],
        body["totals"]["cost_nusd"],
        body["totals"]["requests"],
    ) == mine
    r = await get_usage(api, cast.bob, group_by="user")
    assert [g["group"] for g in r.json()["groups"]] == [{"user": "bob"}]
    r = await get_usage(api, cast.ws_admin, group_by="workspace")  # manages ws-1
    assert {g["group"]["workspace"] for g in r.json()["groups"]} == {"ws-1"}
    assert r.json()["totals"]["input_tokens"] == of(lambda a: a["workspace_id"] == "ws-1")[0]
    r = await get_usage(api, cast.mallory)  # org-2 used nothing
    assert r.json()["totals"]["requests"] == 0 and r.json()["org_ids"] == [OTHER_ORG]
    r = await get_usage(api, cast.alice, org_id=OTHER_ORG)
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    r = await get_usage(api, cast.admin, group_by="org")
    assert r.json()["org_ids"] == [ORG]  # every org with usage
    assert (await api.http.get("/usage")).status_code == 401
    expired = make_jwt("alice", ORG, "user", exp=int(datetime.now(UTC).timestamp()) - 10)
    r = await get_usage(api, expired)
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


async def test_windows_are_cut_to_what_the_buckets_keep(api, cast, upstream, redis):
    await traffic(api, cast, upstream)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    r = await get_usage(api, cast.org_admin, **{"from": tomorrow})
    assert r.status_code == 200 and r.json()["series"] == [] and r.json()["totals"]["requests"] == 0
    # a hundred years, in hours: only what hour buckets retain (8 days) is read
    r = await get_usage(
        api, cast.org_admin, bucket="hour", **{"from": "1950-01-01", "to": "2050-01-01"}
    )
    assert r.status_code == 200
    since = datetime.fromisoformat(r.json()["from"].replace("Z", "+00:00"))
    assert datetime.now(UTC) - since < timedelta(days=8, hours=2)
    assert datetime.fromisoformat(r.json()["to"].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert r.json()["totals"]["requests"] == 10
    r = await get_usage(api, cast.org_admin, bucket="month", **{"from": "1926-01-01"})
    since = datetime.fromisoformat(r.json()["from"].replace("Z", "+00:00"))
    assert datetime.now(UTC) - since < timedelta(days=762 + 32)


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": ",".join(["key"] * 2_000)},  # 8 KB of it
        {"group_by": "model,model"},
        {"group_by": "colour"},
        {"bucket": "week"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "last tuesday"},
        {"to": "2026-13-45"},
    ],
)
async def test_bad_queries_are_400(api, cast, params):
    r = await get_usage(api, cast.org_admin, **params)
    assert r.status_code == 400 and r.json()["code"] == "validation_error", r.text


async def test_a_10000_entry_group_by_is_refused_at_the_edge(api, cast, redis):
    """40 KB of query string never reaches the route: the HTTP edge's head limit (431)."""
    before = await lasting_keys(redis)
    r = await get_usage(api, cast.org_admin, group_by=",".join(["key"] * 10_000))
    assert r.status_code == 431 and r.json()["code"] == "headers_too_large", r.text
    assert await lasting_keys(redis) == before  # nothing written for it


async def lasting_keys(redis) -> set[bytes]:
    """Every key but the workers' heartbeats (which come and go with other tests' gateways)."""
    beats = keys.worker("").encode()
    return {k for k in await redis.keys("*") if not k.startswith(beats)}


async def test_an_answer_holds_a_bounded_number_of_points(api, cast, redis):
    """20,001 users on one day, grouped by user: refused, however few the rows."""
    day = bucket_of("d", int(datetime.now(UTC).timestamp() * 1000))
    fields = {json.dumps([f"u{i}", "", "", "", "gpt"]): "1,1,1,1" for i in range(20_001)}
    await redis.hset(keys.usage_bucket(ORG, "d", day), mapping=fields)
    r = await get_usage(api, cast.org_admin, group_by="user")
    assert r.status_code == 400 and "more than 20000 points" in r.json()["message"]
    r = await get_usage(api, cast.org_admin, group_by="model")  # one group: fine
    assert r.status_code == 200 and r.json()["totals"]["requests"] == 20_001


async def test_a_request_that_would_sum_too_many_rows_is_refused(api, cast, redis):
    """200,001 combinations in one day bucket (forged, as no gateway would make them)."""
    day = bucket_of("d", int(datetime.now(UTC).timestamp() * 1000))
    key = keys.usage_bucket(ORG, "d", day)
    for start in range(0, 200_001, 20_000):
        fields = {
            json.dumps(["ws", "repo", f"u{i}", "", "gpt"]): "1,1,1,1"
            for i in range(start, min(start + 20_000, 200_001))
        }
        await redis.hset(key, mapping=fields)
    r = await get_usage(api, cast.org_admin, bucket="day")
    assert r.status_code == 400 and "200001 usage rows" in r.json()["message"]
    r = await get_usage(api, cast.org_admin, bucket="hour")  # another grain: nothing forged
    assert r.status_code == 200
