"""Gateway API keys over HTTP (/admin/api-keys) and the CLI, through one code path: minted
(shown once, stored hashed), listed, read, revoked (at once, on every worker); nobody mints
above their own role, org admins only in their org; expiry, allowed models and the key's own
budgets, shared across workers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway.access.auth import digest
from gateway.storage import keys
from tests.access.test_auth import first_refusal
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt
from tests.test_cli import gateway as run_cli

ORG_ADMIN = make_jwt("olivia", ORG, "org_admin")
OTHER_ORG_ADMIN = make_jwt("oscar", "org-2", "org_admin")
WS_ADMIN = make_jwt("walter", ORG, "workspace_admin", workspaces=["ws-1"], managed=["ws-1"])


async def mint(client, token: str, **body):
    return await client.http.post(
        "/admin/api-keys", json={"user": "kim", "role": "user", **body}, headers=bearer(token)
    )


async def records(redis) -> dict[str, dict]:
    return {k.decode(): json.loads(v) for k, v in (await redis.hgetall(keys.API_KEYS)).items()}


async def org_index(redis, org: str = ORG) -> set[str]:
    return {m.decode() for m in await redis.smembers(keys.org_api_keys(org))}


async def events(redis, org: str = ORG) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in await redis.xrange(keys.events(org))
    ]


async def test_a_minted_key_is_shown_once_works_and_is_kept_hashed(client, redis):
    r = await mint(client, ORG_ADMIN, workspaces=["ws-1"], name="Kim", email="kim@example.com")
    assert r.status_code == 201, r.text
    body = r.json()
    key, key_id = body["key"], body["id"]
    assert key.startswith(f"cgw_{key_id}_") and body["prefix"] == f"cgw_{key_id}_"
    assert (body["org_id"], body["user"], body["role"], body["workspaces"]) == (
        ORG,
        "kim",
        "user",
        ["ws-1"],
    )
    conv = await client.create_conversation(key)
    assert conv["created_by"] == "kim" and conv["workspace_id"] == "ws-1"

    stored = (await records(redis))[key_id]
    assert stored["digest"] == digest(key) and key not in json.dumps(stored)
    assert await redis.exists(keys.api_key(digest(key))) == 1
    assert await org_index(redis) == {key_id}
    r = await client.http.get("/admin/api-keys", headers=bearer(ORG_ADMIN))
    [listed] = r.json()["api_keys"]
    assert listed["id"] == key_id and "key" not in listed and "digest" not in listed
    assert listed["created_by"] == "olivia"
    r = await client.http.get(f"/admin/api-keys/{key_id}", headers=bearer(ORG_ADMIN))
    assert r.json()["api_key"] == listed
    await asyncio.sleep(0.1)  # the audit event is written in the background
    [event] = [e for e in await events(redis) if e["type"] == "api_key_created"]
    assert (event["key_id"], event["via"], event["actor"]) == (key_id, "api", "olivia")


async def test_nobody_mints_above_their_own_role(client, admin, alice, redis):
    assert (await mint(client, ORG_ADMIN, role="org_admin")).status_code == 201  # equal is fine
    assert (await mint(client, ORG_ADMIN, role="workspace_admin")).status_code == 201
    for who, code in ((WS_ADMIN, "forbidden_role"), (alice, "forbidden_role")):
        r = await mint(client, who, role="user")
        assert r.status_code == 403 and r.json()["code"] == code
    r = await mint(client, ORG_ADMIN, role="admin")
    assert r.status_code == 400  # no key is ever the platform admin
    r = await mint(client, ORG_ADMIN, org_id="org-2")
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    r = await mint(client, admin)
    assert r.status_code == 400 and "org_id" in r.json()["message"]
    assert (await mint(client, admin, org_id="org-2", role="org_admin")).status_code == 201
    assert len(await org_index(redis)) == 2 and len(await org_index(redis, "org-2")) == 1
    assert len(await records(redis)) == 3


async def test_another_orgs_keys_are_not_there(client, admin, redis):
    key_id = (await mint(client, ORG_ADMIN)).json()["id"]
    theirs = (await mint(client, OTHER_ORG_ADMIN)).json()["id"]
    for verb in ("GET", "DELETE"):
        r = await client.http.request(
            verb, f"/admin/api-keys/{key_id}", headers=bearer(OTHER_ORG_ADMIN)
        )
        assert r.status_code == 404 and r.json()["code"] == "api_key_not_found", verb
    r = await client.http.get("/admin/api-keys", headers=bearer(OTHER_ORG_ADMIN))
    assert [k["id"] for k in r.json()["api_keys"]] == [theirs]
    r = await client.http.get("/admin/api-keys?org_id=org-1", headers=bearer(OTHER_ORG_ADMIN))
    assert r.status_code == 403
    r = await client.http.get("/admin/api-keys?org_id=org-2", headers=bearer(admin))
    assert [k["id"] for k in r.json()["api_keys"]] == [theirs]
    r = await client.http.get("/admin/api-keys", headers=bearer(admin))
    assert r.status_code == 400 and "org_id" in r.json()["message"]  # one org at a time
    for bad in ("nothex", "0" * 13, "../keys"):
        r = await client.http.get(f"/admin/api-keys/{bad}", headers=bearer(ORG_ADMIN))
        assert r.status_code == 404
    assert set(await records(redis)) == {key_id, theirs}


async def test_a_revoked_key_stops_at_once_on_every_worker(client, gateway_factory, redis):
    async with gateway_factory() as other:
        r = await mint(client, ORG_ADMIN, workspaces=["ws-1"])
        key, key_id = r.json()["key"], r.json()["id"]
        r = await other.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
        assert r.status_code == 200  # the other worker now keeps it in memory
        r = await client.http.delete(f"/admin/api-keys/{key_id}", headers=bearer(ORG_ADMIN))
        assert r.json() == {"success": True, "id": key_id, "revoked": True}
        r, after = await first_refusal(other, key)
        assert r.status_code == 401 and after < 1.0
        assert await records(redis) == {} and await org_index(redis) == set()
        assert await redis.exists(keys.api_key(digest(key))) == 0
        r = await client.http.delete(f"/admin/api-keys/{key_id}", headers=bearer(ORG_ADMIN))
        assert r.status_code == 404


async def test_an_expired_key_is_refused_cached_or_not(client, redis):
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    r = await mint(client, ORG_ADMIN, expires_at=soon)
    key = r.json()["key"]
    assert r.json()["expires_at"].startswith(soon[:19])
    r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
    assert r.status_code == 200  # and now cached
    await asyncio.sleep(1.6)
    r = await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(key))
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


async def test_a_key_limited_to_some_models_uses_only_those(client, upstream, redis):
    key = (await mint(client, ORG_ADMIN, workspaces=["ws-1"], models=["demo"])).json()["key"]
    conv = await client.create_conversation(key)
    r = await client.http.post(
        f"/api/conversation/create_session?org_id={ORG}",
        json={"conversation_id": conv["id"], "model_id": "gpt"},
        headers=bearer(key),
    )
    assert r.status_code == 403 and r.json()["code"] == "model_not_allowed"
    session = await client.create_session(key, conv["id"], "demo")
    assert (await client.chat(key, session["id"], "hi")).events[-1].json["finish_reason"] == "stop"
    r = await client.http.get("/v1/models", headers=bearer(key))
    assert [m["id"] for m in r.json()["data"]] == ["demo"]
    r = await client.http.post(
        "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers=bearer(key),
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert upstream.requests == []
    r = await mint(client, ORG_ADMIN, models=["no-such-model"])
    assert r.status_code == 400 and "models" in r.json()["message"]


async def test_a_keys_own_budgets_hold_across_workers(client, gateway_factory, upstream, redis):
    r = await mint(client, ORG_ADMIN, workspaces=["ws-1"], budgets={"requests_per_minute": 2})
    key, key_id = r.json()["key"], r.json()["id"]
    assert r.json()["budgets"] == {"requests_per_minute": 2}
    async with gateway_factory() as other:
        conv = await client.create_conversation(key)
        session = await client.create_session(key, conv["id"], "demo")
        assert (await client.chat(key, session["id"], "one")).names[-1] == "end"
        assert (await other.chat(key, session["id"], "two")).names[-1] == "end"
        r, raw = await client.stream_chat(key, session["id"], "three")
        assert r.status_code == 429 and json.loads(raw)["code"] == "rate_limited"
        assert "this API key's limit of 2 prompts per minute" in json.loads(raw)["message"]
        assert int(r.headers["Retry-After"]) >= 1
    windows = [k.decode() async for k in redis.scan_iter(match=keys.rate_window_pattern(ORG))]
    assert any(w.endswith(f":k:{key_id}") for w in windows), windows
    assert await redis.llen(keys.messages(conv["id"])) == 4  # the refused prompt stored nothing


async def test_a_keys_token_budget_stops_the_next_prompt(client, upstream, redis):
    key = (
        await mint(client, ORG_ADMIN, workspaces=["ws-1"], budgets={"tokens_per_day": 50})
    ).json()["key"]
    conv = await client.create_conversation(key)
    session = await client.create_session(key, conv["id"], "gpt")
    upstream.script(Reply(chunks=["big"], input_tokens=40, output_tokens=20))
    assert (await client.chat(key, session["id"], "crosses it")).names[-1] == "end"
    r, raw = await client.stream_chat(key, session["id"], "refused")
    assert r.status_code == 429 and json.loads(raw)["code"] == "token_budget_exceeded"
    assert len(upstream.requests) == 1


NEWER_ROUTES = [  # the compatible routes beyond chat: each finds its model through the registry
    ("/v1/embeddings", {"model": "gpt", "input": "hi"}),
    ("/v1/completions", {"model": "gpt", "prompt": "hi", "max_tokens": 4}),
    ("/v1/responses", {"model": "gpt", "input": "hi"}),
    (
        "/v1/messages/count_tokens",
        {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
    ),
]


async def test_a_key_limited_to_some_models_is_refused_them_on_every_compatible_route(
    client, upstream, redis
):
    key = (await mint(client, ORG_ADMIN, models=["demo"])).json()["key"]
    for path, body in NEWER_ROUTES:
        r = await client.http.post(path, json=body, headers=bearer(key))
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["message"] == "this API key may not use model 'gpt'", path
    assert upstream.requests == []
    assert await redis.keys(keys.CONVERSATION_KEYS) == []  # no stored response was opened
    assert await redis.hgetall(keys.org_usage(ORG)) == {}


async def test_a_keys_token_budget_counts_embeddings_and_stops_the_next(client, upstream, redis):
    r = await mint(client, ORG_ADMIN, budgets={"tokens_per_day": 50})
    key, key_id = r.json()["key"], r.json()["id"]
    upstream.script(Reply(input_tokens=60))
    r = await client.http.post(
        "/v1/embeddings", json={"model": "gpt", "input": "crosses it"}, headers=bearer(key)
    )
    assert r.status_code == 200, r.text
    r = await client.http.post(
        "/v1/embeddings", json={"model": "gpt", "input": "refused"}, headers=bearer(key)
    )
    assert r.status_code == 429 and r.json()["error"]["code"] == "token_budget_exceeded"
    assert len(upstream.requests) == 1
    usage = await redis.hgetall(keys.org_usage(ORG))
    assert usage[f"tokens_in:key:{key_id}".encode()] == b"60"


@pytest.mark.parametrize(
    "body",
    [
        {"surprise": True},
        {"role": "root"},
        {"user": ""},
        {"user": "u" * 201},
        {"workspaces": [f"w{i}" for i in range(101)]},
        {"workspaces": ["ws-1", "ws-1"]},
        {"models": [f"m{i}" for i in range(10_000)]},
        {"models": []},
        {"name": "n" * 201},
        {"expires_at": "yesterday"},
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"expires_at": "2126-01-01T00:00:00Z"},
        {"budgets": {"requests_per_minute": 0}},
        {"budgets": {"requests_per_minute": 10**16}},
        {"budgets": {"requests_per_hour": 5}},
        {"budgets": {"tokens_per_day": "5"}},
    ],
)
async def test_bad_keys_are_400_and_store_nothing(client, redis, body):
    r = await mint(client, ORG_ADMIN, **body)
    assert r.status_code == 400 and r.json()["success"] is False, r.text
    assert await records(redis) == {} and await org_index(redis) == set()


async def test_an_org_holds_at_most_a_thousand_keys(client, redis):
    async def one(i: int) -> int:
        return (await mint(client, ORG_ADMIN, user=f"u{i}")).status_code

    for start in range(0, 1000, 50):
        assert set(await asyncio.gather(*(one(i) for i in range(start, start + 50)))) == {201}
    r = await mint(client, ORG_ADMIN, user="one-more")
    assert r.status_code == 409 and r.json()["code"] == "too_many_keys"
    assert len(await org_index(redis)) == 1000 and len(await records(redis)) == 1000
    assert (await mint(client, OTHER_ORG_ADMIN)).status_code == 201  # another org's own bound


async def test_the_cli_and_the_api_are_one_code_path(client, redis, redis_url, redis_env):
    made = run_cli(
        "keys",
        "create",
        "--org",
        ORG,
        "--user",
        "cli-user",
        "--role",
        "user",
        "--workspace",
        "ws-1",
        GATEWAY_REDIS_URL=redis_url,
        **redis_env,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.split("only its hash is kept): ")[1].strip()
    key_id = made.stdout.split("key id: ")[1].split()[0]
    r = await client.http.get(f"/admin/api-keys/{key_id}", headers=bearer(ORG_ADMIN))
    assert r.json()["api_key"]["created_by"] == "cli" and r.json()["api_key"]["user"] == "cli-user"
    assert (await client.create_conversation(key))["created_by"] == "cli-user"
    over_http = (await mint(client, ORG_ADMIN)).json()
    listed = run_cli("keys", "list", GATEWAY_REDIS_URL=redis_url, **redis_env)
    assert {json.loads(line)["key_id"] for line in listed.stdout.splitlines()} == {
        key_id,
        over_http["id"],
    }
    started = time.monotonic()
    revoked = run_cli("keys", "revoke", over_http["id"], GATEWAY_REDIS_URL=redis_url, **redis_env)
    assert revoked.returncode == 0, revoked.stderr
    r, _ = await first_refusal(client, over_http["key"])
    assert r.status_code == 401 and time.monotonic() - started < 30
    types = [(e["type"], e.get("via")) for e in await events(redis)]
    assert ("api_key_created", "cli") in types and ("api_key_revoked", "cli") in types
    assert await org_index(redis) == {key_id}
