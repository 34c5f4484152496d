"""The clients whose default is the Responses API, through the gateway against the fake
upstream: an openai-agents agent with a function tool (on an OpenAI and on an Anthropic
model), and the Node scripts of tests/compat_clients/node (the official Node SDK's
responses.create and responses.stream, embeddings and legacy completions; the Vercel AI
SDK's default openai(model) with a tool). Redis is checked after each."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import asyncio

import openai
import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider
from agents.run import RunConfig

from tests.api.compat.support import (
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    stored_messages,
    usage,
)
from tests.api.compat.test_responses import conversations
from tests.compat_clients import node_clients
from tests.fake_upstream import FakeToolCall, Reply

PATHS = {"gpt": "/v1/chat/completions", "claude": "/v1/messages"}

set_tracing_disabled(True)  # the agents SDK would send its traces to OpenAI


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18C and sunny in {city}"


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_an_openai_agents_agent_calls_its_tool_through_the_gateway(
    gateway_server, client, make_key, upstream, redis, model
):
    key = await make_key("kim")
    upstream.script(
        Reply(tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}')]),
        Reply(chunks=["It is 18C ", "and sunny in Paris."]),
    )
    sdk = openai.AsyncOpenAI(base_url=f"{gateway_server.url}/v1", api_key=key.key, max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=model,
    )

    result = await Runner.run(
        agent,
        "What is the weather in Paris?",
        run_config=RunConfig(model_provider=OpenAIProvider(openai_client=sdk)),
    )

    assert result.final_output == "It is 18C and sunny in Paris."
    first, second = upstream.requests
    assert first.path == second.path == PATHS[model]
    # the agent sent its tool as a function tool; the second call carries the tool's result
    if model == "gpt":
        assert first.body["tools"][0]["function"]["name"] == "get_weather"
        result_turn = second.body["messages"][-1]
        assert result_turn["role"] == "tool"
        assert result_turn["content"] == "18C and sunny in Paris"
    else:
        assert first.body["tools"][0]["name"] == "get_weather"
        (block,) = second.body["messages"][-1]["content"]
        assert block["type"] == "tool_result"
        assert block["content"] == "18C and sunny in Paris"
    # each model call is a stored response (the agent keeps its own history), and counted
    assert len(await conversations(redis)) == 2
    assert (await usage(redis))[f"tokens_out:{model}"] > 0


async def run_node(script: str, env: dict[str, str]) -> dict:
    """Runs one script of tests/compat_clients/node; it prints one JSON line of results."""
    await asyncio.to_thread(node_clients.ensure_installed)
    return await asyncio.to_thread(node_clients.run, [script], env)


async def test_the_node_sdk_creates_and_streams_responses(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    upstream.script(
        Reply(chunks=["Paris ", "is the capital."]),
        Reply(chunks=["one ", "two ", "three"]),
        Reply(chunks=["And ", "Lyon."]),
        Reply(),  # embeddings
        Reply(chunks=["upon ", "a time"]),  # the legacy completion
    )

    got = await run_node(
        "openai_sdk.mjs", {"GATEWAY_URL": gateway_server.url, "GATEWAY_KEY": key.key}
    )

    assert got["created"] == {"status": "completed", "text": "Paris is the capital."}
    assert got["streamed"]["text"] == "one two three"
    assert got["streamed"]["events"][:2] == ["response.created", "response.in_progress"]
    assert got["streamed"]["events"][-1] == "response.completed"
    assert got["continued"] == "And Lyon."
    assert got["embeddings"] == {"count": 2, "dimensions": 8}
    assert got["completion"] == "upon a time"
    assert got["not_found"] == {"status": 404, "type": "NotFoundError"}
    # the continuation ran on the stored conversation: question, answer, question, answer
    continued = upstream.requests[2].body["messages"]
    assert [m["content"] for m in continued] == [
        "Capital of France?",
        "Paris is the capital.",
        "And its second city?",
    ]
    cids = await conversations(redis)
    assert len(cids) == 2
    lengths = sorted([len(await stored_messages(redis, cid)) for cid in cids])
    assert lengths == [2, 4]


async def test_the_ai_sdk_default_openai_model_uses_a_tool(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    upstream.script(
        Reply(tool_calls=[FakeToolCall("weather", '{"city":"Paris"}')]),
        Reply(chunks=["It is ", "18C in Paris."]),
        Reply(chunks=["Streamed ", "answer."]),
    )

    got = await run_node("ai_sdk.mjs", {"GATEWAY_URL": gateway_server.url, "GATEWAY_KEY": key.key})

    assert got["text"] == "It is 18C in Paris."
    assert got["tool_calls"] == [{"name": "weather", "input": {"city": "Paris"}}]
    assert got["tool_results"] == ["18C in Paris"]
    assert got["streamed"] == "Streamed answer."
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"] * 3
    second = upstream.requests[1].body["messages"]
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": second[-2]["tool_calls"][0]["id"],
        "content": "18C in Paris",
    }
    # only the Responses route stores an exchange unasked: the SDK spoke it (store defaults on)
    cids = await conversations(redis)
    assert len(cids) == 3
    roles = [[m["role"] for m in await stored_messages(redis, cid)] for cid in cids]
    assert sorted(roles) == [["user", "assistant"]] * 3
