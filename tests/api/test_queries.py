"""Query parameters through real HTTP, route by route as the served document lists them:
each bound it states is the bound the handler applies (one past it is a 400 that names the
parameter, the bound itself is accepted), each default is the one used, each pattern and
date is checked, each required parameter is required. Every refusal leaves Redis as it was.
A new route with a query model is walked without a new test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.api import queries
from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import bearer

API = Path(queries.__file__).parent  # gateway/api


@pytest.fixture
async def document(client) -> dict[str, Any]:
    return (await client.http.get("/openapi.json")).json()


@pytest.fixture
async def conversation(client, alice) -> dict[str, Any]:
    return await client.create_conversation(alice)


def query_operations(document: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    return [
        (method.upper(), path, [p for p in op.get("parameters", []) if p["in"] == "query"])
        for path, item in document["paths"].items()
        for method, op in item.items()
        if any(p["in"] == "query" for p in op.get("parameters", []))
    ]


class Route:
    """One operation, called as the platform admin with every required parameter set to a
    value that passes (the org, a real conversation), so only the one under test can fail."""

    def __init__(self, client, token, method, path, params, conversation) -> None:
        self.client, self.token, self.method = client, token, method
        self.url = re.sub(r"\{(\w+)\}", conversation["id"], path)
        values = {"org_id": ORG, "conversation_id": conversation["id"], "message_id": "m-1"}
        self.base = {p["name"]: values.get(p["name"], "x") for p in params if p.get("required")}
        if any(p["name"] == "org_id" for p in params):
            self.base["org_id"] = ORG  # the platform admin names one

    async def call(self, **params: Any) -> Any:
        query = {k: v for k, v in {**self.base, **params}.items() if v is not None}
        return await self.client.http.request(
            self.method, self.url, params=query, headers=bearer(self.token)
        )


def refused_for(r: Any, name: str, problem: str) -> None:
    assert r.status_code == 400, (name, r.text)
    body = r.json()
    assert set(body) == {"success", "code", "message"}  # the field is in the text only
    assert body["success"] is False and body["code"] == "validation_error", body
    assert body["message"].startswith(f"{name}: {problem}"), body["message"]


def not_refused_for(r: Any, name: str) -> None:
    """Any answer but a 400 about this parameter (a 404 for a made-up id is fine)."""
    if r.status_code == 400:
        assert not r.json()["message"].startswith(f"{name}:"), (name, r.text)


async def test_every_documented_bound_is_the_handlers_bound(
    client, admin, conversation, document, redis
):
    walked = []
    for method, path, params in query_operations(document):
        route = Route(client, admin, method, path, params, conversation)
        for p in params:
            schema, name = p["schema"], p["name"]
            if schema.get("type") != "integer":
                continue
            lo, hi = schema["minimum"], schema["maximum"]  # every count is bounded
            assert lo <= schema["default"] <= hi, (path, name)
            before = await snapshot(redis)
            between = f"must be between {lo} and {hi}"
            refused_for(await route.call(**{name: lo - 1}), name, between)
            refused_for(await route.call(**{name: hi + 1}), name, between)
            for junk in ("1_0", " 1", "\uff11", "1.0", "9" * 5000):
                refused_for(await route.call(**{name: junk}), name, "must be an integer")
            assert await snapshot(redis) == before
            not_refused_for(await route.call(**{name: lo}), name)
            not_refused_for(await route.call(**{name: hi}), name)
            walked.append(f"{method} {path} {name}")
    # the walk covered the pages of both API styles, the audit trail and the violations
    assert {
        "GET /api/conversation/list limit",
        "GET /api/conversation/messages offset",
        "GET /conversation take",
        "GET /conversation/{conversation_id}/messages skip",
        "GET /admin/events take",
        "GET /policy/violations skip",
    } <= set(walked)


async def test_every_documented_default_is_the_one_used(client, admin, conversation, document):
    """The pages that echo their counts: absent, the documented default; given, the value."""
    echoed = 0
    for method, path, params in query_operations(document):
        route = Route(client, admin, method, path, params, conversation)
        answer = (await route.call()).json()
        for p in params:
            if p["schema"].get("type") == "integer" and p["name"] in answer:
                assert answer[p["name"]] == p["schema"]["default"], (path, p["name"])
                given = p["schema"]["minimum"] + 1
                assert (await route.call(**{p["name"]: given})).json()[p["name"]] == given
                echoed += 1
    assert echoed == 4  # limit/offset and take/skip of the two message pages


async def test_every_required_parameter_dates_and_patterns(
    client, admin, conversation, document, redis
):
    before = await snapshot(redis)
    checked = set()
    for method, path, params in query_operations(document):
        route = Route(client, admin, method, path, params, conversation)
        for p in params:
            name, schema = p["name"], p["schema"]
            if p.get("required"):
                refused_for(await route.call(**{name: None}), name, "query parameter is required")
                refused_for(await route.call(**{name: ""}), name, "query parameter is required")
                checked.add("required")
            if "ISO 8601" in p.get("description", ""):
                refused_for(await route.call(**{name: "2024-13-01"}), name, "not an ISO 8601")
                not_refused_for(await route.call(**{name: "2024-01-15"}), name)
                checked.add("date")
            if "pattern" in schema and name != "last_event_id":  # the stream checks that one
                refused_for(await route.call(**{name: "not-an-id!"}), name, "")
                not_refused_for(await route.call(**{name: "1700000000000-0"}), name)
                checked.add("pattern")
    assert checked == {"required", "date", "pattern"}
    assert await snapshot(redis) == before


async def test_a_date_range_the_wrong_way_round_names_from(client, admin, conversation, document):
    ranged = 0
    for method, path, params in query_operations(document):
        if {"from", "to"} <= {p["name"] for p in params}:
            r = await Route(client, admin, method, path, params, conversation).call(
                **{"from": "2024-02-01", "to": "2024-01-01"}
            )
            refused_for(r, "from", "must not be after to")
            ranged += 1
    assert ranged == 4  # conversations, the audit trail, violations, usage


def test_handlers_read_their_query_only_through_a_query_model():
    """A parameter read by hand would have bounds the document does not know."""
    by_hand = re.compile(r"query_params(\.get\(|\[)")
    for module in API.rglob("*.py"):
        if module.name != "queries.py":
            assert not by_hand.search(module.read_text()), f"{module}: use read_query()"


async def test_the_documented_last_event_id_pattern_is_what_a_replay_accepts(
    client, alice, document, redis
):
    """The pattern is the format the replay checks (with its own code); beyond it, the id
    must also name this stream's message."""
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "demo")
    mid = (await client.chat(alice, session["id"], "hi")).events[0].json["message_id"]
    op = document["paths"]["/api/conversation/stream"]["get"]
    patterns = {
        p["name"]: p["schema"]["pattern"]
        for p in op["parameters"]
        if p["name"] in ("last_event_id", "Last-Event-ID")
    }
    assert len(set(patterns.values())) == 1 and len(patterns) == 2
    pattern = patterns["last_event_id"]
    before = await snapshot(redis)
    for value in (
        f"{mid}:1",
        f"{mid}:0",
        f"{mid}:" + "9" * 18,
        f"{mid}:" + "9" * 19,
        f"{mid}:-1",
        f"{mid}:1a",
        f"{mid}:",
        f"{mid}:\u00b2",
        ":1",
        "no-colon",
    ):
        for where in ("query", "header"):
            query = {"org_id": ORG, "message_id": mid}
            headers = bearer(alice)
            if where == "query":
                query["last_event_id"] = value
            else:
                headers["Last-Event-ID"] = value.encode()  # raw bytes: ² is not ASCII
            r = await client.http.get("/api/conversation/stream", params=query, headers=headers)
            if re.fullmatch(pattern, value):
                assert r.status_code == 200, (value, where, r.text)
            else:
                assert r.status_code == 400, (value, where)
                assert r.json()["code"] == "invalid_last_event_id"
    r = await client.http.get(
        "/api/conversation/stream",
        params={"org_id": ORG, "message_id": mid, "last_event_id": "another-message:1"},
        headers=bearer(alice),
    )
    assert re.fullmatch(pattern, "another-message:1") and r.status_code == 400
    assert await snapshot(redis) == before
