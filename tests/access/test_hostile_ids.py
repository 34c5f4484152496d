"""Ids that try to cross a boundary: a `:` that made two index key components run into
each other (a workspace admin of ws-1 listed bob's conversation in workspace `ws-1:secret`),
and ids outside their documented alphabet (gateway/access/ids.py), refused where they enter:
400 for a request, 401 for a token or key whose claims break it. Redis is checked too."""

from __future__ import annotations

from gateway.access.auth import digest, new_api_key
from gateway.storage import keys
from gateway.storage.records import Conversation, Creator, new_id
from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import ADMIN_TOKEN, bearer, make_jwt


async def seed(store, *, workspace: str, user: str, repo: str | None = None) -> str:
    """A conversation written as an older gateway (which took any id) wrote it."""
    conv = Conversation(
        id=new_id(),
        org_id=ORG,
        title="secret plans",
        created_by=user,
        creator=Creator(id=user, name="Bob", email="bob@example.com"),
        workspace_id=workspace,
        repo_id=repo,
    )
    await store.conversations.create(conv)
    return conv.id


async def test_a_colon_in_a_filter_cannot_reach_another_workspaces_conversations(
    api, cast, store, redis
):
    hidden = await seed(store, workspace="ws-1:secret", user="bob")
    hidden_in_repo = await seed(store, workspace="ws-1:secret", user="bob", repo="r")
    visible = await seed(store, workspace="ws-1", user="alice")
    # walter manages ws-1 only; each filter once named one of bob's indexes in ws-1:secret
    attacks = [
        {"workspaceId": "ws-1", "userId": "secret:bob"},
        {"workspaceId": "ws-1", "repoId": "secret:r"},
        {"workspaceId": "ws-1", "repoId": "secret:r", "userId": "bob"},
    ]
    for params in attacks:
        page = await api.list(cast.ws_admin, **params)
        assert page["conversations"] == [] and page["total"] == 0, params
    assert await api.list_ids(cast.ws_admin, workspaceId="ws-1") == [visible]
    # the org admin, who may see both, still finds bob's by their real ids
    assert await api.list_ids(cast.org_admin, userId="bob") == [hidden_in_repo, hidden]
    assert await redis.zscore(keys.org_index(ORG, "ws_u", "ws-1:secret", "bob"), hidden)
    assert await redis.exists(keys.org_index(ORG, "ws_u", "ws-1", "secret:bob")) == 0


async def test_token_claims_outside_the_id_alphabet_are_401(api, redis):
    for claims in (
        {"sub": "bob", "org": ORG, "workspaces": ["ws-1:secret"]},
        {"sub": "bob", "org": "org-1}x", "workspaces": []},
        {"sub": "bob smith", "org": ORG, "workspaces": []},
        {"sub": "x" * 201, "org": ORG, "workspaces": []},
    ):
        token = make_jwt(claims["sub"], claims["org"], "user", workspaces=claims["workspaces"])
        r = await api.http.get("/conversation", headers=bearer(token))
        assert r.status_code == 401, claims
        assert r.json()["success"] is False and "id" in r.json()["message"]


async def test_an_api_key_whose_record_breaks_the_alphabet_is_401(api, store, redis):
    key_id, key = new_api_key()
    record = {"key_id": key_id, "org_id": "org{1}", "user_id": "bob", "role": "user"}
    await store.credentials.save_api_key(digest(key), {**record, "workspaces": []})
    r = await api.http.get("/conversation?org_id=org%7B1%7D", headers=bearer(key))
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_ids_outside_the_alphabet_are_400_and_write_nothing(api, cast, redis):
    before = await snapshot(redis)
    for method, path, body, token in [
        ("GET", "/conversation?userId=bob%20smith", None, cast.org_admin),
        ("GET", "/conversation?workspaceId=ws%7B1%7D", None, cast.org_admin),
        ("GET", "/conversation?repoId=%3Arepo", None, cast.org_admin),
        ("GET", f"/api/conversation/list?org_id={ORG}%7D", None, cast.org_admin),
        (
            "POST",
            f"/api/conversation/create?org_id={ORG}",
            {"title": "t", "workspace_id": "ws:1"},
            cast.org_admin,
        ),
        ("POST", "/conversation", {"repoId": "repo 1"}, cast.alice),
        ("PUT", "/admin/repositories/r-1", {"org_id": ORG, "workspace_id": "a:b"}, ADMIN_TOKEN),
        ("PUT", "/admin/repositories/r-1", {"org_id": "o}1", "workspace_id": "ws-1"}, ADMIN_TOKEN),
        (
            "PUT",
            "/admin/policies/p-1",
            {
                "kind": "keywords",
                "keywords": ["x"],
                "stages": ["pre"],
                "action": "log",
                "org_id": "o:1",
            },
            ADMIN_TOKEN,
        ),
        ("GET", f"/policy/violations?org_id={ORG}&userId=%7Bbob", None, cast.org_admin),
    ]:
        r = await api.http.request(method, path, json=body, headers=bearer(token))
        assert r.status_code == 400, (path, body, r.text)
        assert r.json()["success"] is False and r.json()["code"] == "invalid_id", r.text
    assert await snapshot(redis) == before
