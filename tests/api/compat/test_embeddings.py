"""POST /v1/embeddings through the official openai SDK, LangChain's OpenAIEmbeddings and raw
HTTP, a real Redis and the fake upstream behind the gateway: vectors in order (floats and
base64), usage counted like a turn's, policies before the provider, and every refusal in
OpenAI's error shape with Redis unchanged."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import base64
import json
import struct

import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from gateway.storage import keys
from gateway.turn.direct import MAX_EMBEDDING_INPUTS
from tests.api.compat.support import (
    GOVERNED_TOML,
    freeze_limits_clock,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    snapshot,
    usage,
)
from tests.fake_upstream import EMBEDDING_DIMENSIONS, Reply, _embedding
from tests.support import bearer

TEXTS = ["vector databases", "index embeddings", "for nearest neighbours"]


def counted(tokens: int, model: str, key_id: str, user: str = "kim") -> dict[str, int]:
    """The org's usage hash after one embeddings call (no output tokens)."""
    return {
        "tokens_in": tokens,
        "tokens_out": 0,
        f"tokens_in:{model}": tokens,
        f"tokens_out:{model}": 0,
        f"tokens_in:user:{user}": tokens,
        f"tokens_out:user:{user}": 0,
        f"tokens_in:key:{key_id}": tokens,
        f"tokens_out:key:{key_id}": 0,
    }


async def test_sdk_embeds_in_order_and_the_tokens_are_counted(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    upstream.script(Reply(input_tokens=7))

    result = await openai_client(gateway_server, key.key).embeddings.create(
        model="gpt", input=TEXTS
    )

    # the SDK asks for base64 by default and decodes it: the upstream's own vectors
    assert [e.index for e in result.data] == [0, 1, 2]
    for item, text in zip(result.data, TEXTS, strict=True):
        assert item.embedding == pytest.approx(_embedding(text, EMBEDDING_DIMENSIONS), abs=1e-6)
    assert (result.model, result.usage.prompt_tokens, result.usage.total_tokens) == ("gpt", 7, 7)
    (sent,) = upstream.requests
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "gpt-4o-mini", "input": TEXTS, "encoding_format": "base64"}
    assert await usage(redis) == counted(7, "gpt", key.key_id)
    assert await redis.keys(keys.CONVERSATION_KEYS) == []


async def test_floats_dimensions_and_user_are_forwarded(client, make_key, upstream):
    key = await make_key()

    r = await client.http.post(
        "/v1/embeddings",
        json={
            "model": "gpt",
            "input": "one text",
            "encoding_format": "float",
            "dimensions": 4,
            "user": "u-7",
        },
        headers=bearer(key.key),
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert body["data"] == [
        {"object": "embedding", "index": 0, "embedding": _embedding("one text", 4)}
    ]
    assert upstream.requests[0].body == {
        "model": "gpt-4o-mini",
        "input": ["one text"],
        "encoding_format": "float",
        "dimensions": 4,
        "user": "u-7",
    }


async def test_base64_vectors_pass_through_unchanged(client, make_key, upstream):
    key = await make_key()

    r = await client.http.post(
        "/v1/embeddings",
        json={"model": "gpt", "input": ["a", "b"], "encoding_format": "base64"},
        headers=bearer(key.key),
    )

    vectors = [
        struct.unpack(f"<{EMBEDDING_DIMENSIONS}f", base64.b64decode(item["embedding"]))
        for item in r.json()["data"]
    ]
    assert vectors == [
        pytest.approx(_embedding(t, EMBEDDING_DIMENSIONS), abs=1e-6) for t in ("a", "b")
    ]


async def test_token_arrays_are_refused_while_pre_policies_run(client, make_key, upstream, redis):
    """The built-in baseline checks prompts for secrets: token ids would pass it unread."""
    key = await make_key()
    before = await snapshot(redis)

    r = await client.http.post(
        "/v1/embeddings",
        json={"model": "gpt", "input": [[1, 2, 3], [4, 5]], "encoding_format": "float"},
        headers=bearer(key.key),
    )

    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == ("input.0", "unsupported_value")
    assert "check_embedding_ctx_length" in error["message"]  # what a LangChain user sets
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_langchain_openai_embeddings(gateway_server, client, make_key, upstream, redis):
    key = await make_key("kim")
    embedder = OpenAIEmbeddings(
        model="gpt",
        base_url=f"{gateway_server.url}/v1",
        api_key=key.key,
        max_retries=0,
        # LangChain would tokenize with tiktoken first (and download its tables): a
        # gateway's model is not necessarily OpenAI's, so texts go as they are
        check_embedding_ctx_length=False,
    )

    documents = await embedder.aembed_documents(TEXTS)
    query = await embedder.aembed_query("nearest neighbours")

    assert documents == [
        pytest.approx(_embedding(t, EMBEDDING_DIMENSIONS), abs=1e-6) for t in TEXTS
    ]
    assert query == pytest.approx(_embedding("nearest neighbours", EMBEDDING_DIMENSIONS), abs=1e-6)
    assert [r.body["input"] for r in upstream.requests] == [TEXTS, ["nearest neighbours"]]
    # 2 + 2 + 3 words, then 2: the fake counts words
    assert await usage(redis) == counted(9, "gpt", key.key_id)


@pytest.mark.parametrize("model", ["claude", "demo"])
async def test_a_model_without_embeddings_is_400_and_nothing_changes(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key()
    before = await snapshot(redis)

    with pytest.raises(openai.BadRequestError) as err:
        await openai_client(gateway_server, key.key).embeddings.create(model=model, input="x")

    assert err.value.code == "unsupported_parameter"
    assert "embeddings" in err.value.message
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_an_unknown_model_is_not_found(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    before = await snapshot(redis)

    with pytest.raises(openai.NotFoundError) as err:
        await openai_client(gateway_server, key.key).embeddings.create(model="nope", input="x")

    assert err.value.code == "model_not_found"
    assert await snapshot(redis) == before


async def test_an_upstream_400_stays_a_400_with_its_message(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key()
    upstream.script(Reply(status=400, error_message="dimensions: not supported by this model"))
    before = await snapshot(redis)

    with pytest.raises(openai.BadRequestError) as err:
        await openai_client(gateway_server, key.key).embeddings.create(
            model="gpt", input="x", dimensions=3
        )

    assert err.value.body["message"] == "dimensions: not supported by this model"
    assert len(upstream.requests) == 1
    assert await snapshot(redis) == before  # nothing was embedded, nothing counted


async def test_an_upstream_failure_is_502(gateway_server, client, make_key, upstream, redis):
    key = await make_key()
    upstream.script(Reply(status=503))

    with pytest.raises(openai.InternalServerError) as err:
        await openai_client(gateway_server, key.key).embeddings.create(model="gpt", input="x")

    assert err.value.status_code == 502
    assert await usage(redis) == {}


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}, "input"),  # too many inputs
        ({"input": ["x" * 150_000, "y" * 60_000]}, "input"),  # too much text in all
        ({"input": []}, "input"),
        ({"input": ["fine", ""]}, "input.1"),
        ({"input": [[1, -2]]}, "input.0"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": {"text": "x"}}, "input.str"),  # neither a text nor a list
    ],
)
async def test_abusive_or_malformed_input_is_400_before_anything(
    client, make_key, upstream, redis, payload, param
):
    key = await make_key()
    before = await snapshot(redis)

    r = await client.http.post(
        "/v1/embeddings", json={"model": "gpt", **payload}, headers=bearer(key.key)
    )

    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_policies_and_rate_limits_apply(
    gateway_factory, make_key, upstream, redis, monkeypatch
):
    freeze_limits_clock(monkeypatch)
    async with gateway_factory(extra_toml=GOVERNED_TOML) as client:
        key = await make_key()
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=key.key, max_retries=0
        )

        # pre: a blocked input anywhere in the list: 400, the provider never called
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.embeddings.create(model="gpt", input=["fine", "What is Bluebird?"])
        assert err.value.code == "policy_blocked" and "input.1" in err.value.message
        assert upstream.requests == [] and await usage(redis) == {}
        (violation,) = await redis.xrange(keys.violations("org-1"))
        record = json.loads(violation[1][b"v"])
        assert (record["policy_id"], record["action"], record["stage"]) == (
            "codename",
            "block",
            "pre",
        )
        assert record["conversation_id"] is None and record["user_id"] == "kim"

        # admitted: the answer carries the limit's headers (the blocked one counted too)
        answer = await sdk.embeddings.with_raw_response.create(model="gpt", input="fine")
        assert answer.headers["x-ratelimit-limit"] == "3"
        assert answer.headers["x-ratelimit-remaining"] == "1"
        await sdk.embeddings.create(model="gpt", input="fine")
        upstream.reset()

        # the fourth request of the minute: 429 with Retry-After, in OpenAI's shape
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.embeddings.create(model="gpt", input="fine")
        assert int(err.value.response.headers["retry-after"]) >= 1
        assert err.value.body["type"] == "requests"
        assert upstream.requests == []
