"""The fake upstream checked against the official SDKs' own parsers and stream helpers: if the
SDKs' typed models and accumulators accept what it serves, the adapters' tests run against the
real wire formats.
"""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pydantic
import pytest

from tests.fake_upstream import DEFAULT_SIGNATURE, FakeToolCall, FakeUpstream, Reply


@pytest.fixture
async def openai_client(upstream: FakeUpstream):
    client = openai.AsyncOpenAI(api_key="k", base_url=upstream.openai_base_url, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def anthropic_client(upstream: FakeUpstream):
    client = anthropic.AsyncAnthropic(
        api_key="k", base_url=upstream.anthropic_base_url, max_retries=0
    )
    yield client
    await client.close()


USER = [{"role": "user", "content": "two words"}]
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "input_schema": WEATHER},
    {"name": "get_time", "input_schema": {"type": "object"}},
]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 24).decode()


# -- OpenAI Chat Completions -----------------------------------------------------------------


async def test_openai_completion_parses(openai_client, upstream):
    upstream.script(Reply(chunks=["a", "b"], input_tokens=4, finish="length"))

    completion = await openai_client.chat.completions.create(model="m", messages=USER)

    assert completion.choices[0].message.content == "ab"
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 2)


async def test_openai_chunks_parse(openai_client, upstream):
    stream = await openai_client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: two words"
    )
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert upstream.open_streams == 0 and upstream.cancelled_streams == 0


async def test_openai_error_body(openai_client, upstream):
    upstream.script(Reply(status=429, retry_after=3))

    with pytest.raises(openai.RateLimitError) as caught:
        await openai_client.chat.completions.create(model="m", messages=USER)

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "3"


async def test_openai_stream_helper_accumulates_parallel_tool_calls(openai_client, upstream):
    # the secret is split inside its value: a client only sees it whole once it joins pieces
    secret = ['{"city": "Par', 'is", "key": "sk-ab', "cd1234", '"}']
    upstream.script(
        Reply(
            chunks=["Checking."],
            tool_calls=[
                FakeToolCall("get_weather", secret, id="call_1"),
                FakeToolCall("get_time", "{}", id="call_2"),
            ],
        )
    )

    async with openai_client.chat.completions.stream(
        model="m", messages=USER, tools=OPENAI_TOOLS
    ) as stream:
        deltas = [
            e.arguments_delta
            async for e in stream
            if e.type == "tool_calls.function.arguments.delta"
        ]
        final = await stream.get_final_completion()

    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content == "Checking."
    assert [(c.id, c.function.name) for c in message.tool_calls] == [
        ("call_1", "get_weather"),
        ("call_2", "get_time"),
    ]
    assert json.loads(message.tool_calls[0].function.arguments) == {
        "city": "Paris",
        "key": "sk-abcd1234",
    }
    # each fragment in a chunk of its own, split where the script said (after the call's
    # opening delta, whose arguments are "")
    assert [d for d in deltas if d][:4] == secret


async def test_openai_tool_round_trip_and_unanswered_calls(openai_client, upstream):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
    ]

    answer = await openai_client.chat.completions.create(
        model="m", messages=history, tools=OPENAI_TOOLS
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.chat.completions.create(
            model="m", messages=history[:2] + USER, tools=OPENAI_TOOLS
        )

    assert answer.choices[0].message.content == "Echo: 18 degrees"
    assert "call_1" in caught.value.message
    assert upstream.requests[0].body["messages"][2]["tool_call_id"] == "call_1"


async def test_openai_forced_tool_is_answered_from_its_schema(openai_client, upstream):
    completion = await openai_client.chat.completions.create(
        model="m",
        messages=USER,
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    [call] = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "text", "unit": "c"}


class Forecast(pydantic.BaseModel):
    city: str
    degrees: int


async def test_openai_structured_output_parses(openai_client, upstream):
    parsed = await openai_client.chat.completions.parse(
        model="m", messages=USER, response_format=Forecast
    )
    as_object = await openai_client.chat.completions.create(
        model="m", messages=USER, response_format={"type": "json_object"}
    )

    assert parsed.choices[0].message.parsed == Forecast(city="text", degrees=1)
    assert upstream.requests[0].body["response_format"]["type"] == "json_schema"
    assert json.loads(as_object.choices[0].message.content) == {"echo": "two words"}


async def test_openai_images_are_accepted_and_recorded(openai_client, upstream):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
        },
    ]

    await openai_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": content}]
    )
    with pytest.raises(openai.BadRequestError):
        await openai_client.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        )

    assert upstream.requests[0].images == [
        {"url": "https://example.com/cat.png"},
        {"media_type": "image/png", "bytes": 32},
    ]


async def test_openai_refusal_streams_apart_from_the_content(openai_client, upstream):
    upstream.script(Reply(refusal=["I can't ", "help with that."]))

    async with openai_client.chat.completions.stream(model="m", messages=USER) as stream:
        kinds = {e.type async for e in stream}
        final = await stream.get_final_completion()

    assert "refusal.delta" in kinds
    assert final.choices[0].message.refusal == "I can't help with that."
    assert final.choices[0].message.content is None


async def test_openai_logprobs_stop_and_usage_details(openai_client, upstream):
    upstream.script(
        Reply(chunks=["one ", "two ", "STOP three"], cached_tokens=2, reasoning_tokens=5)
    )

    completion = await openai_client.chat.completions.create(
        model="m", messages=USER, logprobs=True, top_logprobs=2, stop=["STOP"]
    )

    choice = completion.choices[0]
    assert choice.message.content == "one two "  # stopped before the sequence
    assert choice.finish_reason == "stop"
    assert [t.token for t in choice.logprobs.content] == ["one ", "two "]
    assert len(choice.logprobs.content[0].top_logprobs) == 2
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5


async def test_openai_n_choices_stream_interleaved(openai_client, upstream):
    upstream.script(Reply(chunks=["a", "b"]))

    stream = await openai_client.chat.completions.create(model="m", messages=USER, n=2, stream=True)
    chunks = [c async for c in stream]

    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "ab", 1: "ab"}
    assert sum(1 for c in chunks for ch in c.choices if ch.finish_reason == "stop") == 2


async def test_openai_reasoning_content_as_compatible_servers_stream_it(openai_client, upstream):
    upstream.script(Reply(reasoning=["Hmm, ", "two."], chunks=["Two."]))

    stream = await openai_client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks = [c async for c in stream]

    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
    )
    assert reasoning == "Hmm, two."


async def test_openai_refuses_fields_it_does_not_know_and_vllm_takes_top_k(upstream):
    plain = openai.AsyncOpenAI(api_key="k", base_url=upstream.openai_base_url, max_retries=0)
    vllm = openai.AsyncOpenAI(api_key="k", base_url=upstream.vllm_base_url, max_retries=0)

    with pytest.raises(openai.BadRequestError) as caught:
        await plain.chat.completions.create(model="m", messages=USER, extra_body={"top_k": 5})
    answer = await vllm.chat.completions.create(model="m", messages=USER, extra_body={"top_k": 5})
    await plain.close()
    await vllm.close()

    assert "Unrecognized request argument supplied: top_k" in caught.value.message
    assert answer.choices[0].message.content == "Echo: two words"
    assert upstream.requests[1].path == "/vllm/v1/chat/completions"


@pytest.mark.parametrize(("status", "requests"), [(500, 3), (400, 1)])
async def test_the_sdk_retries_only_what_can_succeed(upstream, status, requests):
    client = openai.AsyncOpenAI(api_key="k", base_url=upstream.openai_base_url, max_retries=2)
    upstream.script(*[Reply(status=status, retry_after=0.01)] * 3)

    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="m", messages=USER)
    await client.close()

    assert len(upstream.requests) == requests  # at most max_retries + 1


async def test_x_should_retry_false_stops_the_sdk_retrying(upstream):
    client = openai.AsyncOpenAI(api_key="k", base_url=upstream.openai_base_url, max_retries=2)
    upstream.script(Reply(status=503, should_retry=False))

    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=USER)
    await client.close()

    assert len(upstream.requests) == 1


# -- OpenAI Responses, embeddings, completions -----------------------------------------------


async def test_responses_create_answers_text_and_usage(openai_client, upstream):
    upstream.script(Reply(chunks=["Hello ", "there."], input_tokens=5, cached_tokens=1))

    response = await openai_client.responses.create(model="m", input="hi", instructions="Be brief.")

    assert response.output_text == "Hello there."
    assert response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 2)
    assert response.usage.input_tokens_details.cached_tokens == 1


async def test_responses_stream_helper_with_a_function_call(openai_client, upstream):
    upstream.script(
        Reply(
            chunks=["Let me check."],
            tool_calls=[FakeToolCall("get_weather", ['{"city"', ': "Paris"}'], id="call_9")],
        )
    )
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]

    async with openai_client.responses.stream(model="m", input="weather?", tools=tools) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()

    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert [e.delta for e in events if e.type == "response.function_call_arguments.delta"] == [
        '{"city"',
        ': "Paris"}',
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    [message, call] = final.output
    assert message.content[0].text == "Let me check."
    assert (call.call_id, call.name, json.loads(call.arguments)) == (
        "call_9",
        "get_weather",
        {"city": "Paris"},
    )
    assert final.usage.output_tokens == 3


async def test_responses_stream_of_a_function_call_output_round(openai_client, upstream):
    items = [
        {"role": "user", "content": "weather?"},
        {
            "type": "function_call",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_9", "output": "18 degrees"},
    ]

    async with openai_client.responses.stream(model="m", input=items) as stream:
        final = await stream.get_final_response()

    assert final.output_text == "Echo: 18 degrees"


async def test_responses_stream_reasoning_summary_and_an_incomplete_end(openai_client, upstream):
    upstream.script(Reply(reasoning=["Two ", "words."], chunks=["Yes"], finish="length"))

    async with openai_client.responses.stream(
        model="m", input="hi", reasoning={"effort": "low"}
    ) as stream:
        events = [e async for e in stream]

    kinds = [e.type for e in events]
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds[-1] == "response.incomplete"  # in place of response.completed
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == "Two words."
    assert final.output_text == "Yes"
    assert final.usage.output_tokens_details.reasoning_tokens == 2


async def test_embeddings_decode_as_the_sdk_asks_them(openai_client, upstream):
    floats = await openai_client.embeddings.create(
        model="e", input=["a b", "c"], encoding_format="float"
    )
    default = await openai_client.embeddings.create(model="e", input="a b", dimensions=4)

    assert [len(d.embedding) for d in floats.data] == [8, 8]
    assert floats.usage.prompt_tokens == 3
    assert len(default.data[0].embedding) == 4
    assert sum(x * x for x in default.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
    assert upstream.requests[1].body.get("encoding_format") == "base64"  # the SDK's default


async def test_legacy_completions_stream_and_not(openai_client, upstream):
    upstream.script(Reply(chunks=["x", "y"]), Reply(chunks=["x", "y"]))

    whole = await openai_client.completions.create(model="m", prompt="say xy")
    stream = await openai_client.completions.create(model="m", prompt="say xy", stream=True)
    pieces = [c.choices[0].text async for c in stream if c.choices]

    assert whole.choices[0].text == "xy" and whole.object == "text_completion"
    assert "".join(pieces) == "xy"


# -- Anthropic -------------------------------------------------------------------------------


async def test_anthropic_message_parses(anthropic_client, upstream):
    upstream.script(Reply(chunks=["a", "b"], finish="length"))

    message = await anthropic_client.messages.create(model="c", max_tokens=5, messages=USER)

    assert message.content[0].text == "ab"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 2)


async def test_anthropic_events_parse(anthropic_client, upstream):
    upstream.script(Reply(chunks=["x", "y", "z"], output_tokens=7))

    stream = await anthropic_client.messages.create(
        model="c", max_tokens=5, messages=USER, stream=True
    )
    events = [event async for event in stream]

    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK's decoder drops the ping
    assert events[-2].usage.output_tokens == 7


async def test_anthropic_error_body(anthropic_client, upstream):
    upstream.script(Reply(status=529))

    with pytest.raises(anthropic.OverloadedError) as caught:
        await anthropic_client.messages.create(model="c", max_tokens=5, messages=USER)

    assert caught.value.type == "overloaded_error"


async def test_anthropic_stream_helper_accumulates_tool_use(anthropic_client, upstream):
    upstream.script(
        Reply(
            chunks=["Checking."],
            tool_calls=[
                FakeToolCall("get_weather", ['{"city": "Pa', 'ris"}'], id="toolu_1"),
                FakeToolCall("get_time", "{}", id="toolu_2"),
            ],
        )
    )

    async with anthropic_client.messages.stream(
        model="c", max_tokens=100, messages=USER, tools=ANTHROPIC_TOOLS
    ) as stream:
        json_pieces = [e.partial_json async for e in stream if e.type == "input_json"]
        final = await stream.get_final_message()

    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Paris"} and final.content[1].id == "toolu_1"
    assert final.content[2].input == {}
    assert json_pieces == ['{"city": "Pa', 'ris"}', "{}"]


async def test_anthropic_tool_results_must_answer_the_calls(anthropic_client, upstream):
    turn = {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ],
    }
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees"}
    stray = {"type": "tool_result", "tool_use_id": "toolu_9", "content": "?"}

    answer = await anthropic_client.messages.create(
        model="c",
        max_tokens=50,
        tools=ANTHROPIC_TOOLS,
        messages=[*USER, turn, {"role": "user", "content": [result]}],
    )
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client.messages.create(
            model="c",
            max_tokens=50,
            tools=ANTHROPIC_TOOLS,
            messages=[*USER, turn, {"role": "user", "content": [stray]}],
        )

    assert answer.content[0].text == "Echo: 18 degrees"
    assert "toolu_9" in caught.value.message


async def test_anthropic_thinking_blocks_stream_with_their_signature(anthropic_client, upstream):
    upstream.script(Reply(reasoning=["Two ", "words."], chunks=["Yes."], redacted_reasoning="EncR"))

    async with anthropic_client.messages.stream(
        model="c",
        max_tokens=2048,
        messages=USER,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_message()

    assert [b.type for b in final.content] == ["redacted_thinking", "thinking", "text"]
    assert final.content[0].data == "EncR"
    assert final.content[1].thinking == "Two words."
    assert final.content[1].signature == DEFAULT_SIGNATURE
    assert {"thinking", "signature"} <= set(kinds)
    assert final.usage.output_tokens_details.thinking_tokens == 2


async def test_anthropic_thinking_budget_is_checked(anthropic_client, upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client.messages.create(
            model="c",
            max_tokens=1000,
            messages=USER,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )

    assert "budget_tokens" in caught.value.message


async def test_anthropic_images_and_documents(anthropic_client, upstream):
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
        {"type": "text", "text": "what is this"},
    ]

    await anthropic_client.messages.create(
        model="c", max_tokens=5, messages=[{"role": "user", "content": content}]
    )
    bad = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%"}}
    with pytest.raises(anthropic.BadRequestError):
        await anthropic_client.messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": [bad]}]
        )

    assert upstream.requests[0].images == [
        {"media_type": "image/png", "bytes": 32},
        {"url": "https://example.com/cat.png"},
    ]


async def test_anthropic_stop_sequence_refusal_and_cache_usage(anthropic_client, upstream):
    upstream.script(
        Reply(
            chunks=["one ", "two ##", " three"],
            cached_tokens=3,
            cache_write_tokens=4,
            input_tokens=10,
        ),
        Reply(refusal=["I won't."]),
    )

    stopped = await anthropic_client.messages.create(
        model="c", max_tokens=50, messages=USER, stop_sequences=["##"]
    )
    refused = await anthropic_client.messages.create(model="c", max_tokens=50, messages=USER)

    assert stopped.content[0].text == "one two "
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "##")
    usage = stopped.usage
    assert (
        usage.input_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    ) == (3, 3, 4)
    assert refused.stop_reason == "refusal"


async def test_anthropic_refuses_fields_it_does_not_know(anthropic_client, upstream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        await anthropic_client.messages.create(
            model="c", max_tokens=5, messages=USER, extra_body={"n": 2}
        )

    assert caught.value.api_message == "n: Extra inputs are not permitted"


async def test_anthropic_count_tokens(anthropic_client, upstream):
    counted = await anthropic_client.messages.count_tokens(
        model="c", messages=[{"role": "user", "content": "three words here"}], system="Be brief."
    )

    assert counted.input_tokens == 5
    assert upstream.requests[0].path == "/v1/messages/count_tokens"


async def test_anthropic_whole_message_with_thinking_and_tool_use(anthropic_client, upstream):
    upstream.script(
        Reply(reasoning=["Use ", "it."], tool_calls=[FakeToolCall("get_time", "{}", id="toolu_7")])
    )

    message = await anthropic_client.messages.create(
        model="c",
        max_tokens=2048,
        messages=USER,
        tools=ANTHROPIC_TOOLS,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )

    assert [b.type for b in message.content] == ["thinking", "tool_use"]
    assert message.content[0].signature == DEFAULT_SIGNATURE
    assert (message.content[1].id, message.content[1].input) == ("toolu_7", {})
    assert message.stop_reason == "tool_use"
