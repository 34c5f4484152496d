"""Real Node clients through the gateway against the fake upstream, in both providers' wire
formats: a tool round trip (the call, the tool's result, the answer) through the official
`openai` and `@anthropic-ai/sdk` SDKs and the Vercel AI SDK (`@ai-sdk/openai` with
`.chat(model)`, i.e. Chat Completions, and `@ai-sdk/anthropic`), streamed and not,
cross-provider both ways; and the AI SDK's generateObject. Each run is checked against what
the upstream received (its request log) and what Redis counted."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import asyncio
import json

import pytest

from tests.api.compat.support import (
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    usage,
)
from tests.compat_clients.node_clients import ensure_installed, scenario
from tests.fake_upstream import FakeToolCall, Reply

FRAGMENTS = ['{"ci', 'ty": "Pa', 'ris"}']
OBJECT_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "number"},
        "sunny": {"type": "boolean"},
    },
    "required": ["city", "temperature", "sunny"],
    "additionalProperties": False,
}


def strip_meta(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k != "$schema"}


ANSWER = ["It is ", "18 C ", "and sunny."]


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    ensure_installed()


def upstream_id(model: str) -> str:
    return "call_n1" if model == "gpt" else "toolu_n1"


def tool_round_trip(upstream, model: str) -> None:
    upstream.script(
        Reply(
            tool_calls=[FakeToolCall("get_weather", FRAGMENTS, id=upstream_id(model))],
            input_tokens=20,
            output_tokens=7,
        ),
        Reply(chunks=ANSWER, input_tokens=40, output_tokens=3),
    )


def check_second_request(upstream, model: str, result_text: str) -> None:
    """The second request carries the call and its result, in the upstream's own shape."""
    first, second = upstream.requests
    assert [r.path for r in upstream.requests] == [
        "/v1/chat/completions" if model == "gpt" else "/v1/messages"
    ] * 2
    if model == "gpt":
        assert first.body["tools"][0]["function"]["name"] == "get_weather"
        assistant, tool = second.body["messages"][-2:]
        assert assistant["tool_calls"][0]["id"] == "call_n1"
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
        assert tool["role"] == "tool" and tool["tool_call_id"] == "call_n1"
        assert result_text in json.dumps(tool["content"])
    else:
        assert first.body["tools"][0]["name"] == "get_weather"
        assistant, user = second.body["messages"][-2:]
        uses = [b for b in assistant["content"] if b["type"] == "tool_use"]
        call = {"type": "tool_use", "id": "toolu_n1", "name": "get_weather"}
        assert uses == [{**call, "input": {"city": "Paris"}}]
        (result,) = [b for b in user["content"] if b["type"] == "tool_result"]
        assert result["tool_use_id"] == "toolu_n1" and result_text in json.dumps(result["content"])


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_official_sdk_tool_round_trip(
    gateway_server, client, make_key, upstream, redis, kind, model, stream
):
    key = await make_key("nod")
    tool_round_trip(upstream, model)
    name = f"{kind}-tools" + ("-stream" if stream else "")
    got = await asyncio.to_thread(
        scenario, name, gateway=gateway_server.url, key=key.key, model=model
    )
    finish = ["tool_calls", "stop"] if kind == "openai" else ["tool_use", "end_turn"]
    assert got == {
        "finish": finish,
        "call": {"id": upstream_id(model), "name": "get_weather", "args": {"city": "Paris"}},
        "answer": "It is 18 C and sunny.",
    }
    check_second_request(upstream, model, "18 C and sunny in Paris")
    counted = await usage(redis)
    assert (counted["tokens_in:user:nod"], counted["tokens_out:user:nod"]) == (60, 10)


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["generateText", "streamText"])
async def test_vercel_ai_sdk_runs_a_tool_and_answers(
    gateway_server, client, make_key, upstream, redis, kind, model, stream
):
    key = await make_key("vai")
    tool_round_trip(upstream, model)
    name = f"ai-{kind}-tools" + ("-stream" if stream else "")
    got = await asyncio.to_thread(
        scenario, name, gateway=gateway_server.url, key=key.key, model=model
    )
    assert got["finish"] == ["tool-calls", "stop"]
    assert got["call"] == {
        "id": upstream_id(model),
        "name": "get_weather",
        "args": {"city": "Paris"},
    }
    assert got["results"] == ["18 C and sunny in Paris"]  # the SDK ran the tool
    assert got["answer"] == "It is 18 C and sunny."
    if stream:
        assert {"tool-input-start", "tool-input-delta", "tool-call", "text-delta"} <= set(
            got["streamed"]
        )
    check_second_request(upstream, model, "18 C and sunny in Paris")
    assert (await usage(redis))["tokens_out:user:vai"] == 10


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_vercel_ai_sdk_generate_object(
    gateway_server, client, make_key, upstream, redis, kind, model
):
    """No script: the fake upstream answers what the request asks for, a JSON object fitting
    the schema (OpenAI's response_format, or a forced tool's input on Anthropic)."""
    key = await make_key("obj")
    got = await asyncio.to_thread(
        scenario, f"ai-{kind}-object", gateway=gateway_server.url, key=key.key, model=model
    )
    assert got["object"] == {"city": "text", "temperature": 1.5, "sunny": True}
    assert got["finish"] == "stop"
    (sent,) = upstream.requests
    # how each client asks for an object, in the upstream's own shape: .chat(model) as
    # OpenAI's json_schema (a forced tool on Anthropic), @ai-sdk/anthropic as one tool the
    # model must call (OpenAI's tool_choice required, no parallel calls)
    schema = OBJECT_SCHEMA
    if (kind, model) == ("openai", "gpt"):
        fmt = sent.body["response_format"]
        assert (fmt["type"], fmt["json_schema"]["strict"]) == ("json_schema", True)
        assert strip_meta(fmt["json_schema"]["schema"]) == schema
    elif (kind, model) == ("openai", "claude"):
        assert sent.body["tool_choice"] == {"type": "tool", "name": "response"}
        assert strip_meta(sent.body["tools"][0]["input_schema"]) == schema
    elif (kind, model) == ("anthropic", "gpt"):
        assert (sent.body["tool_choice"], sent.body["parallel_tool_calls"]) == ("required", False)
        assert strip_meta(sent.body["tools"][0]["function"]["parameters"]) == schema
    else:
        assert sent.body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
        assert strip_meta(sent.body["tools"][0]["input_schema"]) == schema
    assert got["usage"]["output"] > 0
    assert (await usage(redis))["tokens_out:user:obj"] == got["usage"]["output"]
