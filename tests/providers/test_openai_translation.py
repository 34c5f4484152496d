"""OpenAIProvider and the full request: every row of docs/compat-translation.md whose target is
the Chat Completions API (forwarded: read back from the fake upstream's request log; refused:
the error, and no upstream call), and the streamed shapes beyond text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    DocumentPart,
    EmbeddingRequest,
    Finish,
    ForcedTool,
    ImagePart,
    LogprobsDelta,
    Opened,
    ProviderError,
    ReasoningDelta,
    ReasoningPart,
    RefusalDelta,
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
from providers.openai import _events
from tests.fake_upstream import FakeToolCall, Reply
from tests.providers.conftest import ask, calls_of, collect, text_of

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = Tool("get_time", parameters={"type": "object", "properties": {}})
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


# -- forwarded as they are -------------------------------------------------------------------

FORWARDED = [
    ({"top_p": 0.5}, {"top_p": 0.5}),
    ({"seed": 7}, {"seed": 7}),
    (
        {"presence_penalty": 0.4, "frequency_penalty": -0.2},
        {"presence_penalty": 0.4, "frequency_penalty": -0.2},
    ),
    ({"logit_bias": {"50256": -100}}, {"logit_bias": {"50256": -100}}),
    ({"logprobs": True, "top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
    ({"n": 2}, {"n": 2}),
    ({"stop": ("END", "##")}, {"stop": ["END", "##"]}),
    ({"user": "user-42"}, {"user": "user-42"}),
    ({"metadata": {"team": "blue"}}, {"metadata": {"team": "blue"}}),
    ({"reasoning_effort": "low"}, {"reasoning_effort": "low"}),
    ({"service_tier": "flex"}, {"service_tier": "flex"}),
    (
        {"response_format": ResponseFormat("json_object")},
        {"response_format": {"type": "json_object"}},
    ),
    ({"response_format": ResponseFormat("text")}, {"response_format": {"type": "text"}}),
    (
        {
            "response_format": ResponseFormat(
                "json_schema", {"type": "object"}, "answer", "An answer", True
            )
        },
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {"type": "object"},
                    "description": "An answer",
                    "strict": True,
                },
            }
        },
    ),
    (
        {"tools": (WEATHER,), "tool_choice": "required", "parallel_tool_calls": False},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "The weather in a city",
                        "parameters": dict(WEATHER.parameters),
                    },
                }
            ],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
    ),
    (
        {"tools": (CLOCK,), "tool_choice": ForcedTool("get_time")},
        {"tool_choice": {"type": "function", "function": {"name": "get_time"}}},
    ),
    (
        {"tools": (Tool("f", parameters={"type": "object"}, strict=True),), "tool_choice": "none"},
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
                }
            ],
            "tool_choice": "none",
        },
    ),
    (
        {"native": {"verbosity": "low", "store": True}, "native_api": "openai"},
        {"verbosity": "low", "store": True},
    ),
]


@pytest.mark.parametrize(("options", "sent"), FORWARDED, ids=[str(o) for o, _ in FORWARDED])
async def test_options_reach_the_upstream_as_openai_names_them(
    make_openai, upstream, options, sent
):
    await collect(make_openai(), ask(**options))

    [request] = upstream.requests
    assert {k: request.body.get(k) for k in sent} == sent


async def test_a_plain_request_sends_nothing_more_than_before(make_openai, upstream):
    await collect(make_openai(), ask("hi"))

    assert upstream.requests[0].body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_the_answer_stops_before_a_stop_sequence(make_openai, upstream):
    upstream.script(Reply(chunks=["one ", "two ", "END three"]))

    events = await collect(make_openai(), ask(stop=("END",)))

    assert text_of(events) == "one two "
    assert events[-1] == Finish("stop")


# -- content parts ---------------------------------------------------------------------------


async def test_images_and_documents_become_openai_content_parts(make_openai, upstream):
    parts = [
        TextPart("Compare these.", cache_control={"type": "ephemeral"}),
        ImagePart(url="https://example.com/a.png", detail="high"),
        ImagePart(data=PNG, media_type="image/png"),
        DocumentPart(data=PDF, title="report.pdf"),
        DocumentPart(text="Plain notes.", title="Notes"),
        DocumentPart(file_id="file-123"),
    ]

    await collect(make_openai(), ChatRequest("m", [ChatMessage("user", parts)]))

    [request] = upstream.requests
    assert request.body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},  # OpenAI caches prefixes by itself
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {
            "type": "file",
            "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"},
        },
        {"type": "text", "text": "Notes\n\nPlain notes."},
        {"type": "file", "file": {"file_id": "file-123"}},
    ]
    assert request.images == [
        {"url": "https://example.com/a.png"},
        {"media_type": "image/png", "bytes": 8},
    ]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            ChatMessage("user", [DocumentPart(url="https://example.com/a.pdf")]),
            "messages[0].content[0]",
        ),
        (
            ChatMessage("system", [ImagePart(url="https://example.com/a.png")]),
            "messages[0].content[0]",
        ),
        (
            ChatMessage("assistant", [TextPart("see"), ImagePart(url="https://x.example/a.png")]),
            "messages[0].content[1]",
        ),
        (ChatMessage("user", [ReasoningPart("hmm", "sig")]), "messages[0].content[0]"),
    ],
)
async def test_content_openai_cannot_take_is_refused_before_any_call(
    make_openai, upstream, message, param
):
    with pytest.raises(UnsupportedParameter) as caught:
        await collect(make_openai(), ChatRequest("m", [message, ChatMessage("user", "hi")]))

    assert (caught.value.code, caught.value.param, caught.value.kind) == (
        "unsupported_parameter",
        param,
        "bad_request",
    )
    assert upstream.requests == []


# -- tools -----------------------------------------------------------------------------------


async def test_streamed_parallel_tool_calls_arrive_as_deltas(make_openai, upstream):
    fragments = ['{"city": "Os', 'lo", "token": "sk-', "live-", '9f8e"}']
    upstream.script(
        Reply(
            chunks=["Let me look."],
            tool_calls=[
                FakeToolCall("get_weather", fragments, id="call_a"),
                FakeToolCall("get_time", "{}", id="call_b"),
            ],
        )
    )

    events = await collect(make_openai(), ask(tools=(WEATHER, CLOCK)))

    assert text_of(events) == "Let me look."
    deltas = [e for e in events if type(e) is ToolCallDelta]
    assert deltas[:2] == [
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city": "Os'),
    ]
    assert calls_of(events) == [
        ("call_a", "get_weather", '{"city": "Oslo", "token": "sk-live-9f8e"}'),
        ("call_b", "get_time", "{}"),
    ]
    assert events[-1] == Finish("tool_calls")


async def test_a_tool_round_trip_sends_calls_and_results_in_openai_shape(make_openai, upstream):
    history = [
        ChatMessage("user", "Weather in Oslo and the time?"),
        ChatMessage(
            "assistant",
            "",
            tool_calls=(
                ToolCall("call_a", "get_weather", '{"city": "Oslo"}'),
                ToolCall("call_b", "get_time", "{}"),
            ),
        ),
        ChatMessage("tool", "4 degrees", tool_call_id="call_a"),
        ChatMessage("tool", [TextPart("clock broken")], tool_call_id="call_b", is_error=True),
    ]

    events = await collect(make_openai(), ChatRequest("m", history, tools=(WEATHER, CLOCK)))

    sent = upstream.requests[0].body["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_a", "content": "4 degrees"}
    # OpenAI has no error flag on a tool result: the model reads that the tool failed
    assert sent[3] == {"role": "tool", "tool_call_id": "call_b", "content": "Error: clock broken"}
    assert text_of(events) == "Echo: Error: clock broken"  # the fake accepted the pairing


async def test_reasoning_handed_back_is_left_out_of_the_history(make_openai, upstream):
    history = [
        ChatMessage("user", "Hi"),
        ChatMessage(
            "assistant", [ReasoningPart("They greet me.", "sig"), TextPart("Hello!")], name="bot"
        ),
        ChatMessage("user", "Bye"),
    ]

    await collect(make_openai(), ChatRequest("m", history))

    assert upstream.requests[0].body["messages"][1] == {
        "role": "assistant",
        "name": "bot",
        "content": "Hello!",
    }


# -- the Anthropic-shaped request on an OpenAI model -----------------------------------------


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        (Thinking("enabled", 1024), "low"),
        (Thinking("enabled", 3000), "medium"),
        (Thinking("enabled", 20000), "high"),
        (Thinking("adaptive"), None),
        (Thinking("disabled"), None),
    ],
)
async def test_thinking_becomes_a_reasoning_effort(make_openai, upstream, thinking, effort):
    await collect(make_openai(), ask(thinking=thinking))

    assert upstream.requests[0].body.get("reasoning_effort") == effort


async def test_anthropic_words_map_onto_openai_ones(make_openai, upstream):
    request = ChatRequest(
        "m",
        [
            ChatMessage("system", [TextPart("Be brief.", cache_control={"type": "ephemeral"})]),
            ChatMessage("user", "hi"),
        ],
        max_output_tokens=300,
        stop=("\n\nHuman:",),
        service_tier="standard_only",
        user="u-1",  # Anthropic's metadata.user_id
        tools=(WEATHER,),
        tool_choice="required",  # Anthropic's {"type": "any"}
        parallel_tool_calls=False,  # Anthropic's disable_parallel_tool_use
    )

    await collect(make_openai(), request)

    body = upstream.requests[0].body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["max_tokens"], body["stop"], body["service_tier"], body["user"]) == (
        300,
        ["\n\nHuman:"],
        "default",
        "u-1",
    )
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"top_k": 40}, "top_k"),
        ({"thinking": Thinking("enabled", 2048), "reasoning_effort": "high"}, "thinking"),
        ({"thinking": Thinking("between_tools")}, "thinking"),
        ({"native": {"container": "c-1"}, "native_api": "anthropic"}, "container"),
    ],
)
async def test_what_openai_cannot_do_is_refused_before_any_call(
    make_openai, upstream, options, param
):
    with pytest.raises(UnsupportedParameter) as caught:
        await collect(make_openai(), ask(**options))

    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", param)
    assert caught.value.status is None  # no upstream was asked
    assert upstream.requests == []


async def test_a_compatible_server_that_takes_top_k_gets_it(make_openai, upstream):
    provider = make_openai(base_url=upstream.vllm_base_url, accepts=["top_k"])

    events = await collect(provider, ask(top_k=40))

    assert upstream.requests[0].body["top_k"] == 40
    assert text_of(events) == "Echo: hello there"


def test_an_unknown_accepted_field_is_a_configuration_error(make_openai):
    with pytest.raises(ValueError, match="min_p"):
        make_openai(accepts=["top_k", "min_p"])


@pytest.mark.parametrize(
    "native",
    [{"stream": False}, {"model": "gpt-expensive"}, {"messages": []}, {"temperature": 2}],
)
async def test_a_native_field_cannot_override_a_normalized_one(make_openai, upstream, native):
    # else a client could pick another (dearer) model than the one it was allowed, or swap
    # the policy-checked messages
    with pytest.raises(ProviderError) as caught:
        await collect(make_openai(), ask(temperature=0.5, native=native, native_api="openai"))

    assert caught.value.kind == "bad_request"
    assert upstream.requests == []


# -- what streams back -----------------------------------------------------------------------


async def test_refusal_reasoning_logprobs_and_usage_details(make_openai, upstream):
    upstream.script(
        Reply(
            reasoning=["Hmm."],
            refusal=["No."],
            input_tokens=9,
            cached_tokens=4,
            reasoning_tokens=6,
            output_tokens=8,
        ),
        Reply(chunks=["Hi ", "you"]),
    )

    refused = await collect(make_openai(), ask())
    scored = await collect(make_openai(), ask(logprobs=True, top_logprobs=2))

    assert [e for e in refused if type(e) in (ReasoningDelta, RefusalDelta)] == [
        ReasoningDelta("Hmm."),
        RefusalDelta("No."),
    ]
    assert refused[-2:] == [Usage(9, 8, cached_input_tokens=4, reasoning_tokens=6), Finish("stop")]
    logprobs = [e for e in scored if type(e) is LogprobsDelta]
    assert [lp.tokens[0].token for lp in logprobs] == ["Hi ", "you"]
    first = logprobs[0].tokens[0]
    assert first.bytes == tuple(b"Hi ") and [t.token for t in first.top] == ["Hi ", "alt1"]
    assert scored.index(logprobs[0]) == scored.index(TextDelta("Hi ")) + 1


async def test_n_choices_carry_their_index(make_openai, upstream):
    upstream.script(Reply(chunks=["a", "b"]))

    events = await collect(make_openai(), ask(n=2))

    assert (text_of(events, 0), text_of(events, 1)) == ("ab", "ab")
    assert events[-2:] == [Finish("stop", 0), Finish("stop", 1)]


async def test_a_content_filter_finish_is_kept(make_openai, upstream):
    upstream.script(Reply(chunks=["Once upon"], finish="content_filter"))

    events = await collect(make_openai(), ask())

    assert events[-1] == Finish("content_filter")


# -- errors and retries ----------------------------------------------------------------------


async def test_an_upstream_400_keeps_its_status_and_its_own_message(make_openai, upstream):
    upstream.script(Reply(status=400, error_message="Invalid value for 'temperature'."))

    with pytest.raises(ProviderError) as caught:
        await collect(make_openai(), ask())

    error = caught.value
    assert (error.status, error.kind, error.error_type) == (
        400,
        "bad_request",
        "invalid_request_error",
    )
    assert error.message == "Invalid value for 'temperature'."  # not the SDK's "Error code: ..."
    assert not error.retryable
    assert len(upstream.requests) == 1


async def test_what_the_fake_refuses_comes_back_as_the_upstreams_400(make_openai, upstream):
    # a server that does not take vLLM's fields, reached with one in native
    with pytest.raises(ProviderError) as caught:
        await collect(make_openai(), ask(native={"min_p": 0.1}, native_api="openai"))

    assert caught.value.status == 400
    assert caught.value.message == "Unrecognized request argument supplied: min_p"


@pytest.mark.parametrize(
    ("max_retries", "status", "calls"), [(2, 500, 3), (2, 429, 3), (2, 400, 1), (0, 503, 1)]
)
async def test_one_call_costs_at_most_max_retries_plus_one_requests(
    make_openai, upstream, max_retries, status, calls
):
    upstream.script(*[Reply(status=status, retry_after=0.01)] * 4)

    with pytest.raises(ProviderError) as caught:
        await collect(make_openai(max_retries=max_retries), ask())

    assert caught.value.status == status
    assert len(upstream.requests) == calls
    assert [r.headers["x-stainless-retry-count"] for r in upstream.requests] == [
        str(i) for i in range(calls)
    ]


# -- the parser on raw bytes -----------------------------------------------------------------


async def _body(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def _chunk(delta: dict, finish: str | None = None, **extra) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, **extra}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def test_tool_calls_without_an_index_and_a_legacy_function_call_finish():
    frames = (
        _chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        _chunk({}, "function_call"),
        b"data: [DONE]\n\n",
    )

    events = [e async for e in _events(_body(*frames))]

    assert calls_of(events) == [("c1", "f", '{"a": 1}')]
    assert events[-1] == Finish("tool_calls", native="function_call")


async def test_openrouter_reasoning_and_an_unknown_finish_reason():
    frames = (
        _chunk({"role": "assistant", "reasoning": "think", "content": None}),
        _chunk({"content": "x"}),
        _chunk({}, "eos"),  # a compatible server's own word
        b"data: [DONE]\n\n",
    )

    events = [e async for e in _events(_body(*frames))]

    assert events == [ReasoningDelta("think"), TextDelta("x"), Finish("stop", native="eos")]


async def test_the_first_event_is_still_opened(make_openai, upstream):
    upstream.script(Reply(tool_calls=[FakeToolCall("get_time")]))

    events = await collect(make_openai(), ask(tools=(CLOCK,)))

    assert events[0] == Opened()


async def test_count_tokens_is_an_estimate_without_a_call(make_openai, upstream):
    request = ChatRequest("m", [ChatMessage("user", "x" * 40)], tools=(CLOCK,))

    counted = await make_openai().count_tokens(request)
    with pytest.raises(UnsupportedParameter):
        await make_openai().count_tokens(ask(top_k=3))

    schema_tokens = 9  # '{"type":"object","properties":{}}' at four characters a token
    assert (counted.input_tokens, counted.estimated) == (10 + 4 + 2 + schema_tokens, True)
    assert upstream.requests == []


# -- embeddings ------------------------------------------------------------------------------


async def test_embeddings_pass_through_in_order_with_their_usage(make_openai, upstream):
    plain = await make_openai().embed(EmbeddingRequest("e", ["a b", "c"], dimensions=4))
    packed = await make_openai().embed(
        EmbeddingRequest("e", [[1, 2, 3]], encoding_format="base64", user="u-1")
    )

    first, second = upstream.requests
    assert first.path == "/v1/embeddings"
    assert first.body == {"model": "e", "input": ["a b", "c"], "dimensions": 4}
    assert [len(v) for v in plain.vectors] == [4, 4] and plain.input_tokens == 3
    assert second.body == {
        "model": "e",
        "input": [[1, 2, 3]],
        "encoding_format": "base64",
        "user": "u-1",
    }
    assert len(base64.b64decode(packed.vectors[0])) == 8 * 4  # eight float32
    assert packed.input_tokens == 3


async def test_embeddings_keep_the_upstreams_refusal(make_openai, upstream):
    upstream.script(Reply(status=400, error_message="'input' is too long"))

    with pytest.raises(ProviderError) as caught:
        await make_openai().embed(EmbeddingRequest("e", ["x"]))

    assert (caught.value.status, caught.value.message) == (400, "'input' is too long")
