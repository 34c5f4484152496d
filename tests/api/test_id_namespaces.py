"""Repository and policy ids are per org: what one org's admin is answered never depends on
the ids another org holds. Once another org's existing id answered 404 (repositories) or
409 policy_id_taken (policies) where a new one answered 201, so ids could be probed, and
squatted: an org that took a name first kept every other org from using it."""

from __future__ import annotations

import json

from gateway.storage import keys
from tests.support import ADMIN_TOKEN, bearer, make_jwt

ORG_2_ADMIN = make_jwt("oscar", "org-2", "org_admin")


async def put(api, token: str, path: str, body: dict):
    return await api.http.put(path, json=body, headers=bearer(token))


async def test_another_orgs_repository_id_answers_like_a_new_one(api, cast, redis):
    # org-1 holds "team" (through the API) and "repo-1" (in the config file)
    r = await put(api, cast.org_admin, "/admin/repositories/team", {"workspace_id": "ws-1"})
    assert r.status_code == 201
    for rid in ("team", "repo-1", "never-used"):
        got = await api.http.get(f"/admin/repositories/{rid}", headers=bearer(ORG_2_ADMIN))
        assert (got.status_code, got.json()["code"]) == (404, "repository_not_found"), rid
        r = await put(api, ORG_2_ADMIN, f"/admin/repositories/{rid}", {"workspace_id": "ws-9"})
        assert r.status_code == 201, (rid, r.text)  # org-2's own, whatever org-1 holds
        assert r.json()["repository"]["org_id"] == "org-2"
    # both orgs' "team" live side by side; each org's conversations use its own
    fields = await redis.hgetall(keys.REPOSITORIES)
    assert (
        json.loads(fields[keys.repository_field("org-1", "team").encode()])["workspace_id"]
        == "ws-1"
    )
    assert (
        json.loads(fields[keys.repository_field("org-2", "team").encode()])["workspace_id"]
        == "ws-9"
    )
    assert (await api.http.get("/admin/repositories/team", headers=bearer(cast.org_admin))).json()[
        "repository"
    ]["workspace_id"] == "ws-1"
    cid = await api.create(cast.mallory, "team")  # mallory works in org-2's ws-9
    conv = await redis.hgetall(keys.conversation(cid))
    assert (conv[b"org_id"], conv[b"workspace_id"]) == (b"org-2", b"ws-9")
    # org-2 deleting its "team" leaves org-1's alone
    r = await api.http.delete("/admin/repositories/team", headers=bearer(ORG_2_ADMIN))
    assert r.status_code == 200
    assert await redis.hexists(keys.REPOSITORIES, keys.repository_field("org-1", "team"))


async def test_another_orgs_policy_id_answers_like_a_new_one(api, cast, redis):
    spec = {"kind": "keywords", "keywords": ["zebra"], "stages": ["pre"], "action": "log"}
    mine = await put(api, cast.org_admin, "/admin/policies/escalations", spec)
    assert mine.status_code == 201
    for pid in ("escalations", "never-used"):
        got = await api.http.get(f"/admin/policies/{pid}", headers=bearer(ORG_2_ADMIN))
        assert got.status_code == 404, pid
        r = await put(api, ORG_2_ADMIN, f"/admin/policies/{pid}", spec)
        assert r.status_code == 201, (pid, r.text)
        assert r.json()["policy"]["id"] == f"org-2:{pid}"
        assert r.json()["policy"]["org_id"] == "org-2"
    assert mine.json()["policy"]["id"] == "org-1:escalations"
    stored = await redis.hgetall(keys.POLICIES)
    assert {k.decode() for k in stored} == {
        "org-1:escalations",
        "org-2:escalations",
        "org-2:never-used",
    }
    # each org reads and deletes its own by its name; the other's stays
    r = await api.http.get("/admin/policies/escalations", headers=bearer(cast.org_admin))
    assert r.status_code == 200 and r.json()["policy"]["org_id"] == "org-1"
    r = await api.http.delete("/admin/policies/escalations", headers=bearer(ORG_2_ADMIN))
    assert r.status_code == 200
    assert await redis.hexists(keys.POLICIES, "org-1:escalations")
    # the platform admin sees every id as it is
    listed = await api.http.get("/admin/policies", headers=bearer(ADMIN_TOKEN))
    ids = {p["id"] for p in listed.json()["policies"]}
    assert {"org-1:escalations", "org-2:never-used"} <= ids
