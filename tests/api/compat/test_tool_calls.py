"""Tool round trips (the call, its result, the answer) through the official Python SDKs,
streamed and not, on both provider kinds behind each API: an OpenAI client calling tools on
an Anthropic model and the other way round. What reached the upstream is read from the fake
upstream's request log; what the conversation keeps, from Redis."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import json

import pytest

from tests.api.compat.support import (
    anthropic_client,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    stored_messages,
)
from tests.fake_upstream import FakeToolCall, Reply

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": WEATHER_SCHEMA,
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": WEATHER_SCHEMA,
}
ASK = "What is the weather in Paris?"
FRAGMENTS = ['{"ci', 'ty": "Pa', 'ris"}']  # split inside a key and inside a value


def call_reply(call_id: str) -> Reply:
    return Reply(
        tool_calls=[FakeToolCall("get_weather", FRAGMENTS, id=call_id)],
        input_tokens=30,
        output_tokens=12,
    )


ANSWER = Reply(chunks=["It is ", "sunny ", "in Paris."], input_tokens=50, output_tokens=6)


def upstream_id(model: str) -> str:
    return "call_w1" if model == "gpt" else "toolu_w1"


# -- an OpenAI client ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_openai_client_round_trip(gateway_server, client, make_key, upstream, model, stream):
    key = await make_key()
    sdk = openai_client(gateway_server, key.key)
    upstream.script(call_reply(upstream_id(model)), ANSWER)
    messages: list[dict] = [{"role": "user", "content": ASK}]

    async def ask():
        if not stream:
            return await sdk.chat.completions.create(
                model=model, messages=messages, tools=[OPENAI_TOOL]
            )
        async with sdk.chat.completions.stream(
            model=model,
            messages=messages,
            tools=[OPENAI_TOOL],
            stream_options={"include_usage": True},
        ) as s:
            return await s.get_final_completion()

    done = await ask()
    (choice,) = done.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == (
        upstream_id(model),
        "function",
        "get_weather",
    )
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (30, 12)

    messages += [
        choice.message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"}),
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]
    done = await ask()
    assert done.choices[0].message.content == "It is sunny in Paris."
    assert done.choices[0].finish_reason == "stop"

    first, second = upstream.requests
    if model == "gpt":
        assert first.body["tools"] == [OPENAI_TOOL]
        assert second.body["messages"][1]["tool_calls"][0]["id"] == "call_w1"
        assert second.body["messages"][2] == {
            "role": "tool",
            "tool_call_id": "call_w1",
            "content": "18 C and sunny",
        }
    else:  # translated: Anthropic's tools, tool_use and tool_result blocks
        assert first.body["tools"] == [ANTHROPIC_TOOL]
        assert second.body["messages"][1]["content"] == [
            {
                "type": "tool_use",
                "id": "toolu_w1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            }
        ]
        assert second.body["messages"][2] == {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_w1", "content": "18 C and sunny"}
            ],
        }


async def test_openai_stream_accumulates_tool_call_deltas(gateway_server, make_key, upstream):
    """The raw chunks: the call opens with its id, type and name, then one chunk per
    argument fragment, then finish_reason tool_calls, as OpenAI streams them."""
    key = await make_key()
    upstream.script(call_reply("toolu_x"))
    stream = await openai_client(gateway_server, key.key).chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": ASK}],
        tools=[OPENAI_TOOL],
        stream=True,
    )
    chunks = [c async for c in stream]
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    opening = deltas[0][0]
    assert (opening.index, opening.id, opening.type, opening.function.name) == (
        0,
        "toolu_x",
        "function",
        "get_weather",
    )
    assert all(d[0].id is None and d[0].index == 0 for d in deltas[1:])
    assert "".join(d[0].function.arguments or "" for d in deltas) == "".join(FRAGMENTS)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- an Anthropic client ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude", "gpt"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_client_round_trip(
    gateway_server, client, make_key, upstream, model, stream
):
    key = await make_key()
    sdk = anthropic_client(gateway_server, key.key)
    upstream.script(call_reply(upstream_id(model)), ANSWER)
    messages: list[dict] = [{"role": "user", "content": ASK}]

    async def ask():
        if not stream:
            return await sdk.messages.create(
                model=model, max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
            )
        async with sdk.messages.stream(
            model=model, max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
        ) as s:
            return await s.get_final_message()

    done = await ask()
    assert done.stop_reason == "tool_use"
    (use,) = [b for b in done.content if b.type == "tool_use"]
    assert (use.id, use.name, use.input) == (upstream_id(model), "get_weather", {"city": "Paris"})
    assert done.usage.output_tokens == 12

    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in done.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
        },
    ]
    done = await ask()
    assert done.content[0].type == "text" and done.content[0].text == "It is sunny in Paris."
    assert done.stop_reason == "end_turn"

    first, second = upstream.requests
    if model == "claude":
        assert first.body["tools"] == [ANTHROPIC_TOOL]
        assert second.body["messages"][2]["content"][0]["tool_use_id"] == "toolu_w1"
    else:  # translated: OpenAI's tools, tool_calls and tool messages
        assert first.body["tools"] == [OPENAI_TOOL]
        assistant, result = second.body["messages"][1:]
        assert assistant["role"] == "assistant"
        assert assistant["tool_calls"][0]["id"] == "call_w1"
        assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
        assert result == {"role": "tool", "tool_call_id": "call_w1", "content": "18 C"}


async def test_anthropic_stream_events_of_a_tool_call(gateway_server, make_key, upstream):
    """The raw events: a tool_use block opened with its id and name and empty input, then
    input_json_delta pieces, block stop, stop_reason tool_use."""
    key = await make_key()
    upstream.script(
        Reply(
            chunks=["Let me check. "],
            tool_calls=[FakeToolCall("get_weather", FRAGMENTS, id="call_y")],
        )
    )
    sdk = anthropic_client(gateway_server, key.key)
    stream = await sdk.messages.create(
        model="gpt",
        max_tokens=200,
        messages=[{"role": "user", "content": ASK}],
        tools=[ANTHROPIC_TOOL],
        stream=True,
    )
    events = [e async for e in stream]
    kinds = [(e.type, getattr(e, "index", None)) for e in events]
    assert kinds[:4] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
    ]
    start = events[4]
    assert (start.type, start.index, start.content_block.type) == (
        "content_block_start",
        1,
        "tool_use",
    )
    assert (start.content_block.id, start.content_block.name, start.content_block.input) == (
        "call_y",
        "get_weather",
        {},
    )
    pieces = [
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.index == 1
    ]
    assert "".join(pieces) == "".join(FRAGMENTS)
    assert [e.type for e in events[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "tool_use"


# -- conversations keep the structured exchange ----------------------------------------------


async def test_a_conversation_keeps_tool_calls_and_results(
    gateway_server, client, make_key, upstream, redis
):
    key = await make_key("kim")
    conv = await client.create_conversation(key.key)
    sdk = openai_client(gateway_server, key.key)
    header = {"X-Conversation-Id": conv["id"]}
    upstream.script(call_reply("toolu_c1"), ANSWER)
    messages: list[dict] = [{"role": "user", "content": ASK}]
    done = await sdk.chat.completions.create(
        model="claude", messages=messages, tools=[OPENAI_TOOL], extra_headers=header
    )
    messages += [
        done.choices[0].message.model_dump(
            exclude_none=True, include={"role", "content", "tool_calls"}
        ),
        {"role": "tool", "tool_call_id": "toolu_c1", "content": "18 C"},
    ]
    await sdk.chat.completions.create(
        model="claude", messages=messages, tools=[OPENAI_TOOL], extra_headers=header
    )

    asked, called, result, answered = await stored_messages(redis, conv["id"])
    assert (asked["role"], asked["content"]) == ("user", ASK) and "parts" not in asked
    assert called["role"] == "assistant" and called["finish_reason"] == "tool_calls"
    assert called["tool_calls"] == [
        {"id": "toolu_c1", "name": "get_weather", "arguments": "".join(FRAGMENTS)}
    ]
    assert called["native_finish"] == "tool_use"  # the upstream's own word, kept
    assert result["role"] == "user"
    assert result["parts"] == [
        {"type": "tool_result", "tool_call_id": "toolu_c1", "content": "18 C"}
    ]
    assert (answered["content"], answered["status"]) == ("It is sunny in Paris.", "complete")

    # both API styles' message lists show them
    page = await client.messages(key.key, conv["id"])
    listed = {m["id"]: m for m in page["messages"]}
    assert listed[called["id"]]["tool_calls"] == called["tool_calls"]
    assert listed[result["id"]]["parts"] == result["parts"]
