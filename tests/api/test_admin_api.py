"""The admin API's repositories: config-declared ones listed but owned by the file, others
created, replaced and deleted through /admin/repositories and kept in Redis."""

from __future__ import annotations

import json

import pytest

from gateway.storage import keys
from tests.gateway_fixtures import ORG
from tests.support import bearer, make_jwt

OTHER_ORG_ADMIN = make_jwt("oscar", "org-2", "org_admin")
CONFIG_ORG_1 = [
    "demo-1",
    "demo-2",
    "repo-1",
    "repo-2",
    "repo-default-model",
    "repo-keyed",
    "repo-orphan",
]


async def stored(redis) -> dict[str, dict]:
    return {k.decode(): json.loads(v) for k, v in (await redis.hgetall(keys.REPOSITORIES)).items()}


async def put(api, token: str, rid: str, **body):
    return await api.http.put(f"/admin/repositories/{rid}", json=body, headers=bearer(token))


async def test_listing_is_scoped_by_role(api, cast, redis):
    r = await api.http.get("/admin/repositories", headers=bearer(cast.admin))
    assert r.status_code == 200
    repos = r.json()["repositories"]
    assert [x["id"] for x in repos] == CONFIG_ORG_1 + ["demo-9"]
    assert {x["source"] for x in repos} == {"config"}
    keyed = next(x for x in repos if x["id"] == "repo-keyed")
    assert keyed["has_own_api_key"] is True and "api_key_env" not in keyed  # never the variable
    r = await api.http.get("/admin/repositories", headers=bearer(cast.org_admin))
    assert [x["id"] for x in r.json()["repositories"]] == CONFIG_ORG_1
    r = await api.http.get("/admin/repositories?org_id=org-2", headers=bearer(cast.org_admin))
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    for who in (cast.ws_admin, cast.alice):
        r = await api.http.get("/admin/repositories", headers=bearer(who))
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = await api.http.get("/admin/repositories")
    assert r.status_code == 401
    assert await stored(redis) == {}  # config repositories are served from the file


async def test_put_creates_then_replaces_and_conversations_follow(api, cast, redis):
    r = await put(api, cast.org_admin, "team-repo", workspace_id="ws-1", model="demo")
    assert r.status_code == 201
    repo = r.json()["repository"]
    assert {k: repo[k] for k in ("id", "org_id", "workspace_id", "model", "source")} == {
        "id": "team-repo",
        "org_id": ORG,
        "workspace_id": "ws-1",
        "model": "demo",
        "source": "api",
    }
    record = (await stored(redis))[keys.repository_field(ORG, "team-repo")]
    assert (record["org_id"], record["workspace_id"], record["model"]) == (ORG, "ws-1", "demo")

    cid = await api.create(cast.alice, "team-repo")
    body = (await api.prompt(cast.alice, cid, "hello")).json()
    assert body["model"] == "demo" and body["success"] is True

    r = await put(api, cast.org_admin, "team-repo", workspace_id="ws-2", model="gpt")
    assert r.status_code == 200
    assert r.json()["repository"]["created_at"] == repo["created_at"]
    assert (await stored(redis))[keys.repository_field(ORG, "team-repo")]["workspace_id"] == "ws-2"
    r = await api.http.post(
        "/conversation", json={"repoId": "team-repo"}, headers=bearer(cast.alice)
    )
    assert r.status_code == 403  # alice has no access to ws-2
    r = await api.http.get("/admin/repositories/team-repo", headers=bearer(cast.org_admin))
    assert r.status_code == 200 and r.json()["repository"]["workspace_id"] == "ws-2"


async def test_a_repository_put_without_workspace_is_an_orphan(api, cast, redis):
    assert (await put(api, cast.org_admin, "loose", model="demo")).status_code == 201
    r = await api.http.post(
        "/conversation", json={"repoId": "loose"}, headers=bearer(cast.org_admin)
    )
    assert r.status_code == 400 and r.json()["code"] == "repository_without_workspace"
    assert await redis.keys(keys.CONVERSATION_KEYS) == []


async def test_config_repositories_cannot_be_changed_here(api, cast, redis):
    r = await put(api, cast.org_admin, "repo-1", workspace_id="ws-2")
    assert r.status_code == 409 and r.json()["code"] == "repository_in_config"
    r = await api.http.delete("/admin/repositories/repo-1", headers=bearer(cast.org_admin))
    assert r.status_code == 409
    assert await stored(redis) == {}


@pytest.mark.parametrize(
    "rid, body, code",
    [
        ("ok-id", {"workspace_id": "ws-1", "model": "gpt-17"}, "validation_error"),
        ("ok-id", {"workspace_id": 5}, "validation_error"),
        ("ok-id", {"workspace_id": ""}, "validation_error"),
        ("bad%20id", {"workspace_id": "ws-1"}, "validation_error"),
        ("-starts-with-dash", {"workspace_id": "ws-1"}, "validation_error"),
    ],
)
async def test_bad_puts_are_400(api, cast, redis, rid, body, code):
    r = await put(api, cast.org_admin, rid, **body)
    assert r.status_code == 400 and r.json()["code"] == code
    assert await stored(redis) == {}


async def test_orgs_are_kept_apart(api, cast, redis):
    # the platform admin names the org; an org admin only ever their own
    r = await put(api, cast.admin, "theirs", workspace_id="ws-9")
    assert r.status_code == 400 and "org_id" in r.json()["message"]
    assert (
        await put(api, cast.admin, "theirs", org_id="org-2", workspace_id="ws-9")
    ).status_code == 201
    r = await put(api, cast.org_admin, "mine", org_id="org-2", workspace_id="ws-1")
    assert r.status_code == 403 and r.json()["code"] == "forbidden_org"
    # another org's repository is not there for org-1's admin (ids are per org)
    for verb in ("GET", "DELETE"):
        r = await api.http.request(
            verb, "/admin/repositories/theirs", headers=bearer(cast.org_admin)
        )
        assert r.status_code == 404 and r.json()["code"] == "repository_not_found", verb
    r = await api.http.post("/conversation", json={"repoId": "theirs"}, headers=bearer(cast.alice))
    assert r.status_code == 404
    r = await api.http.get("/admin/repositories", headers=bearer(OTHER_ORG_ADMIN))
    assert [x["id"] for x in r.json()["repositories"]] == ["demo-9", "theirs"]
    # the same id in org-1 is org-1's own repository, and org-2's stays as it was
    r = await put(api, cast.admin, "theirs", org_id=ORG, workspace_id="ws-1")
    assert r.status_code == 201 and r.json()["repository"]["org_id"] == ORG
    assert (await stored(redis))[keys.repository_field("org-2", "theirs")]["workspace_id"] == "ws-9"
    # the platform admin naming no org is asked for one once the id is in several
    r = await api.http.get("/admin/repositories/theirs", headers=bearer(cast.admin))
    assert r.status_code == 400 and "org_id" in r.json()["message"]


async def test_delete_stops_new_conversations_but_keeps_existing_ones(api, cast, redis):
    await put(api, cast.org_admin, "short-lived", workspace_id="ws-1", model="demo")
    cid = await api.create(cast.alice, "short-lived")
    r = await api.http.delete("/admin/repositories/short-lived", headers=bearer(cast.org_admin))
    assert r.status_code == 200 and r.json() == {"success": True, "repositoryId": "short-lived"}
    assert await stored(redis) == {}
    r = await api.http.post(
        "/conversation", json={"repoId": "short-lived"}, headers=bearer(cast.alice)
    )
    assert r.status_code == 404
    assert (await api.prompt(cast.alice, cid, "still there?")).status_code == 200
    assert (await api.list(cast.alice, repoId="short-lived"))["total"] == 1
    r = await api.http.delete("/admin/repositories/short-lived", headers=bearer(cast.org_admin))
    assert r.status_code == 404
