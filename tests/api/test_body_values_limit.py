"""A body of a few hundred KB made of tens of thousands of tiny keys or elements (a 90,000-key
body under 1 MiB cost ~300 ms of event-loop CPU) is refused 413 before it is parsed, on every
route that reads JSON, the compatible ones included; bodies at the limit, and long prompts
full of commas, colons and quotes (which look like structure to a quick count), still pass.
Each refusal leaves Redis as it was and the upstream untouched."""

from __future__ import annotations

import json

import pytest

from gateway.api.inputs import MAX_JSON_VALUES
from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import bearer

CREATE = f"/api/conversation/create?org_id={ORG}"
N = 90_000
ATTACKS = {
    "90k-keys": "{" + ",".join(f'"k{i}":1' for i in range(N)) + "}",
    "90k-strings": '{"title": "t", "a": [' + ",".join(['""'] * N) + "]}",
    "300k-numbers": '{"title": "t", "a": [' + ",".join(["1"] * 300_000) + "]}",
    "300k-empty-arrays": '{"title": "t", "a": [' + ",".join(["[]"] * 300_000) + "]}",
    "150k-empty-objects": '{"title": "t", "a": [' + ",".join(["{}"] * 150_000) + "]}",
    "19k-strings-and-numbers": '{"title": "t", "s": ['
    + ",".join(['"x"'] * 19_000)
    + '], "n": ['
    + ",".join(["0"] * 30_000)
    + "]}",
    "50k-nested-objects": '{"x": ' * 50_000 + "1" + "}" * 50_000,
    "keys-ending-in-an-escaped-backslash": "{"
    + ",".join(f'"k{i}\\\\":1' for i in range(N // 2))
    + "}",
}


@pytest.mark.parametrize("shape", list(ATTACKS))
async def test_a_body_of_too_many_tiny_values_is_413_before_parsing(client, alice, redis, shape):
    body = ATTACKS[shape].encode()
    assert len(body) < 1_048_576  # under the size limit: only the count refuses it
    before = await snapshot(redis)
    r = await client.http.post(
        CREATE, content=body, headers={**bearer(alice), "Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert r.json() == {
        "success": False,
        "code": "payload_too_large",
        "message": f"request body holds more than {MAX_JSON_VALUES} JSON keys and values",
    }
    assert await snapshot(redis) == before


async def test_the_compatible_apis_refuse_it_in_their_own_shape(client, alice, redis, upstream):
    messages = [{"role": "user", "content": "hi"}] * 10_000  # 5 keys and values each
    before = await snapshot(redis)
    r = await client.http.post(
        "/v1/chat/completions",
        json={"model": "gpt", "messages": messages},
        headers=bearer(alice),
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert upstream.requests == [] and await snapshot(redis) == before


async def test_bodies_at_the_limit_and_prompts_full_of_punctuation_pass(client, alice, session):
    # 5 keys and values per message: 19,954 in all, in a body the compatible API accepts
    history = [{"role": "user", "content": "hi"}] * 3_990
    r = await client.http.post(
        "/v1/chat/completions",
        json={"model": "demo", "messages": history},
        headers=bearer(alice),
    )
    assert r.status_code == 200, r.text
    # 19,990 elements: just under the limit
    near = '{"title": "t", "a": [' + ",".join(["1"] * 19_990) + "]}"
    r = await client.http.post(
        CREATE, content=near, headers={**bearer(alice), "Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    # a 190,000-character prompt of CSV and quoted JSON: 40,000 commas, colons and quotes
    prompt = ('a,b,c,"d":{"e":[1,2]}, ' * 8_000)[:190_000]
    r = await client.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        content=json.dumps({"chat_session_id": session["id"], "message": prompt}),
        headers={**bearer(alice), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    stored = await client.messages(alice, session["conversation_id"])
    assert stored["messages"][0]["content"] == prompt


@pytest.fixture
async def session(client, alice):
    conv = await client.create_conversation(alice)
    return await client.create_session(alice, conv["id"], "demo")
