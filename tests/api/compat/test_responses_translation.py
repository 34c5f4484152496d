"""The Responses API's request as the normalized request, and a turn's events as response
events, without a server: what each input item becomes, what is refused (with the field it
names), and that every frame the builder writes is a documented event."""

from __future__ import annotations

import json

import pytest

from gateway.api.compat.responses_input import MAX_INPUT_ITEMS, ResponsesRequest, translate
from gateway.api.compat.responses_stream import Output
from gateway.api.schemas.openai_responses import ResponseStreamFrame
from gateway.errors import BadRequest
from gateway.turn import Delta
from gateway.turn.events import ReasoningDelta, ReasoningEnd, RefusalDelta, ToolCallDelta
from providers.base import (
    ChatMessage,
    DocumentPart,
    ForcedTool,
    ImagePart,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def body(**fields) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "gpt", "input": "hi", **fields})


def test_a_text_input_with_instructions_is_a_system_and_a_user_turn():
    done = translate(body(input="Hello", instructions="Be brief."), [])

    assert done.request.messages == [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hello"),
    ]


def test_an_agent_loop_input_becomes_assistant_tool_calls_and_tool_results():
    items = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Look it up."}],
            "encrypted_content": "sig-1",
        },
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "noon"}],
        },
    ]

    messages = translate(body(input=items), []).request.messages

    assert messages == [
        ChatMessage("system", "Use tools."),
        ChatMessage("user", "Paris?"),
        ChatMessage(
            "assistant",
            [ReasoningPart("Look it up.", "sig-1"), TextPart("Checking.")],
            tool_calls=(
                ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
                ToolCall("call_2", "get_time", "{}"),
            ),
        ),
        ChatMessage("tool", "18C", tool_call_id="call_1"),
        ChatMessage("tool", [TextPart("noon")], tool_call_id="call_2"),
    ]


def test_prior_turns_come_between_instructions_and_the_input():
    prior = [ChatMessage("user", "first"), ChatMessage("assistant", "answer")]

    messages = translate(body(input="second", instructions="sys"), prior).request.messages

    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1] == ChatMessage("user", "second")


def test_images_and_files_are_parts():
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
                {
                    "type": "input_file",
                    "filename": "a.pdf",
                    "file_data": "data:application/pdf;base64,JVBERi0xLjQ=",
                },
            ],
        }
    ]

    (message,) = translate(body(input=items), []).request.messages

    assert message.content == [
        TextPart("What is this?"),
        ImagePart(url="https://example.com/a.png", detail="low"),
        DocumentPart(data="JVBERi0xLjQ=", media_type="application/pdf", title="a.pdf"),
    ]


def test_tools_choice_format_and_sampling_are_forwarded():
    done = translate(
        body(
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            parallel_tool_calls=False,
            text={
                "format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}},
                "verbosity": "low",
            },
            reasoning={"effort": "low", "summary": "auto"},
            temperature=0.3,
            top_p=0.9,
            max_output_tokens=100,
            user="u-1",
            metadata={"k": "v"},
            service_tier="auto",
            prompt_cache_key="pk",
        ),
        [],
    )

    request = done.request
    assert request.tools == (
        Tool(
            "get_weather",
            "The weather in a city",
            WEATHER["parameters"],
            strict=True,
        ),
    )
    assert request.tool_choice == ForcedTool("get_weather")
    assert request.parallel_tool_calls is False
    assert request.response_format == ResponseFormat("json_schema", {"type": "object"}, "w")
    assert (request.reasoning_effort, request.temperature, request.top_p) == ("low", 0.3, 0.9)
    assert (request.max_output_tokens, request.user, request.metadata) == (100, "u-1", {"k": "v"})
    assert request.service_tier == "auto"
    assert (request.native, request.native_api) == (
        {"prompt_cache_key": "pk", "verbosity": "low"},
        "openai",
    )


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"tools": [WEATHER, {"type": "code_interpreter"}]}, "tools.1.type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input.0.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
        ({"input": [{"type": "message", "role": "tool", "content": "x"}]}, "input.0.role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input.0.content.0.type",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"truncation": "auto"}, "truncation"),
        ({"include": ["message.output_text.logprobs"]}, "include.0"),
        (
            {"stream_options": {"include_obfuscation": True}, "stream": True},
            "stream_options.include_obfuscation",
        ),
        ({"input": [{"role": "user", "content": "x"}] * (MAX_INPUT_ITEMS + 1)}, "input"),
        ({"input": []}, "input"),
    ],
)
def test_what_the_gateway_cannot_run_is_refused_naming_the_field(fields, param):
    with pytest.raises(BadRequest) as refused:
        translate(body(**fields), [])

    assert refused.value.param is not None
    assert ".".join(map(str, refused.value.param)) == param


def test_include_of_hosted_tools_results_is_accepted_with_nothing_to_include():
    done = translate(body(include=["file_search_call.results", "reasoning.encrypted_content"]), [])

    assert done.encrypted_reasoning is True


# -- the events ------------------------------------------------------------------------------


def frames_of(chunks: list[bytes]) -> list[ResponseStreamFrame]:
    """Each `event:`/`data:` frame, validated against the documented events."""
    out = []
    for raw in b"".join(chunks).decode().split("\n\n"):
        if not raw:
            continue
        event_line, data_line = raw.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        out.append(
            ResponseStreamFrame.model_validate(
                {"event": event_line[7:], "data": json.loads(data_line[6:])}
            )
        )
    return out


def test_reasoning_text_and_calls_become_items_in_order():
    output = Output("abc", encrypted_reasoning=True)
    events = [
        ReasoningDelta("Think"),
        ReasoningDelta("ing."),
        ReasoningEnd(signature="sig"),
        Delta("Let me "),
        Delta("check."),
        ToolCallDelta(0, "call_1", "get_weather", '{"ci'),
        ToolCallDelta(0, arguments='ty":"Paris"}'),
        ToolCallDelta(1, "call_2", "get_time", "{}"),
    ]

    chunks = [output.feed(ev) for ev in events] + [output.close()]
    frames = frames_of(chunks)

    assert [f.event for f in frames] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert [f.data.sequence_number for f in frames] == list(range(len(frames)))
    items = [i.model_dump(exclude_none=True) for i in output.items]
    assert items == [
        {
            "id": "rs_abc_0",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Thinking."}],
            "encrypted_content": "sig",
        },
        {
            "id": "msg_abc_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}
            ],
        },
        {
            "id": "fc_abc_2",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {
            "id": "fc_abc_3",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_2",
            "name": "get_time",
            "arguments": "{}",
        },
    ]


def test_a_refusal_is_its_own_content_part():
    output = Output("k", encrypted_reasoning=False)

    chunks = [output.feed(Delta("I ")), output.feed(RefusalDelta("can't.")), output.close()]

    names = [f.event for f in frames_of(chunks)]
    assert "response.refusal.delta" in names and "response.refusal.done" in names
    assert output.items[0].model_dump()["content"] == [
        {"type": "output_text", "text": "I ", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "can't."},
    ]


def test_the_signature_stays_out_unless_asked_for():
    output = Output("k", encrypted_reasoning=False)

    output.feed(ReasoningDelta("x"))
    output.feed(ReasoningEnd(signature="sig"))
    output.close()

    assert output.items[0].model_dump(exclude_none=True) == {
        "id": "rs_k_0",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "x"}],
    }


def test_text_deltas_escape_what_json_must():
    output = Output("k", encrypted_reasoning=False)

    chunks = [output.feed(Delta('say "hi"\n\u2028\\')), output.close()]

    (delta,) = [f for f in frames_of(chunks) if f.event == "response.output_text.delta"]
    assert delta.data.delta == 'say "hi"\n\u2028\\'  # type: ignore[union-attr]
