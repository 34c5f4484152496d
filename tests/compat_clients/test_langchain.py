"""LangChain's chat models through the gateway against the fake upstream: `ChatOpenAI` on
/v1/chat/completions and `ChatAnthropic` on /v1/messages, each on an OpenAI and on an
Anthropic model (cross-provider both ways). A bind_tools round trip (the call, the tool's
result, the answer), invoked and streamed, and with_structured_output. Each is checked
against what the upstream received (its request log) and what Redis counted."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

from typing import Any

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.api.compat.support import (
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    usage,
)
from tests.compat_clients.test_node_clients import check_second_request, tool_round_trip

ANSWER = "It is 18 C and sunny."


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 C and sunny in {city}"


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    temperature: float
    sunny: bool


def chat_model(kind: str, url: str, key: str, model: str) -> BaseChatModel:
    if kind == "openai":
        return ChatOpenAI(model=model, base_url=f"{url}/v1", api_key=key, max_retries=0)
    return ChatAnthropic(model_name=model, base_url=url, api_key=key, max_retries=0, max_tokens=300)  # type: ignore[call-arg]


async def ask(model: Any, messages: list[BaseMessage], stream: bool) -> AIMessage:
    if not stream:
        return await model.ainvoke(messages)
    whole = None
    async for chunk in model.astream(messages):
        whole = chunk if whole is None else whole + chunk
    assert whole is not None
    return whole


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
async def test_bind_tools_round_trip(
    gateway_server, client, make_key, upstream, redis, kind, model, stream
):
    key = await make_key("lc")
    tool_round_trip(upstream, model)
    llm = chat_model(kind, gateway_server.url, key.key, model).bind_tools([get_weather])
    messages: list[BaseMessage] = [HumanMessage("What is the weather in Paris?")]

    first = await ask(llm, messages, stream)
    (call,) = first.tool_calls
    result = get_weather.invoke(call["args"])
    messages += [first, ToolMessage(result, tool_call_id=call["id"])]
    second = await ask(llm, messages, stream)

    upstream_id = "call_n1" if model == "gpt" else "toolu_n1"
    assert (call["id"], call["name"], call["args"]) == (
        upstream_id,
        "get_weather",
        {"city": "Paris"},
    )
    assert second.text == ANSWER and not second.tool_calls
    check_second_request(upstream, model, "18 C and sunny in Paris")
    counted = await usage(redis)
    assert (counted["tokens_in:user:lc"], counted["tokens_out:user:lc"]) == (60, 10)


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_with_structured_output(
    gateway_server, client, make_key, upstream, redis, kind, model
):
    """No script: the fake upstream answers what the request asks for, an object fitting the
    schema (OpenAI's json_schema, or the input of the one tool an Anthropic model must call)."""
    key = await make_key("lc")
    llm = chat_model(kind, gateway_server.url, key.key, model).with_structured_output(Weather)

    got = await llm.ainvoke("The weather in Paris, as an object")

    assert got == Weather(city="text", temperature=1.5, sunny=True)
    (sent,) = upstream.requests
    body = sent.body
    if model == "gpt" and kind == "openai":  # LangChain's default: json_schema, strict
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["name"] == "Weather"
    elif model == "gpt":  # ChatAnthropic forces its tool: OpenAI's named function choice
        assert body["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
        assert body["tools"][0]["function"]["name"] == "Weather"
    elif kind == "openai":  # json_schema on Claude: the answer as a forced tool's input
        assert body["tool_choice"]["type"] == "tool"
        assert body["tools"][0]["input_schema"]["properties"].keys() == {
            "city",
            "temperature",
            "sunny",
        }
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "Weather"}
    assert (await usage(redis))["tokens_out:user:lc"] > 0
