"""POST /v1/responses and GET /v1/responses/{id} through the official openai SDK and raw
HTTP, a real Redis and the fake upstream (an OpenAI and an Anthropic model behind the one
endpoint): text and tool calls streamed and not, the Responses API's state as stored
conversations (previous_response_id continuing one, who may), store: false, policies, limits,
and every refusal in OpenAI's error shape with what Redis holds checked."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import json

import openai
import pytest

from gateway.api.schemas.openai_responses import ResponseStreamFrame
from gateway.storage import keys
from tests.api.compat.support import (
    GOVERNED_TOML,
    freeze_limits_clock,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    snapshot,
    stored_messages,
    strip_pings,
    usage,
)
from tests.fake_upstream import FakeToolCall, Reply
from tests.support import bearer, make_jwt

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PATHS = {"gpt": "/v1/chat/completions", "claude": "/v1/messages"}


async def conversations(redis) -> list[str]:
    """The ids of every stored conversation (each has its hash)."""
    found = []
    for key in await redis.keys(keys.CONVERSATION_KEYS):
        name = key.decode()
        if name.endswith("}"):  # the conversation's hash, gw:{c:<id>}
            found.append(name.split("{c:", 1)[1].rstrip("}"))
    return sorted(set(found))


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_sdk_creates_a_response_and_it_is_stored(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key("kim")
    upstream.script(Reply(chunks=["Vector ", "databases."], input_tokens=11, output_tokens=2))
    sdk = openai_client(gateway_server, key.key)

    response = await sdk.responses.create(
        model=model, instructions="Be brief.", input="What are vector databases?"
    )

    assert response.id.startswith("resp_") and response.object == "response"
    assert (response.status, response.model, response.output_text) == (
        "completed",
        model,
        "Vector databases.",
    )
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 2)
    assert response.usage.total_tokens == 13
    (sent,) = upstream.requests
    assert sent.path == PATHS[model]
    if model == "gpt":
        assert sent.body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What are vector databases?"},
        ]
    else:
        assert sent.body["system"] == "Be brief."
    # the response is a conversation of its own: the prompt and the answer
    (cid,) = await conversations(redis)
    stored = await stored_messages(redis, cid)
    assert [(m["role"], m["content"], m["status"]) for m in stored] == [
        ("user", "What are vector databases?", "complete"),
        ("assistant", "Vector databases.", "complete"),
    ]
    assert response.id == "resp_" + stored[1]["id"].replace("-", "")
    assert (await usage(redis))[f"tokens_in:{model}"] == 11


async def test_sdk_streams_a_response_with_its_events(gateway_server, client, make_key, upstream):
    key = await make_key()
    upstream.script(Reply(chunks=["one ", "two ", "three"], input_tokens=3, output_tokens=3))
    sdk = openai_client(gateway_server, key.key)

    async with sdk.responses.stream(model="gpt", input="Count") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()

    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 3
    assert final.output_text == "one two three"
    assert final.usage.output_tokens == 3


async def test_the_stream_frames_are_as_documented(client, make_key, upstream):
    key = await make_key()
    upstream.script(
        Reply(
            chunks=['Let "me" ', "check.\n"],
            tool_calls=[FakeToolCall("get_weather", ['{"city":', '"Paris"}'])],
        )
    )

    async with client.http.stream(
        "POST",
        "/v1/responses",
        json={"model": "gpt", "input": "Weather?", "tools": [WEATHER], "stream": True},
        headers=bearer(key.key),
    ) as r:
        raw = strip_pings(await r.aread())

    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = []
    for chunk in raw.decode().split("\n\n"):
        if chunk:
            event, data = chunk.split("\n")
            frames.append(
                ResponseStreamFrame.model_validate(
                    {"event": event.removeprefix("event: "), "data": json.loads(data[6:])}
                )
            )
    assert [f.data.sequence_number for f in frames] == list(range(len(frames)))
    done = frames[-1].data
    assert done.type == "response.completed"
    output = [item.model_dump(exclude_none=True) for item in done.response.output]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[0]["content"][0]["text"] == 'Let "me" check.\n'
    assert (output[1]["name"], output[1]["arguments"]) == ("get_weather", '{"city":"Paris"}')


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_a_function_tool_round_trip_continues_the_stored_conversation(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key("kim")
    sdk = openai_client(gateway_server, key.key)
    upstream.script(
        Reply(tool_calls=[FakeToolCall("get_weather", '{"city":"Paris"}', id="call_w1")]),
        Reply(chunks=["It is ", "18C in Paris."]),
    )

    first = await sdk.responses.create(model=model, input="Weather in Paris?", tools=[WEATHER])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert (call.name, call.arguments) == ("get_weather", '{"city":"Paris"}')
    second = await sdk.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C"}],
        tools=[WEATHER],
    )

    assert second.output_text == "It is 18C in Paris."
    assert second.previous_response_id == first.id
    # the upstream saw the whole exchange, loaded from Redis
    history = upstream.requests[1].body["messages"]
    if model == "gpt":
        assert [m["role"] for m in history] == ["user", "assistant", "tool"]
        assert history[1]["tool_calls"][0]["id"] == call.call_id
        assert history[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C"}
    else:
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        assert history[1]["content"][-1]["type"] == "tool_use"
        assert history[2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": call.call_id,
            "content": "18C",
        }
    # one conversation: the question, the call, its result, the answer
    (cid,) = await conversations(redis)
    stored = await stored_messages(redis, cid)
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["tool_calls"][0]["name"] == "get_weather"
    assert stored[2]["parts"][0]["type"] == "tool_result"


async def test_a_stored_response_can_be_retrieved(gateway_server, client, make_key, upstream):
    key = await make_key()
    sdk = openai_client(gateway_server, key.key)
    upstream.script(Reply(chunks=["Paris."], input_tokens=4, output_tokens=1))
    made = await sdk.responses.create(model="gpt", input="Capital of France?")

    got = await sdk.responses.retrieve(made.id)

    assert (got.id, got.status, got.output_text, got.model) == (
        made.id,
        "completed",
        "Paris.",
        "gpt",
    )
    assert (got.usage.input_tokens, got.usage.output_tokens) == (4, 1)


async def test_store_false_keeps_nothing_but_the_usage(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    sdk = openai_client(gateway_server, key.key)
    upstream.script(Reply(chunks=["ok"], input_tokens=2, output_tokens=1))

    made = await sdk.responses.create(model="gpt", input="hi", store=False)

    assert made.store is False and made.output_text == "ok"
    assert await redis.keys(keys.CONVERSATION_KEYS) == []
    assert (await usage(redis))["tokens_in:user:kim"] == 2
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(made.id)
    before = await snapshot(redis)
    with pytest.raises(openai.NotFoundError) as err:
        await sdk.responses.create(model="gpt", input="again", previous_response_id=made.id)
    assert err.value.code == "response_not_found"
    assert await snapshot(redis) == before and len(upstream.requests) == 1


async def test_another_orgs_or_users_response_is_not_found(
    gateway_server, client, make_key, upstream, redis
):
    owner = openai_client(gateway_server, (await make_key("kim")).key)
    upstream.script(Reply(chunks=["secret plans"]))
    made = await owner.responses.create(model="gpt", input="Our plans?")
    outsider = openai_client(gateway_server, (await make_key("eve", org="org-2")).key)
    colleague = openai_client(gateway_server, (await make_key("bob")).key)
    before = await snapshot(redis)

    for caller in (outsider, colleague):
        with pytest.raises(openai.NotFoundError) as err:  # 404, not 403: nothing is revealed
            await caller.responses.create(
                model="gpt", input="Tell me", previous_response_id=made.id
            )
        assert err.value.code == "response_not_found"
        with pytest.raises(openai.NotFoundError):
            await caller.responses.retrieve(made.id)

    assert await snapshot(redis) == before
    assert len(upstream.requests) == 1


async def test_a_workspace_admin_may_read_a_users_response_but_not_continue_it(
    gateway_server, client, make_key, upstream, redis
):
    """The conversations' role rules: a workspace admin reads the workspace's conversations
    and prompts only their own (an org admin may prompt any of the org's)."""
    made = await openai_client(gateway_server, (await make_key("kim")).key).responses.create(
        model="gpt", input="hello"
    )
    wanda = make_jwt("wanda", "org-1", "workspace_admin", workspaces=["ws-1"], managed=["ws-1"])
    admin = openai_client(gateway_server, wanda)
    before = await snapshot(redis)

    assert (await admin.responses.retrieve(made.id)).id == made.id
    with pytest.raises(openai.PermissionDeniedError):
        await admin.responses.create(model="gpt", input="x", previous_response_id=made.id)

    after = await snapshot(redis)
    events = keys.events("org-1").encode()
    (denied,) = after.pop(events)[len(before.pop(events)) :]  # the audit trail of the denial
    assert denied[1][b"type"] == b"access_denied" and denied[1][b"actor"] == b"wanda"
    assert after == before  # nothing else: no message, no upstream call
    assert len(upstream.requests) == 1


async def test_only_the_latest_response_of_a_conversation_continues(
    gateway_server, client, make_key, upstream, redis
):
    sdk = openai_client(gateway_server, (await make_key()).key)
    first = await sdk.responses.create(model="gpt", input="one")
    second = await sdk.responses.create(model="gpt", input="two", previous_response_id=first.id)
    before = await snapshot(redis)

    with pytest.raises(openai.BadRequestError) as err:
        await sdk.responses.create(model="gpt", input="branch", previous_response_id=first.id)

    assert err.value.param == "previous_response_id"
    assert second.id in err.value.message
    assert await snapshot(redis) == before


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"input": [{"type": "file_search_call", "id": "fs_1"}]}, "input.0.type"),
        ({"background": True}, "background"),
        ({"previous_response_id": "resp_nothing"}, None),
        ({"input": [{"role": "user", "content": "x"}] * 1001}, "input"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "nope"}, None),
    ],
)
async def test_refusals_store_nothing(client, make_key, upstream, redis, fields, param):
    key = await make_key()
    before = await snapshot(redis)

    r = await client.http.post(
        "/v1/responses", json={"model": "gpt", "input": "hi", **fields}, headers=bearer(key.key)
    )

    assert r.status_code in (400, 404), r.text
    error = r.json()["error"]
    assert error["message"] and error["param"] == param
    assert upstream.requests == []
    assert await snapshot(redis) == before


async def test_deeply_nested_input_is_refused_before_parsing(client, make_key, upstream, redis):
    key = await make_key()
    nested: object = "x"
    for _ in range(40):
        nested = [nested]
    before = await snapshot(redis)

    r = await client.http.post(
        "/v1/responses",
        json={"model": "gpt", "input": [{"role": "user", "content": nested}]},
        headers=bearer(key.key),
    )

    assert r.status_code == 400
    assert "nested" in r.json()["error"]["message"]
    assert await snapshot(redis) == before


async def test_structured_output_and_reasoning_are_forwarded(
    gateway_server, client, make_key, upstream
):
    sdk = openai_client(gateway_server, (await make_key()).key)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }

    made = await sdk.responses.create(
        model="gpt",
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
        reasoning={"effort": "low"},
    )

    sent = upstream.requests[0].body
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema
    assert sent["reasoning_effort"] == "low"
    assert set(json.loads(made.output_text)) == {"city"}
    assert made.usage.output_tokens_details.reasoning_tokens == 12  # the fake's for an effort


async def test_anthropic_thinking_is_a_reasoning_item_with_its_signature_on_request(
    gateway_server, client, make_key, upstream
):
    sdk = openai_client(gateway_server, (await make_key()).key)
    upstream.script(Reply(reasoning=["Let me ", "think."], chunks=["Done."]))

    made = await sdk.responses.create(
        model="claude",
        input="Think first",
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
    )

    reasoning, message = made.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "Let me think."
    assert reasoning.encrypted_content  # the thinking block's signature, to hand back
    assert message.content[0].text == "Done."
    assert upstream.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_policies_and_rate_limits_apply(
    gateway_factory, make_key, upstream, redis, monkeypatch
):
    freeze_limits_clock(monkeypatch)
    async with gateway_factory(extra_toml=GOVERNED_TOML) as client:
        key = await make_key("kim")
        sdk = openai.AsyncOpenAI(
            base_url=f"{client.http.base_url}/v1", api_key=key.key, max_retries=0
        )

        # pre: refused before the provider is called; the conversation keeps the prompt, blocked
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.responses.create(model="gpt", input="What is Bluebird?")
        assert err.value.code == "policy_blocked" and upstream.requests == []
        (cid,) = await conversations(redis)
        assert [m["status"] for m in await stored_messages(redis, cid)] == ["blocked"]

        # during: an error event and response.failed before the word goes out
        upstream.script(Reply(chunks=["The ", "bluebird ", "plan"]))
        async with sdk.responses.stream(model="gpt", input="The plan?") as stream:
            events = [event async for event in stream]
        kinds = [e.type for e in events]
        assert kinds[-2:] == ["error", "response.failed"]
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert "bluebird" not in text
        assert events[-1].response.error.code == "policy_blocked"

        # the fourth request of the minute: 429, and no conversation is left listed for it
        await sdk.responses.create(model="gpt", input="fine")
        listed = await redis.zcard(keys.org_index("org-1"))
        with pytest.raises(openai.RateLimitError) as err:
            await sdk.responses.create(model="gpt", input="fine")
        assert int(err.value.response.headers["retry-after"]) >= 1
        assert await redis.zcard(keys.org_index("org-1")) == listed


SECRET = "sk-proj-" + "Zq8vT3mK9pLw2XcR7nB4yHs6dFj1gUe5aQo0iVt"


async def test_a_secret_split_across_argument_fragments_never_reaches_the_client(
    client, make_key, upstream, redis
):
    """The built-in secrets-in-answer policy (during stage, block) reads a function call's
    arguments as they stream: the call ends the stream before any piece of the key leaves."""
    key = await make_key()
    arguments = json.dumps({"to": "bob@example.com", "body": f"the key is {SECRET}"})
    fragments = [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    upstream.script(Reply(tool_calls=[FakeToolCall("send_email", fragments)], delay=0.002))

    async with client.http.stream(
        "POST",
        "/v1/responses",
        json={"model": "gpt", "input": "Mail Bob the key", "stream": True},
        headers=bearer(key.key),
    ) as r:
        raw = (await r.aread()).decode()

    assert SECRET not in raw
    for i in range(len(SECRET) - 7):  # not even a recognisable piece of it
        assert SECRET[i : i + 8] not in raw
    assert "event: error" in raw and raw.rstrip().split("\n")[-2] == "event: response.failed"
    (cid,) = await conversations(redis)
    answer = (await stored_messages(redis, cid))[-1]
    assert answer["status"] == "blocked" and SECRET not in json.dumps(answer)


async def test_a_response_being_generated_is_409_until_it_ends(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key()
    sdk = openai_client(gateway_server, key.key)
    upstream.script(Reply(chunks=["slow "] * 20, delay=0.05))

    async with sdk.responses.stream(model="gpt", input="Take your time") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                rid = event.item_id  # msg_<answer id>_0
                break
        made = "resp_" + rid.split("_")[1]
        with pytest.raises(openai.ConflictError) as err:
            await sdk.responses.retrieve(made)
        assert err.value.code == "response_in_progress"
        assert err.value.response.headers["retry-after"] == "1"
        async for _ in stream:
            pass

    assert (await sdk.responses.retrieve(made)).output_text == "slow " * 20


async def test_usage_reports_cached_and_reasoning_tokens(
    gateway_server, client, make_key, upstream
):
    sdk = openai_client(gateway_server, (await make_key()).key)
    upstream.script(
        Reply(chunks=["ok"], input_tokens=30, cached_tokens=20, reasoning=["hm"], output_tokens=5)
    )

    made = await sdk.responses.create(model="claude", input="hi", reasoning={"effort": "low"})

    usage = made.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (30, 20)
    assert usage.output_tokens == 5 and usage.output_tokens_details.reasoning_tokens == 1


async def test_every_response_leaves_a_prompt_sent_audit_event(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    sdk = openai_client(gateway_server, key.key)

    made = await sdk.responses.create(model="gpt", input="hi")

    await snapshot(redis)  # the audit writer is fire-and-forget: let it land
    events = [e[1] for e in await redis.xrange(keys.events("org-1"))]
    kinds = [e[b"type"] for e in events]
    assert kinds == [b"conversation_created", b"prompt_sent"]
    sent = events[1]
    assert sent[b"actor"] == b"kim" and sent[b"model"] == b"gpt"
    assert made.id == "resp_" + sent[b"message_id"].decode().replace("-", "")


async def test_continuing_with_store_false_reads_the_history_and_keeps_it_unchanged(
    gateway_server, client, make_key, upstream, redis
):
    sdk = openai_client(gateway_server, (await make_key()).key)
    upstream.script(Reply(chunks=["Hello Ada."]), Reply(chunks=["You are Ada."]))
    first = await sdk.responses.create(
        model="gpt",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "I'm Ada"}]}],
    )
    (cid,) = await conversations(redis)
    assert (await redis.hget(keys.conversation(cid), "title")) == b"I'm Ada"
    before = await stored_messages(redis, cid)

    second = await sdk.responses.create(
        model="gpt", input="Who am I?", previous_response_id=first.id, store=False
    )

    assert second.output_text == "You are Ada."
    assert [m["content"] for m in upstream.requests[1].body["messages"]] == [
        "I'm Ada",
        "Hello Ada.",
        "Who am I?",
    ]
    assert await stored_messages(redis, cid) == before  # not appended
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(second.id)
