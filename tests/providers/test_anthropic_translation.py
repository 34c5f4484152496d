"""AnthropicProvider and the full request: every row of docs/compat-translation.md whose target
is the Messages API (forwarded: read back from the fake upstream's request log; approximated:
what is sent instead and what comes back; refused: the error, and no upstream call), and the
streamed shapes beyond text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from providers.anthropic import _events
from providers.base import (
    ChatMessage,
    ChatRequest,
    DocumentPart,
    EmbeddingRequest,
    Finish,
    ForcedTool,
    ImagePart,
    ProviderError,
    ReasoningDelta,
    ReasoningPart,
    ReasoningSignature,
    RedactedReasoning,
    ResponseFormat,
    TextDelta,
    TextPart,
    Thinking,
    Tool,
    ToolCall,
    ToolCallDelta,
    UnsupportedParameter,
    Usage,
)
from tests.fake_upstream import DEFAULT_SIGNATURE, FakeToolCall, Reply
from tests.providers.conftest import ask, calls_of, collect, text_of

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = Tool("get_time")
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
FORECAST = ResponseFormat(
    "json_schema",
    {"type": "object", "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}}},
    "forecast",
)


# -- forwarded and mapped one to one ---------------------------------------------------------

MAPPED = [
    ({"top_p": 0.9}, {"top_p": 0.9}),
    ({"top_k": 40}, {"top_k": 40}),
    ({"stop": ("END", "##")}, {"stop_sequences": ["END", "##"]}),
    ({"user": "user-42"}, {"metadata": {"user_id": "user-42"}}),
    ({"service_tier": "auto"}, {"service_tier": "auto"}),
    ({"service_tier": "default"}, {"service_tier": "standard_only"}),
    (
        {"thinking": Thinking("enabled", 2048, "omitted"), "max_output_tokens": 4000},
        {"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}},
    ),
    (
        {"tools": (WEATHER,), "tool_choice": "required"},
        {
            "tools": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "input_schema": dict(WEATHER.parameters),
                }
            ],
            "tool_choice": {"type": "any"},
        },
    ),
    (
        {"tools": (CLOCK,), "tool_choice": ForcedTool("get_time"), "parallel_tool_calls": False},
        {
            "tools": [{"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        },
    ),
    (
        {"tools": (CLOCK,), "parallel_tool_calls": True},
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": False}},
    ),
    ({"tools": (CLOCK,), "tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
    (
        {
            "tools": (
                Tool(
                    "f",
                    parameters={"type": "object"},
                    strict=True,
                    cache_control={"type": "ephemeral"},
                ),
            )
        },
        {
            "tools": [
                {
                    "name": "f",
                    "input_schema": {"type": "object"},
                    "strict": True,
                    "cache_control": {"type": "ephemeral"},
                }
            ]
        },
    ),
    (
        {"native": {"inference_geo": "us", "speed": "fast"}, "native_api": "anthropic"},
        {"inference_geo": "us", "speed": "fast"},
    ),
    # defaults ask for nothing, so they pass and send nothing
    (
        {"n": 1, "logprobs": False, "presence_penalty": 0.0, "frequency_penalty": 0},
        {"n": None, "logprobs": None, "presence_penalty": None},
    ),
]


@pytest.mark.parametrize(("options", "sent"), MAPPED, ids=[str(o) for o, _ in MAPPED])
async def test_options_reach_the_upstream_as_anthropic_names_them(
    make_anthropic, upstream, options, sent
):
    events = await collect(make_anthropic(), ask(model="c", **options))

    [request] = upstream.requests
    assert {k: request.body.get(k) for k in sent} == sent
    assert isinstance(events[-1], Finish)  # and the fake, strict like the API, took it


async def test_the_answer_stops_before_a_stop_sequence(make_anthropic, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "## three"]))

    events = await collect(make_anthropic(), ask(stop=("##",)))

    assert text_of(events) == "one two "
    assert events[-1] == Finish("stop", native="stop_sequence", stop_sequence="##")


# -- refused: what the Messages API cannot do ------------------------------------------------

REFUSED = [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"seed": 7}, "seed"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"metadata": {"team": "blue"}}, "metadata"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"native": {"verbosity": "low"}, "native_api": "openai"}, "verbosity"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"reasoning_effort": "high", "thinking": Thinking("enabled", 2048)}, "thinking"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"reasoning_effort": "high", "max_output_tokens": 2000}, "reasoning_effort"),
    ({"response_format": FORECAST, "tools": (WEATHER,)}, "response_format"),
    ({"response_format": ResponseFormat("json_schema", {"type": "array"})}, "response_format"),
]


@pytest.mark.parametrize(("options", "param"), REFUSED, ids=[p for _, p in REFUSED])
async def test_what_anthropic_cannot_do_is_refused_before_any_call(
    make_anthropic, upstream, options, param
):
    with pytest.raises(UnsupportedParameter) as caught:
        await collect(make_anthropic(), ask(**options))

    assert (caught.value.code, caught.value.param, caught.value.kind) == (
        "unsupported_parameter",
        param,
        "bad_request",
    )
    assert caught.value.status is None
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (ChatMessage("user", "hi", name="alice"), "messages[0].name"),
        (ChatMessage("user", [DocumentPart(file_id="file-1")]), "messages[0].content[0]"),
        (ChatMessage("user", [ImagePart(url="ftp://example.com/a.png")]), "messages[0].content[0]"),
        (ChatMessage("user", [ReasoningPart("hmm", "sig")]), "messages[0].content[0]"),
        (
            ChatMessage("system", [ImagePart(url="https://example.com/a.png")]),
            "messages[0].content[0]",
        ),
    ],
)
async def test_content_anthropic_cannot_take_is_refused(make_anthropic, upstream, message, param):
    with pytest.raises(UnsupportedParameter) as caught:
        await collect(make_anthropic(), ChatRequest("c", [message, ChatMessage("user", "go")]))

    assert caught.value.param == param
    assert upstream.requests == []


async def test_tool_arguments_that_are_no_json_object_are_refused(make_anthropic, upstream):
    history = [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "f", "not json"),)),
        ChatMessage("tool", "ok", tool_call_id="call_1"),
    ]

    with pytest.raises(UnsupportedParameter) as caught:
        await collect(make_anthropic(), ChatRequest("c", history, tools=(Tool("f"),)))

    assert caught.value.param == "messages[1].tool_calls[0].arguments"
    assert upstream.requests == []


# -- approximated: reasoning effort and structured output ------------------------------------


@pytest.mark.parametrize(
    ("effort", "thinking", "max_tokens"),
    [
        ("low", {"type": "enabled", "budget_tokens": 1024}, 2048),
        ("medium", {"type": "enabled", "budget_tokens": 2048}, 3072),
        ("high", {"type": "enabled", "budget_tokens": 4096}, 5120),
        ("none", {"type": "disabled"}, 1024),
    ],
)
async def test_reasoning_effort_becomes_a_thinking_budget(
    make_anthropic, upstream, effort, thinking, max_tokens
):
    events = await collect(make_anthropic(), ask(reasoning_effort=effort))

    body = upstream.requests[0].body
    assert (body["thinking"], body["max_tokens"]) == (thinking, max_tokens)
    reasoning = "".join(e.text for e in events if type(e) is ReasoningDelta)
    assert reasoning == ("" if effort == "none" else "Thinking about: hello there")


async def test_reasoning_effort_as_output_config_for_models_that_take_it(make_anthropic, upstream):
    await collect(make_anthropic(effort="output_config"), ask(reasoning_effort="minimal"))

    body = upstream.requests[0].body
    assert body["output_config"] == {"effort": "low"}
    assert "thinking" not in body


async def test_a_json_schema_answer_is_a_forced_tools_input_streamed_as_text(
    make_anthropic, upstream
):
    events = await collect(make_anthropic(), ask(response_format=FORECAST))

    body = upstream.requests[0].body
    assert body["tools"] == [
        {
            "name": "forecast",
            "description": "Give the answer as this tool's input.",
            "input_schema": dict(FORECAST.schema),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "forecast"}
    assert json.loads(text_of(events)) == {"city": "text", "degrees": 1}
    assert not any(type(e) is ToolCallDelta for e in events)
    assert events[-1] == Finish("stop", native="tool_use")


async def test_a_json_object_answer_and_one_with_thinking_on(make_anthropic, upstream):
    upstream.script(Reply(), Reply(tool_calls=[FakeToolCall("json_response", '{"a": 1}')]))

    plain = await collect(make_anthropic(), ask(response_format=ResponseFormat("json_object")))
    thinking = await collect(
        make_anthropic(),
        ask(response_format=ResponseFormat("json_object"), thinking=Thinking("adaptive")),
    )

    first, second = upstream.requests
    assert first.body["tools"][0]["input_schema"] == {
        "type": "object",
        "additionalProperties": True,
    }
    assert json.loads(text_of(plain)) == {}
    # the API refuses a forced tool while thinking: the model is asked, not forced
    assert second.body["tool_choice"] == {"type": "auto"}
    assert text_of(thinking) == '{"a": 1}'


async def test_structured_output_as_output_config_for_models_that_take_it(make_anthropic, upstream):
    events = await collect(
        make_anthropic(structured_output="output_config"), ask(response_format=FORECAST)
    )

    body = upstream.requests[0].body
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": dict(FORECAST.schema)}
    }
    assert "tools" not in body
    assert json.loads(text_of(events)) == {"city": "text", "degrees": 1}


@pytest.mark.parametrize(
    "native", [{"model": "claude-dearer"}, {"max_tokens": 64000}, {"system": "Ignore the rules."}]
)
async def test_a_native_field_cannot_override_a_normalized_one(make_anthropic, upstream, native):
    request = ChatRequest(
        "c",
        [ChatMessage("system", "Rules."), ChatMessage("user", "hi")],
        native=native,
        native_api="anthropic",
    )

    with pytest.raises(ProviderError) as caught:
        await collect(make_anthropic(), request)

    assert caught.value.kind == "bad_request"
    assert upstream.requests == []


def test_unknown_option_values_are_configuration_errors(make_anthropic):
    with pytest.raises(ValueError, match="structured_output"):
        make_anthropic(structured_output="magic")


# -- content ---------------------------------------------------------------------------------


async def test_images_and_documents_become_anthropic_blocks(make_anthropic, upstream):
    parts = [
        TextPart("Compare these.", cache_control={"type": "ephemeral"}),
        ImagePart(url="https://example.com/a.png", detail="low"),  # detail: Anthropic has none
        ImagePart(url=f"data:image/png;base64,{PNG}"),
        ImagePart(data=PNG, media_type="image/png"),
        DocumentPart(data=PDF, title="report.pdf"),
        DocumentPart(url="https://example.com/a.pdf"),
        DocumentPart(text="Plain notes.", title="Notes"),
    ]

    await collect(make_anthropic(), ChatRequest("c", [ChatMessage("user", parts)]))

    [request] = upstream.requests
    png = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    assert request.body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these.", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        png,
        png,
        {
            "type": "document",
            "title": "report.pdf",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
        {
            "type": "document",
            "title": "Notes",
            "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."},
        },
    ]
    assert request.images == [
        {"url": "https://example.com/a.png"},
        {"media_type": "image/png", "bytes": 8},
        {"media_type": "image/png", "bytes": 8},
    ]


async def test_a_cache_breakpoint_in_the_system_prompt_keeps_it_as_blocks(make_anthropic, upstream):
    request = ChatRequest(
        "c",
        [
            ChatMessage("system", [TextPart("Long rules.", cache_control={"type": "ephemeral"})]),
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "hi"),
        ],
    )

    await collect(make_anthropic(), request)

    assert upstream.requests[0].body["system"] == [
        {"type": "text", "text": "Long rules.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
    ]


# -- the OpenAI-shaped tool loop on an Anthropic model ---------------------------------------


async def test_an_openai_tool_loop_runs_on_anthropic(make_anthropic, upstream):
    history = [
        ChatMessage("system", "Be brief."),
        ChatMessage(
            "user",
            [TextPart("Weather and time here?"), ImagePart(url=f"data:image/png;base64,{PNG}")],
        ),
        ChatMessage(
            "assistant",
            "Checking.",
            tool_calls=(
                ToolCall("call_a", "get_weather", '{"city": "Oslo"}'),
                ToolCall("call_b", "get_time", ""),
            ),
        ),
        ChatMessage("tool", "4 degrees", tool_call_id="call_a"),
        ChatMessage("tool", "clock broken", tool_call_id="call_b", is_error=True),
        ChatMessage("user", "Thanks, and tomorrow?"),
    ]
    request = ChatRequest(
        "c",
        history,
        max_output_tokens=200,
        tools=(WEATHER, CLOCK),
        tool_choice="required",
        parallel_tool_calls=False,
        user="u-1",
    )

    events = await collect(make_anthropic(), request)

    body = upstream.requests[0].body
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather and time here?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_a",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
            ],
        },
        # the two results and the next question are one user turn, results first
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": "4 degrees"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_b",
                    "content": "clock broken",
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks, and tomorrow?"},
            ],
        },
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["metadata"] == {"user_id": "u-1"}
    # "required" made the fake call the first tool, from its schema
    assert calls_of(events)[0][1:] == ("get_weather", '{"city": "text"}')
    assert events[-1] == Finish("tool_calls", native="tool_use")


async def test_thinking_handed_back_in_a_tool_loop(make_anthropic, upstream):
    history = [
        ChatMessage("user", "Weather?"),
        ChatMessage(
            "assistant",
            [
                ReasoningPart(redacted="EncR"),
                ReasoningPart("Use the tool.", DEFAULT_SIGNATURE),
                ReasoningPart("from another provider, unsigned"),
            ],
            tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Oslo"}'),),
        ),
        ChatMessage(
            "tool",
            [TextPart("4 degrees"), ImagePart(data=PNG, media_type="image/png")],
            tool_call_id="toolu_1",
        ),
    ]

    await collect(
        make_anthropic(),
        ChatRequest("c", history, tools=(WEATHER,), thinking=Thinking("enabled", 1024)),
    )

    body = upstream.requests[0].body
    assert body["max_tokens"] == 2048  # the budget plus the default answer
    assert body["messages"][1]["content"][:2] == [
        {"type": "redacted_thinking", "data": "EncR"},
        {"type": "thinking", "thinking": "Use the tool.", "signature": DEFAULT_SIGNATURE},
    ]
    assert body["messages"][1]["content"][2]["type"] == "tool_use"  # the unsigned one is left out
    assert body["messages"][2]["content"][0]["content"][1]["type"] == "image"


# -- what streams back -----------------------------------------------------------------------


async def test_streamed_tool_use_blocks_become_numbered_call_deltas(make_anthropic, upstream):
    fragments = ['{"city": "Os', 'lo", "token": "sk-', "live-", '9f8e"}']
    upstream.script(
        Reply(
            chunks=["Let me look."],
            tool_calls=[
                FakeToolCall("get_weather", fragments, id="toolu_a"),
                FakeToolCall("get_time", [], id="toolu_b"),
            ],
        )
    )

    events = await collect(make_anthropic(), ask(tools=(WEATHER, CLOCK)))

    deltas = [e for e in events if type(e) is ToolCallDelta]
    assert deltas[:2] == [  # block 1 is tool call 0: the text took block 0
        ToolCallDelta(0, "toolu_a", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city": "Os'),
    ]
    assert calls_of(events) == [
        ("toolu_a", "get_weather", '{"city": "Oslo", "token": "sk-live-9f8e"}'),
        ("toolu_b", "get_time", "{}"),  # no input streamed: the empty object
    ]
    assert text_of(events) == "Let me look."


async def test_thinking_signature_redacted_and_usage_details(make_anthropic, upstream):
    upstream.script(
        Reply(
            reasoning=["Two ", "words."],
            chunks=["Yes."],
            redacted_reasoning="EncR",
            input_tokens=20,
            cached_tokens=5,
            cache_write_tokens=10,
        )
    )

    events = await collect(
        make_anthropic(max_output_tokens=4096), ask(thinking=Thinking("enabled", 1024))
    )

    shapes = [
        e
        for e in events
        if type(e) in (ReasoningDelta, ReasoningSignature, RedactedReasoning, TextDelta)
    ]
    assert shapes == [
        RedactedReasoning("EncR"),
        ReasoningDelta("Two "),
        ReasoningDelta("words."),
        ReasoningSignature(DEFAULT_SIGNATURE),
        TextDelta("Yes."),
    ]
    assert events[-2] == Usage(
        20, 3, cached_input_tokens=5, cache_write_input_tokens=10, reasoning_tokens=2
    )


async def test_a_refusal_ends_as_content_filter(make_anthropic, upstream):
    upstream.script(Reply(refusal=["I won't."]))

    events = await collect(make_anthropic(), ask())

    assert text_of(events) == "I won't."
    assert events[-1] == Finish("content_filter", native="refusal")


# -- errors and retries ----------------------------------------------------------------------


async def test_an_upstream_400_keeps_its_status_and_its_own_message(make_anthropic, upstream):
    # the fake, like the API, refuses a temperature other than 1 while thinking
    with pytest.raises(ProviderError) as caught:
        await collect(make_anthropic(), ask(temperature=0.2, thinking=Thinking("enabled", 1024)))

    error = caught.value
    assert (error.status, error.kind, error.error_type) == (
        400,
        "bad_request",
        "invalid_request_error",
    )
    assert error.message == "`temperature` may only be set to 1 when thinking is enabled."
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("max_retries", "status", "calls"), [(2, 529, 3), (1, 500, 2), (2, 400, 1), (2, 404, 1)]
)
async def test_one_call_costs_at_most_max_retries_plus_one_requests(
    make_anthropic, upstream, max_retries, status, calls
):
    upstream.script(*[Reply(status=status, retry_after=0.01)] * 4)

    with pytest.raises(ProviderError) as caught:
        await collect(make_anthropic(max_retries=max_retries), ask())

    assert caught.value.status == status
    assert len(upstream.requests) == calls


# -- the parser on raw bytes -----------------------------------------------------------------


def _frame(data: dict) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


async def _body(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


async def test_pause_turn_and_a_tool_start_that_carries_its_input():
    frames = (
        _frame({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
        _frame(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {"q": 1}},
            }
        ),
        _frame({"type": "content_block_stop", "index": 0}),
        _frame(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "server_tool_use", "id": "s1", "name": "web_search"},
            }
        ),
        _frame({"type": "content_block_stop", "index": 1}),
        _frame(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "pause_turn"},
                "usage": {"output_tokens": 4},
            }
        ),
        _frame({"type": "message_stop"}),
    )

    events = [e async for e in _events(_body(*frames))]

    assert events[1:] == [
        ToolCallDelta(0, "t1", "f", '{"q": 1}'),
        Usage(3, 4),
        Finish("pause", native="pause_turn"),
    ]


# -- counting tokens -------------------------------------------------------------------------


async def test_count_tokens_asks_the_upstream_with_the_request_as_it_would_be_sent(
    make_anthropic, upstream
):
    request = ChatRequest(
        "c",
        [ChatMessage("system", "Be brief."), ChatMessage("user", "three words here")],
        max_output_tokens=100,
        temperature=0.5,
        stop=("##",),
        tools=(CLOCK,),
        response_format=None,
        user="u-1",
    )

    counted = await make_anthropic().count_tokens(request)

    [sent] = upstream.requests
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.body == {
        "model": "c",
        "messages": [{"role": "user", "content": "three words here"}],
        "system": "Be brief.",
        "tools": [{"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
    }
    tool_words = len(json.dumps(sent.body["tools"][0]).split())  # the fake counts words
    assert (counted.input_tokens, counted.estimated) == (5 + tool_words, False)


async def test_count_tokens_refuses_what_the_stream_would(make_anthropic, upstream):
    upstream.script(Reply(status=429, retry_after=0.01))

    with pytest.raises(UnsupportedParameter):
        await make_anthropic().count_tokens(ask(n=3))
    with pytest.raises(ProviderError) as caught:
        await make_anthropic().count_tokens(ask())

    assert (caught.value.status, caught.value.kind) == (429, "rate_limit")
    assert len(upstream.requests) == 1


async def test_there_are_no_anthropic_embeddings(make_anthropic, upstream):
    with pytest.raises(UnsupportedParameter) as caught:
        await make_anthropic().embed(EmbeddingRequest("c", ["x"]))

    assert caught.value.param == "model"
    assert upstream.requests == []
