"""Real answers of the Responses, embeddings, legacy-completion and token-count routes (JSON,
every frame of their streams, and their errors) are what the served OpenAPI document says,
down to `additionalProperties: false`: the byte templates cannot drift from the schemas."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

from typing import Any

import pytest

from tests.api.compat.support import make_key  # noqa: F401  (a fixture)
from tests.api.document import documented
from tests.fake_upstream import FakeToolCall, Reply
from tests.support import bearer

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


@pytest.fixture
async def served(client) -> dict[str, Any]:
    return (await client.http.get("/openapi.json")).json()


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_answers_are_as_documented(client, make_key, upstream, served, stream):
    http, auth = client.http, bearer((await make_key()).key)
    upstream.script(
        Reply(
            reasoning=["Hm."],
            chunks=["a", "b"],
            tool_calls=[FakeToolCall("get_weather", '{"city":"Paris"}')],
            cached_tokens=1,
        )
    )
    r = await http.post(
        "/v1/responses",
        headers=auth,
        json={
            "model": "claude",
            "input": "hi",
            "tools": [WEATHER],
            "reasoning": {"effort": "low"},
            "include": ["reasoning.encrypted_content"],
            "stream": stream,
        },
    )
    assert r.status_code == 200, r.text
    documented(served, "POST", "/v1/responses", r)
    if not stream:
        got = await http.get(f"/v1/responses/{r.json()['id']}", headers=auth)
        assert got.status_code == 200, got.text
        documented(served, "GET", "/v1/responses/{response_id}", got)

    # a failure mid-stream: error, then response.failed
    upstream.script(Reply(chunks=["a", "b", "c"], error_after=1))
    r = await http.post(
        "/v1/responses", headers=auth, json={"model": "gpt", "input": "hi", "stream": stream}
    )
    documented(served, "POST", "/v1/responses", r)

    r = await http.post(
        "/v1/responses",
        headers=auth,
        json={"model": "gpt", "input": "hi", "tools": [{"type": "web_search"}]},
    )
    assert r.status_code == 400
    documented(served, "POST", "/v1/responses", r)
    r = await http.get("/v1/responses/resp_0123", headers=auth)
    assert r.status_code == 404
    documented(served, "GET", "/v1/responses/{response_id}", r)


@pytest.mark.parametrize("stream", [False, True])
async def test_legacy_completions_are_as_documented(client, make_key, upstream, served, stream):
    http, auth = client.http, bearer((await make_key()).key)
    upstream.script(Reply(chunks=["a", "b"]))
    usage = {"stream_options": {"include_usage": True}} if stream else {}

    r = await http.post(
        "/v1/completions",
        headers=auth,
        json={"model": "gpt", "prompt": "p", "stream": stream, **usage},
    )
    assert r.status_code == 200, r.text
    documented(served, "POST", "/v1/completions", r)

    r = await http.post("/v1/completions", headers=auth, json={"model": "claude", "prompt": "p"})
    assert r.status_code == 400
    documented(served, "POST", "/v1/completions", r)


async def test_embeddings_and_token_counts_are_as_documented(client, make_key, upstream, served):
    http, auth = client.http, bearer((await make_key()).key)

    for fmt in ("float", "base64"):
        r = await http.post(
            "/v1/embeddings",
            headers=auth,
            json={"model": "gpt", "input": ["a", "b"], "encoding_format": fmt},
        )
        assert r.status_code == 200, r.text
        documented(served, "POST", "/v1/embeddings", r)
    r = await http.post("/v1/embeddings", headers=auth, json={"model": "demo", "input": "a"})
    documented(served, "POST", "/v1/embeddings", r)

    question = [{"role": "user", "content": "hi"}]
    for model in ("claude", "gpt"):
        r = await http.post(
            "/v1/messages/count_tokens", headers=auth, json={"model": model, "messages": question}
        )
        assert r.status_code == 200, r.text
        documented(served, "POST", "/v1/messages/count_tokens", r)
    r = await http.post(
        "/v1/messages/count_tokens", headers=auth, json={"model": "nope", "messages": question}
    )
    assert r.status_code == 404
    documented(served, "POST", "/v1/messages/count_tokens", r)
