"""Browsers on other origins: GATEWAY_CORS_ORIGINS allows exactly the listed origins, for
preflights and real requests, the SSE routes included; a page's native EventSource (no
headers) attaches to a stream with the start event's resume_token."""

from __future__ import annotations

import pytest

from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse

ALLOWED = "http://app.example:5173"
OTHER = "http://evil.example"


def preflight(origin: str, method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


@pytest.fixture
async def cors_client(gateway_factory):
    async with gateway_factory(
        env={"GATEWAY_CORS_ORIGINS": f"{ALLOWED}, http://second.example"}
    ) as c:
        yield c


async def test_preflight_of_the_streaming_post_is_allowed_for_a_listed_origin(cors_client):
    r = await cors_client.http.options(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=preflight(ALLOWED, "POST", "authorization,content-type"),
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "access-control-allow-credentials" not in r.headers  # credentials off
    assert "origin" in r.headers["vary"].lower()


async def test_preflight_of_the_resume_route_allows_last_event_id(cors_client):
    for path in (
        "/api/conversation/stream?org_id=o&message_id=m",
        "/conversation/c/messages/m/stream",
    ):
        r = await cors_client.http.options(
            path, headers=preflight(ALLOWED, "GET", "authorization,last-event-id")
        )
        assert r.status_code == 200, path
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert "last-event-id" in r.headers["access-control-allow-headers"].lower()


async def test_preflight_from_an_unlisted_origin_is_refused(cors_client):
    r = await cors_client.http.options(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=preflight(OTHER, "POST", "authorization,content-type"),
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    # a listed origin asking for a header the gateway does not take is refused too
    r = await cors_client.http.options(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=preflight(ALLOWED, "POST", "authorization,x-unknown-header"),
    )
    assert r.status_code == 400


async def test_a_stream_from_a_listed_origin_carries_the_cors_headers(cors_client, alice, upstream):
    conv = await cors_client.create_conversation(alice)
    session = await cors_client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["a", "b"]))
    async with cors_client.http.stream(
        "POST",
        f"/api/conversation/stream_chat?org_id={ORG}",
        json={"chat_session_id": session["id"], "message": "hi"},
        headers={**bearer(alice), "Origin": ALLOWED},
    ) as r:
        raw = await r.aread()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["access-control-allow-origin"] == ALLOWED
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "retry-after" in exposed
    stream = parse_sse(raw)
    assert stream.text == "ab"

    # what a page's EventSource sends: no Authorization, the resume_token in the URL
    start = stream.events[0].json
    r = await cors_client.http.get(
        "/api/conversation/stream",
        params={"message_id": start["message_id"], "resume_token": start["resume_token"]},
        headers={
            "Origin": ALLOWED,
            "Accept": "text/event-stream",
            "Last-Event-ID": f"{start['message_id']}:1",
        },
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED
    assert parse_sse(r.content).text == "b"  # exactly what came after the Last-Event-ID
    # a first connection can say where to start in the URL; a reconnect's header wins over it
    url_only = {
        "message_id": start["message_id"],
        "resume_token": start["resume_token"],
        "last_event_id": f"{start['message_id']}:1",
    }
    r = await cors_client.http.get(
        "/api/conversation/stream", params=url_only, headers={"Origin": ALLOWED}
    )
    assert parse_sse(r.content).text == "b"
    r = await cors_client.http.get(
        "/api/conversation/stream",
        params=url_only,
        headers={"Origin": ALLOWED, "Last-Event-ID": f"{start['message_id']}:2"},
    )
    assert parse_sse(r.content).text == ""


async def test_errors_reach_the_page_with_cors_headers(cors_client):
    r = await cors_client.http.get(
        f"/api/conversation/list?org_id={ORG}", headers={"Origin": ALLOWED}
    )
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["access-control-allow-origin"] == ALLOWED  # so the page can read why


async def test_a_request_from_an_unlisted_origin_gets_no_cors_headers(cors_client, alice):
    r = await cors_client.http.get(
        f"/api/conversation/list?org_id={ORG}", headers={**bearer(alice), "Origin": OTHER}
    )
    assert "access-control-allow-origin" not in r.headers  # the browser withholds the answer


async def test_without_the_setting_no_origin_is_allowed(client, alice):
    r = await client.http.options(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=preflight(ALLOWED, "POST", "authorization,content-type"),
    )
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    r = await client.http.get(
        f"/api/conversation/list?org_id={ORG}", headers={**bearer(alice), "Origin": ALLOWED}
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_pages_are_served_without_a_token(client):
    for path, kind in (
        ("/", "text/html"),
        ("/docs", "text/html"),
        ("/static/playground.js", "javascript"),
        ("/static/sse.js", "javascript"),
        ("/openapi.json", "application/json"),
    ):
        r = await client.http.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"], path
    assert (await client.http.get("/static/nope.js")).status_code == 404
