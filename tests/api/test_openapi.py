"""The OpenAPI document: valid OpenAPI 3.1 (openapi-spec-validator), one entry for every
route the app serves, served without a token, and true to what the gateway really answers
(real responses and stream frames validated against the document's own schemas)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.routing import Route

from gateway.api import openapi
from gateway.api.openapi import OPERATIONS, build_document, route_operations, undocumented
from gateway.app import create_app
from gateway.settings import load_settings
from tests.api.document import conforms, documented
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse

STATIC = Path(openapi.__file__).parent.parent / "static"  # gateway/static


@pytest.fixture(scope="module")
def app():
    return create_app(load_settings(env={}))


@pytest.fixture(scope="module")
def document(app) -> dict[str, Any]:
    return build_document(app.routes)


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)  # picks the 3.1 validator from the document's version
    assert not list(OpenAPIV31SpecValidator(document).iter_errors())


def test_every_route_the_app_serves_is_documented(app, document):
    served = route_operations(app.routes)
    in_document = [(m.upper(), p) for p, item in document["paths"].items() for m in item]
    assert sorted(served) == sorted(in_document)
    missing = undocumented(document)
    assert not missing, (
        "routes without an entry in gateway/openapi.py OPERATIONS (add one per route): "
        + ", ".join(missing)
    )


def test_no_entry_outlives_its_route(app):
    stale = set(OPERATIONS) - set(route_operations(app.routes))
    assert not stale, f"OPERATIONS entries for routes the app no longer serves: {sorted(stale)}"


def test_a_new_route_without_an_entry_is_listed_as_undocumented(app):
    async def handler(request):  # pragma: no cover - never called
        raise AssertionError

    routes = [
        *app.routes,
        Route("/policy/violations/{violation_id}", handler, methods=["GET", "POST"]),
    ]
    document = build_document(routes)
    assert undocumented(document) == [
        "GET /policy/violations/{violation_id}",
        "POST /policy/violations/{violation_id}",
    ]
    validate(document)  # still a valid document meanwhile


def test_operations_carry_their_auth_params_and_error_shapes(document):
    paths = document["paths"]
    stream_chat = paths["/api/conversation/stream_chat"]["post"]
    assert stream_chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StreamChat"
    }
    assert document["components"]["schemas"]["StreamChat"]["required"] == [
        "chat_session_id",
        "message",
    ]
    assert set(stream_chat["responses"]) >= {"200", "400", "401", "403", "404", "409", "429", "502"}
    assert "Retry-After" in stream_chat["responses"]["429"]["headers"]
    sse = stream_chat["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert sse == {"$ref": "#/components/schemas/ChatStreamEvent"}
    frames = document["components"]["schemas"]["ChatStreamEvent"]["oneOf"]
    assert [f["$ref"].rsplit("/", 1)[1] for f in frames] == [
        "StartFrame",
        "ContentFrame",
        "ToolCallFrame",
        "ErrorFrame",
        "EndFrame",
    ]

    for path in (
        "/api/conversation/stream",
        "/conversation/{conversation_id}/messages/{message_id}/stream",
    ):
        op = paths[path]["get"]
        params = {(p["in"], p["name"]) for p in op["parameters"]}
        assert {("query", "resume_token"), ("header", "Last-Event-ID")} <= params, path
        assert {"resumeToken": []} in op["security"]

    for path, item in paths.items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    shape = response["content"]["application/json"]["schema"]["$ref"].rsplit(
                        "/", 1
                    )[1]
                    anthropic = path.startswith("/v1/messages")  # and its count_tokens
                    expected = (
                        "AnthropicError"
                        if anthropic
                        else "OpenAIError"
                        if path.startswith("/v1/")
                        else "Error"
                    )
                    assert shape == expected, (method, path, status)
            if op["security"]:
                assert "401" in op["responses"], (method, path)
    # the pages and the probes need no token
    for path in ("/", "/docs", "/openapi.json", "/static/{file}", "/healthz", "/readyz"):
        assert paths[path]["get"]["security"] == []


async def test_the_served_document_is_the_built_one_and_needs_no_token(client, gateway_server):
    r = await client.http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == build_document(gateway_server.app.routes)
    validate(r.json())


async def test_the_docs_page_is_offline_and_lists_its_assets(client):
    r = await client.http.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert "/static/docs.js" in assets and "/static/playground.css" in assets
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith("/"), f"{asset}: the docs must load nothing from elsewhere"
        assert (await client.http.get(asset)).status_code == 200, asset
    # no CDN anywhere in the shipped assets (comments may cite a spec, code may not fetch one)
    for path in STATIC.iterdir():
        code = "\n".join(
            line
            for line in path.read_text().splitlines()
            if not line.lstrip().startswith(("//", "/*"))
        )
        assert not re.search(r"""(?:src|href|from|import|url)\s*[=(]?\s*["']?https?://""", code), (
            path.name
        )


async def test_real_answers_match_the_documented_schemas(
    client, admin, alice, mallory, upstream, document
):
    conv = await client.create_conversation(alice)
    conforms(document, "Conversation", conv)
    session = await client.create_session(alice, conv["id"], "gpt")
    conforms(document, "ChatSession", session)

    upstream.script(Reply(chunks=["Hel", "lo"], input_tokens=3, output_tokens=2))
    stream = await client.chat(alice, session["id"], "hi")
    assert stream.names == ["start", "content", "content", "end"]
    for e in stream.events:
        frame = {"event": e.event, "data": e.json, **({"id": e.id} if e.id else {})}
        conforms(document, "ChatStreamEvent", frame)
        conforms(document, f"{e.event.capitalize()}Frame", frame)

    start = stream.events[0].json
    r = await client.http.get(
        "/api/conversation/stream",
        params={"message_id": start["message_id"], "resume_token": start["resume_token"]},
    )
    for e in parse_sse(r.content).events:
        conforms(
            document,
            "ChatStreamEvent",
            {"event": e.event, "data": e.json, **({"id": e.id} if e.id else {})},
        )

    params = {"org_id": ORG, "conversation_id": conv["id"]}
    listed = await client.http.get(
        "/api/conversation/list", params={"org_id": ORG}, headers=bearer(alice)
    )
    conforms(document, "ConversationList", listed.json())
    got = await client.http.get(
        "/api/conversation/get_with_sessions", params=params, headers=bearer(alice)
    )
    conforms(document, "ConversationWithSessions", got.json())
    conforms(document, "MessagePage", await client.messages(alice, conv["id"]))

    repo_list = await client.http.get("/conversation", headers=bearer(alice))
    conforms(document, "RepoConversationList", repo_list.json())
    repo_messages = await client.http.get(
        f"/conversation/{conv['id']}/messages", headers=bearer(alice)
    )
    conforms(document, "RepoMessagePage", repo_messages.json())
    models = await client.http.get("/v1/models", headers=bearer(alice))
    conforms(document, "OpenAIModelList", models.json())
    policies = await client.http.get("/admin/policies", headers=bearer(admin))
    conforms(document, "PolicyList", policies.json())
    violations = await client.http.get(
        "/policy/violations", params={"org_id": ORG}, headers=bearer(alice)
    )
    conforms(document, "ViolationPage", violations.json())

    # errors: the contract's shape, with the statuses the document lists
    errors = [
        (await client.http.get("/api/conversation/list", params={"org_id": ORG}), "401"),
        (
            await client.http.get(
                "/api/conversation/get_with_sessions", params=params, headers=bearer(mallory)
            ),
            "403",
        ),
        (
            await client.http.get(
                "/api/conversation/get_with_sessions",
                params={**params, "conversation_id": "nope"},
                headers=bearer(alice),
            ),
            "404",
        ),
        (
            await client.http.post(
                f"/api/conversation/stop?org_id={ORG}",
                json={"message_id": start["message_id"]},
                headers=bearer(alice),
            ),
            "409",
        ),
        (
            await client.http.post(
                f"/api/conversation/create?org_id={ORG}", content=b"{", headers=bearer(alice)
            ),
            "400",
        ),
    ]
    operations = {
        "401": document["paths"]["/api/conversation/list"]["get"],
        "403": document["paths"]["/api/conversation/get_with_sessions"]["get"],
        "404": document["paths"]["/api/conversation/get_with_sessions"]["get"],
        "409": document["paths"]["/api/conversation/stop"]["post"],
        "400": document["paths"]["/api/conversation/create"]["post"],
    }
    for response, status in errors:
        assert str(response.status_code) == status, response.text
        assert status in operations[status]["responses"]
        conforms(document, "Error", response.json())


def test_query_parameters_come_from_the_handlers_query_models(document):
    params = {
        p["name"]: p for p in document["paths"]["/api/conversation/messages"]["get"]["parameters"]
    }
    assert params["org_id"]["required"] is True
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 20,
    }
    assert params["offset"]["schema"]["maximum"] == 10_000_000  # the document had none
    events = {p["name"]: p for p in document["paths"]["/admin/events"]["get"]["parameters"]}
    assert events["before"]["schema"]["pattern"] == "^[0-9]{1,20}-[0-9]{1,20}$"
    assert "required" not in events["from"] and events["from"]["schema"] == {"type": "string"}


@pytest.fixture
async def served(client) -> dict[str, Any]:
    return (await client.http.get("/openapi.json")).json()


# Each answer below is checked against the schema its own operation declares for its status
# and media type (each frame, for a stream), not only against a component.


async def test_repository_style_answers_are_as_documented(client, admin, alice, upstream, served):
    http = client.http
    r = await http.put(
        "/admin/repositories/doc-repo",
        json={"org_id": ORG, "workspace_id": "ws-1", "model": "gpt"},
        headers=bearer(admin),
    )
    assert r.status_code == 201
    documented(served, "PUT", "/admin/repositories/{repo_id}", r)
    r = await http.post("/conversation", json={"repoId": "doc-repo"}, headers=bearer(alice))
    documented(served, "POST", "/conversation", r)
    cid = r.json()["conversationId"]

    upstream.script(Reply(chunks=["Hel", "lo"]))
    r = await http.post(f"/conversation/{cid}/prompt", json={"prompt": "hi"}, headers=bearer(alice))
    assert r.json()["response"] == "Hello"
    documented(served, "POST", "/conversation/{conversation_id}/prompt", r)
    r = await http.post(
        f"/conversation/{cid}/prompt",
        json={"prompt": "more", "stream": True},
        headers=bearer(alice),
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    documented(served, "POST", "/conversation/{conversation_id}/prompt", r)

    documented(
        served, "GET", "/conversation", await http.get("/conversation", headers=bearer(alice))
    )
    r = await http.get(f"/conversation/{cid}/messages", headers=bearer(alice))
    assert len(r.json()["messages"]) == 4
    documented(served, "GET", "/conversation/{conversation_id}/messages", r)
    r = await http.post(f"/conversation/{cid}/stop", headers=bearer(alice))
    assert r.status_code == 409  # nothing is being generated
    documented(served, "POST", "/conversation/{conversation_id}/stop", r)
    r = await http.delete(f"/conversation/{cid}", headers=bearer(alice))
    documented(served, "DELETE", "/conversation/{conversation_id}", r)


async def test_admin_answers_are_as_documented(client, admin, served):
    http, auth = client.http, bearer(admin)
    body = {"org_id": ORG, "workspace_id": "ws-1"}
    r = await http.put("/admin/repositories/doc-repo", json=body, headers=auth)
    documented(served, "PUT", "/admin/repositories/{repo_id}", r)
    documented(
        served, "GET", "/admin/repositories", await http.get("/admin/repositories", headers=auth)
    )
    r = await http.get("/admin/repositories/doc-repo", headers=auth)
    documented(served, "GET", "/admin/repositories/{repo_id}", r)
    r = await http.delete("/admin/repositories/doc-repo", headers=auth)
    documented(served, "DELETE", "/admin/repositories/{repo_id}", r)

    policy = {"kind": "keywords", "keywords": ["zebra"], "stages": ["pre"], "action": "log"}
    r = await http.put("/admin/policies/doc-policy", json=policy, headers=auth)
    assert r.status_code == 201
    documented(served, "PUT", "/admin/policies/{policy_id}", r)
    r = await http.get("/admin/policies/doc-policy", headers=auth)
    documented(served, "GET", "/admin/policies/{policy_id}", r)
    r = await http.delete("/admin/policies/doc-policy", headers=auth)
    documented(served, "DELETE", "/admin/policies/{policy_id}", r)

    r = await http.get("/admin/events", params={"org_id": ORG}, headers=auth)
    assert [e["type"] for e in r.json()["events"]] == ["repository_deleted", "repository_saved"]
    documented(served, "GET", "/admin/events", r)
    for probe in ("/healthz", "/readyz"):
        documented(served, "GET", probe, await http.get(probe))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_compatible_answers_and_errors_are_as_documented(
    client, alice, upstream, served, stream
):
    http, auth = client.http, bearer(alice)
    question = [{"role": "user", "content": "hi"}]
    upstream.script(Reply(chunks=["a", "b"]))
    usage = {"stream_options": {"include_usage": True}} if stream else {}
    r = await http.post(
        "/v1/chat/completions",
        headers=auth,
        json={"model": "gpt", "messages": question, "stream": stream, **usage},
    )
    assert r.status_code == 200, r.text
    documented(served, "POST", "/v1/chat/completions", r)
    upstream.script(Reply(chunks=["a", "b"]))
    r = await http.post(
        "/v1/messages",
        headers=auth,
        json={"model": "claude", "max_tokens": 5, "messages": question, "stream": stream},
    )
    assert r.status_code == 200, r.text
    documented(served, "POST", "/v1/messages", r)

    anthropic_style = {"anthropic-version": "2023-06-01"} if stream else {}
    headers = {**auth, **anthropic_style}
    documented(served, "GET", "/v1/models", await http.get("/v1/models", headers=headers))
    r = await http.get("/v1/models/gpt", headers=headers)
    documented(served, "GET", "/v1/models/{model_id}", r)

    bad = {"model": "gpt", "messages": question, "n": 0, "stream": stream}
    r = await http.post("/v1/chat/completions", headers=auth, json=bad)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    documented(served, "POST", "/v1/chat/completions", r)
    missing = {"model": "nope", "max_tokens": 5, "messages": question, "stream": stream}
    r = await http.post("/v1/messages", headers=auth, json=missing)
    assert r.status_code == 404
    documented(served, "POST", "/v1/messages", r)
