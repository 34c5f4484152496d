"""The OpenAPI document: valid OpenAPI 3.1 (openapi-spec-validator), one entry for every
route the app serves, served without a token, and true to what the gateway really answers
(real responses and stream frames validated against the document's own schemas)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Route

from gateway.api import openapi
from gateway.api.openapi import OPERATIONS, build_document, route_operations, undocumented
from gateway.app import create_app
from gateway.settings import load_settings
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


def conforms(document: dict[str, Any], component: str, value: Any) -> None:
    """Assert `value` is valid against components/schemas/<component> of the document."""
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:openapi#/components/schemas/{component}"}
    errors = list(Draft202012Validator(schema, registry=registry).iter_errors(value))
    assert not errors, f"{component}: {[e.message for e in errors]} in {value!r}"


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
                    expected = (
                        "OpenAIError"
                        if path.startswith("/v1/") and path != "/v1/messages"
                        else "AnthropicError"
                        if path == "/v1/messages"
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
