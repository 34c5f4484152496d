"""Any /v1/ path the gateway does not serve answers 404 in the caller's API's error shape
(Anthropic's when the request carries anthropic-version), so the official SDKs raise their
NotFoundError with our message rather than "404 status code (no body)"."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import anthropic
import openai
import pytest

from tests.api.compat.support import (
    anthropic_client,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    snapshot,
)
from tests.support import bearer


async def test_the_openai_sdk_raises_not_found_with_our_message(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key()
    before = await snapshot(redis)

    with pytest.raises(openai.NotFoundError) as err:
        await openai_client(gateway_server, key.key).batches.list()

    assert err.value.status_code == 404
    assert err.value.code == "unknown_url"
    assert "no route for GET /v1/batches" in err.value.message
    assert "/v1/responses" in err.value.message  # what is served instead
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_the_anthropic_sdk_raises_not_found_with_our_message(
    gateway_server, client, make_key, upstream
):
    key = await make_key()

    with pytest.raises(anthropic.NotFoundError) as err:
        await anthropic_client(gateway_server, key.key).messages.batches.list()

    assert err.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": err.value.body["error"]["message"]},
    }
    assert "no route for GET /v1/messages/batches" in err.value.body["error"]["message"]


async def test_a_served_path_with_another_method_is_405_with_allow(client):
    r = await client.http.get("/v1/chat/completions")

    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"

    r = await client.http.delete("/v1/messages", headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 405
    assert r.json()["type"] == "error"


async def test_no_token_is_needed_to_learn_a_route_does_not_exist(client, redis):
    before = await snapshot(redis)

    r = await client.http.post("/v1/assistants", json={})

    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert await snapshot(redis) == before  # not even the auth cache was asked


async def test_paths_outside_v1_keep_the_contracts_shape(client, make_key):
    key = await make_key()

    r = await client.http.get("/api/nope", headers=bearer(key.key))

    assert r.status_code == 404
    assert r.json() == {
        "success": False,
        "code": "not_found",
        "message": "no route for GET /api/nope",
    }


async def test_a_huge_unknown_path_is_cut_in_the_message(client):
    r = await client.http.get("/v1/" + "x" * 5000)

    assert r.status_code == 404
    assert len(r.json()["error"]["message"]) < 600
