"""Provider connections through /admin/models: the config file's entries listed but owned by
the file, API entries every org may use or one org's own, stored in Redis, reaching every
worker within a second, each turn finishing on the entry it started with; the connection
test; and what an attacker can and cannot make of it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.storage import keys
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt, parse_sse

ORG_ADMIN = make_jwt("olivia", ORG, "org_admin")
OTHER_ORG_ADMIN = make_jwt("oscar", "org-2", "org_admin")
WS_ADMIN = make_jwt("walter", ORG, "workspace_admin", workspaces=["ws-1"], managed=["ws-1"])
CONFIG_IDS = ["gpt", "claude", "small", "flaky", "demo"]


def openai_entry(upstream, **extra) -> dict:
    return {
        "provider": "openai",
        "model": "extra-upstream-model",
        "base_url": upstream.openai_base_url,
        "max_retries": 0,
        **extra,
    }


async def put(client, token: str, mid: str, body: dict):
    return await client.http.put(f"/admin/models/{mid}", json=body, headers=bearer(token))


async def shared(redis) -> dict[str, dict]:
    return {k.decode(): json.loads(v) for k, v in (await redis.hgetall(keys.MODELS)).items()}


async def own(redis, org: str = ORG) -> dict[str, dict]:
    raw = await redis.hgetall(keys.org_models(org))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


async def new_session(client, token: str, model: str, org: str = ORG) -> dict:
    conv = await client.create_conversation(token, org=org)
    return await client.create_session(token, conv["id"], model, org=org)


async def until(predicate, timeout: float = 3.0) -> None:
    """Poll an async predicate: what "within a second" looks like from outside."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


# -- the config file's entries -----------------------------------------------------------------


async def test_config_models_are_listed_and_stay_read_only(client, admin, redis):
    r = await client.http.get("/admin/models", headers=bearer(admin))
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["models"]}
    assert list(models) == CONFIG_IDS
    assert {m["source"] for m in models.values()} == {"config"}
    gpt = models["gpt"]
    assert gpt["model"] == "gpt-4o-mini" and gpt["provider"] == "openai"
    assert gpt["prices"] == {"input_per_mtok": 0.15, "output_per_mtok": 0.6, "source": "table"}
    assert models["demo"]["prices"]["source"] == "none"
    r = await put(client, admin, "gpt", {"provider": "openai"})
    assert r.status_code == 409 and r.json()["code"] == "model_in_config"
    r = await client.http.delete("/admin/models/gpt", headers=bearer(admin))
    assert r.status_code == 409 and r.json()["code"] == "model_in_config"
    assert await redis.exists(keys.MODELS) == 0


# -- shared entries ------------------------------------------------------------------------


async def test_put_creates_then_replaces_and_the_entry_answers_at_its_prices(
    client, admin, alice, upstream, redis
):
    body = openai_entry(upstream, price_input_per_mtok=2.0, price_output_per_mtok=8.0)
    r = await put(client, admin, "extra", body)
    assert r.status_code == 201, r.text
    entry = r.json()["model"]
    assert (entry["id"], entry["source"], entry["org_id"]) == ("extra", "api", None)
    assert entry["prices"] == {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "source": "entry"}
    stored = (await shared(redis))["extra"]
    assert stored["config"]["model"] == "extra-upstream-model" and stored["org_id"] is None

    session = await new_session(client, alice, "extra")
    upstream.script(
        Reply(chunks=["four ", "words ", "of ", "it"], input_tokens=1000, output_tokens=500)
    )
    stream = await client.chat(alice, session["id"], "hello")
    assert stream.text == "four words of it"
    assert upstream.requests[-1].body["model"] == "extra-upstream-model"
    end = stream.events[-1].json
    # 1000 x $2/M + 500 x $8/M = $0.006, priced when recorded
    assert end["conversation_usage"]["cost"] == pytest.approx(0.006)
    answer = json.loads((await redis.lrange(keys.messages(session["conversation_id"]), -1, -1))[0])
    assert answer["cost_nusd"] == 6_000_000

    # a new price applies to the next answer only: history is not rewritten
    r = await put(client, admin, "extra", {**body, "price_output_per_mtok": 80.0})
    assert r.status_code == 200 and r.json()["model"]["created_at"] == entry["created_at"]
    upstream.script(Reply(chunks=["x"], input_tokens=1000, output_tokens=500))
    await client.chat(alice, session["id"], "again")
    first, second = [
        json.loads(m)["cost_nusd"]
        for m in await redis.lrange(keys.messages(session["conversation_id"]), 0, -1)
        if json.loads(m)["role"] == "assistant"
    ]
    assert (first, second) == (6_000_000, 42_000_000)
    r = await client.http.get(
        f"/api/conversation/get_with_sessions?org_id={ORG}&conversation_id={session['conversation_id']}",
        headers=bearer(alice),
    )
    assert r.json()["cost"] == pytest.approx(0.048)


async def test_a_model_added_on_one_worker_answers_the_next_prompt_on_another(
    client, gateway_factory, admin, alice, upstream, redis
):
    async with gateway_factory() as other:
        assert (await put(client, admin, "fresh", openai_entry(upstream))).status_code == 201
        session = await new_session(other, alice, "fresh")  # no wait: the very next request
        upstream.script(Reply(chunks=["from ", "the other"]))
        assert (await other.chat(alice, session["id"], "hi")).text == "from the other"
        assert upstream.requests[-1].body["model"] == "extra-upstream-model"
        r = await other.http.get("/v1/models", headers=bearer(alice))
        assert "fresh" in [m["id"] for m in r.json()["data"]]


async def test_a_deleted_model_stops_new_sessions_while_a_running_stream_completes(
    client, gateway_factory, admin, alice, upstream, redis
):
    async with gateway_factory() as other:
        assert (await put(client, admin, "doomed", openai_entry(upstream))).status_code == 201
        session = await new_session(other, alice, "doomed")
        words = [f"w{i} " for i in range(20)]
        upstream.script(Reply(chunks=words, delay=0.1))
        running = asyncio.create_task(other.stream_chat(alice, session["id"], "long answer"))
        await asyncio.to_thread(upstream.wait_until, lambda: upstream.open_streams == 1)

        r = await client.http.delete("/admin/models/doomed", headers=bearer(admin))
        assert r.status_code == 200 and r.json() == {"success": True, "modelId": "doomed"}
        assert "doomed" not in await shared(redis)
        conv = await client.create_conversation(alice)

        async def refused_on_the_other() -> bool:
            r = await other.http.post(
                f"/api/conversation/create_session?org_id={ORG}",
                json={"conversation_id": conv["id"], "model_id": "doomed"},
                headers=bearer(alice),
            )
            return r.status_code == 404 and r.json()["code"] == "model_not_found"

        await until(refused_on_the_other, timeout=2.0)  # within a second (+ slack for load)
        r, raw = await running
        stream = parse_sse(raw)
        assert r.status_code == 200 and stream.events[-1].json["finish_reason"] == "stop"
        assert stream.text == "".join(words)  # the old entry's client was not closed under it
        assert upstream.cancelled_streams == 0
        r, _ = await other.stream_chat(alice, session["id"], "and now?")
        assert r.status_code == 404 and json.loads(_)["code"] == "model_not_found"


# -- one org's own entries ---------------------------------------------------------------------


async def test_org_admins_manage_their_orgs_own_models_and_nobody_elses(
    client, admin, alice, mallory, redis
):
    demo = {"provider": "demo", "pace_ms": 0, "answer_words": 5}
    r = await put(client, ORG_ADMIN, "ours", demo)
    assert r.status_code == 201 and r.json()["model"]["org_id"] == ORG
    assert list(await own(redis)) == ["ours"] and await shared(redis) == {}
    session = await new_session(client, alice, "ours")
    assert (await client.chat(alice, session["id"], "hi")).events[-1].json[
        "finish_reason"
    ] == "stop"

    # another org: not there, whatever the verb; its own "ours" is another entry
    for verb, path in (("GET", ""), ("DELETE", ""), ("POST", "/test")):
        r = await client.http.request(
            verb, f"/admin/models/ours{path}", headers=bearer(OTHER_ORG_ADMIN)
        )
        assert r.status_code == 404 and r.json()["code"] == "model_not_found", verb
    r = await client.http.post(
        "/api/conversation/create_session?org_id=org-2",
        json={
            "conversation_id": (await client.create_conversation(mallory, org="org-2"))["id"],
            "model_id": "ours",
        },
        headers=bearer(mallory),
    )
    assert r.status_code == 404 and r.json()["code"] == "model_not_found"
    r = await client.http.get("/v1/models", headers=bearer(mallory))
    assert "ours" not in [m["id"] for m in r.json()["data"]]
    assert (await put(client, OTHER_ORG_ADMIN, "ours", demo)).status_code == 201
    assert list(await own(redis, "org-2")) == ["ours"]
    assert (await own(redis))["ours"]["org_id"] == ORG  # org-1's untouched

    # what an org admin may not do
    r = await put(client, ORG_ADMIN, "theirs", {**demo, "org_id": "org-2"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    r = await put(
        client, ORG_ADMIN, "pointed", {"provider": "openai", "base_url": "http://10.0.0.1/v1"}
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden_field"
    r = await put(
        client, ORG_ADMIN, "borrowed", {"provider": "openai", "api_key_env": "OPENAI_API_KEY"}
    )
    assert r.status_code == 400 and "api_key_env" in r.json()["message"]
    assert (await put(client, admin, "platform-wide", demo)).status_code == 201
    r = await client.http.delete("/admin/models/platform-wide", headers=bearer(ORG_ADMIN))
    assert r.status_code == 403
    r = await put(client, ORG_ADMIN, "platform-wide", demo)
    assert r.status_code == 409 and r.json()["code"] == "model_exists"
    r = await client.http.get("/admin/models?org_id=org-2", headers=bearer(ORG_ADMIN))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    for who in (WS_ADMIN, alice):
        r = await client.http.get("/admin/models", headers=bearer(who))
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
        assert (await put(client, who, "mine", demo)).status_code == 403
    assert (await client.http.get("/admin/models")).status_code == 401
    assert set(await own(redis)) == {"ours"} and set(await shared(redis)) == {"platform-wide"}

    # the platform admin sees an org's own entries when it names the org
    r = await client.http.get("/admin/models?org_id=org-1", headers=bearer(admin))
    assert {"ours", "platform-wide"} <= {m["id"] for m in r.json()["models"]}
    r = await client.http.get("/admin/models", headers=bearer(admin))
    assert "ours" not in {m["id"] for m in r.json()["models"]}
    r = await client.http.delete("/admin/models/ours", headers=bearer(ORG_ADMIN))
    assert r.status_code == 200 and await own(redis) == {}


async def test_an_orgs_own_model_never_answers_with_the_platforms_key(
    client, admin, alice, upstream, redis
):
    """An org admin's openai entry at the provider's own endpoint: without a repository key
    it is refused before anything is sent, never billed to the platform's OPENAI_API_KEY."""
    r = await put(client, ORG_ADMIN, "own-gpt", {"provider": "openai", "model": "gpt-4o"})
    assert r.status_code == 201
    session = await new_session(client, alice, "own-gpt")
    r, raw = await client.stream_chat(alice, session["id"], "hello")
    assert r.status_code == 400 and json.loads(raw)["code"] == "provider_key_missing"
    assert upstream.requests == []
    assert await redis.llen(keys.messages(session["conversation_id"])) == 0


# -- the connection test -------------------------------------------------------------------------


async def test_the_connection_test_reports_latency_or_the_providers_error(
    client, admin, upstream, redis
):
    assert (await put(client, admin, "probed", openai_entry(upstream))).status_code == 201
    upstream.script(Reply(chunks=["pong"]))
    r = await client.http.post("/admin/models/probed/test", headers=bearer(admin))
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["ok"] is True and result["latency_ms"] > 0
    sent = upstream.requests[-1].body
    assert sent["model"] == "extra-upstream-model" and sent["max_tokens"] == 1
    assert [m["content"] for m in sent["messages"]] == ["ping"]

    upstream.script(Reply(status=401))
    r = await client.http.post("/admin/models/probed/test", headers=bearer(admin))
    result = r.json()["result"]
    assert (
        result["ok"] is False and result["error_kind"] == "auth" and result["error_status"] == 401
    )
    stored = json.loads(await redis.hget(keys.MODEL_HEALTH, "probed"))
    assert stored["ok"] is False and stored["error_kind"] == "auth"
    r = await client.http.get("/admin/models/probed", headers=bearer(admin))
    assert r.json()["model"]["health"]["error_kind"] == "auth"

    # one test at a time per model, on every worker
    upstream.script(Reply(chunks=["slow"], first_delay=1.0))
    first = asyncio.create_task(
        client.http.post("/admin/models/probed/test", headers=bearer(admin))
    )
    await asyncio.to_thread(upstream.wait_for_requests, 3)
    r = await client.http.post("/admin/models/probed/test", headers=bearer(admin))
    assert r.status_code == 409 and r.json()["code"] == "test_running"
    assert r.headers["Retry-After"] == "2"
    assert (await first).json()["result"]["ok"] is True
    # an org admin does not spend the platform's credentials on the shared entries
    r = await client.http.post("/admin/models/gpt/test", headers=bearer(ORG_ADMIN))
    assert r.status_code == 403
    assert len(upstream.requests) == 3


async def test_a_connection_test_never_outlasts_the_entrys_timeouts(client, admin, upstream, redis):
    body = openai_entry(upstream, connect_timeout=1, read_timeout=1)
    assert (await put(client, admin, "sluggish", body)).status_code == 201
    upstream.script(Reply(chunks=["late"], first_delay=5.0))
    started = time.monotonic()
    r = await client.http.post("/admin/models/sluggish/test", headers=bearer(admin))
    result = r.json()["result"]
    assert result["ok"] is False and result["error_kind"] == "timeout", result
    assert time.monotonic() - started < 4.5  # its own 2 s at most, not the upstream's 5 s
    stored = json.loads(await redis.hget(keys.MODEL_HEALTH, "sluggish"))
    assert stored["error_kind"] == "timeout"


# -- abuse --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mid, body, status",
    [
        ("ok-id", {"provider": "openai", "surprise": 1}, 400),  # unknown field: never dropped
        ("ok-id", {"provider": "ollama"}, 400),
        ("ok-id", {"provider": "openai", "price_input_per_mtok": -1}, 400),
        ("ok-id", {"provider": "openai", "price_output_per_mtok": 1e9}, 400),
        ("ok-id", {"provider": "openai", "base_url": "file:///etc/passwd"}, 400),
        ("ok-id", {"provider": "openai", "fallbacks": ["nope"]}, 400),
        ("ok-id", {"provider": "openai", "fallbacks": ["gpt"] * 11}, 400),
        ("ok-id", {"provider": "openai", "fallbacks": ["ok-id"]}, 400),
        ("ok-id", {"provider": "openai", "id": "other"}, 400),
        ("ok-id", {"provider": "openai", "api_key_env": "GATEWAY_JWT_SECRET"}, 400),
        ("ok-id", {"provider": "openai", "read_timeout": 10**6}, 400),
        ("-dash", {"provider": "openai"}, 400),
        ("x" * 201, {"provider": "openai"}, 400),
    ],
)
async def test_bad_entries_are_refused_and_store_nothing(client, admin, redis, mid, body, status):
    r = await put(client, admin, mid, body)
    assert r.status_code == status and r.json()["success"] is False, r.text
    assert await shared(redis) == {} and await redis.get(keys.MODELS_VERSION) is None


async def test_a_megabyte_of_prices_is_too_large(client, admin, redis):
    body = {"provider": "openai", "prices": {f"m{i}": i for i in range(80_000)}}
    r = await put(client, admin, "big", body)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert await shared(redis) == {}


async def test_an_org_holds_at_most_a_hundred_models(client, redis):
    demo = {"provider": "demo"}
    for i in range(100):
        assert (await put(client, ORG_ADMIN, f"m{i}", demo)).status_code == 201
    r = await put(client, ORG_ADMIN, "one-more", demo)
    assert r.status_code == 409 and r.json()["code"] == "too_many_models"
    assert (
        await put(client, ORG_ADMIN, "m7", {"provider": "demo", "answer_words": 3})
    ).status_code == 200
    assert len(await own(redis)) == 100 and "one-more" not in await own(redis)
