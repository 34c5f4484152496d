"""The answer models (gateway/api/schemas/) against what the gateway writes without them: the
stream's per-token byte templates, which never go through pydantic for speed. Every frame of
every encoder, in each of its variants, is valid against its model and against the document's
component; the document's components are the models' own schemas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.api import sse
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import openai as openai_compat
from gateway.api.conversation_service import CreateConversation
from gateway.api.openapi import REF, DocumentSchema, add_body, answer_components
from gateway.api.schemas import anthropic, openai, stream
from gateway.api.schemas.common import Error, Schema
from gateway.api.schemas.repository import PromptAnswer
from gateway.errors import error_body
from gateway.storage.records import Totals
from gateway.turn import ChatEvent, Delta, End, ErrorEvent, Start
from gateway.turn.events import (
    Logprobs,
    ReasoningDelta,
    ReasoningEnd,
    RefusalDelta,
    ToolCallDelta,
)
from providers.base import TokenLogprob
from tests.api.document import app_document, conforms, sse_frames, violations

# what a delta may hold: JSON escapes, a line break (the frame must stay one line), a line
# separator, non-ASCII, an emoji (a surrogate pair in JSON's \u escapes)
AWKWARD = 'say "hi" \\ then\nnew line\ttab \u2028 caf\u00e9 \U0001f600'
START = Start("m-1", "c-1", "s-1", "gpt", "u-1")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return app_document()


async def replay(*events: ChatEvent) -> AsyncIterator[ChatEvent]:
    for ev in events:
        yield ev


async def written(frames: AsyncIterator[bytes]) -> bytes:
    return b"".join([f async for f in frames])


# -- the gateway's own stream ------------------------------------------------------------------


async def test_every_frame_of_a_stream_is_a_chat_stream_event(document):
    end = End(
        "m-1",
        "length",
        12,
        48,
        totals=Totals(100, 200, cost_nusd=7_500),
        usage_estimated=True,
        policy=[{"id": "no-cards", "action": "redact"}],
        stored=False,
    )
    raw = await written(
        sse.encode(
            replay(START, Delta("Hel"), Delta(AWKWARD), ErrorEvent("provider_error", "x"), end),
            start_extra=lambda ev: {"resume_token": "tok"},
        )
    )
    frames = sse_frames(raw)
    assert [f["event"] for f in frames] == ["start", "content", "content", "error", "end"]
    for frame in frames:
        stream.ChatStreamEvent.model_validate(frame)
        conforms(document, "ChatStreamEvent", frame)
        conforms(document, f"{frame['event'].capitalize()}Frame", frame)
    assert frames[2]["data"] == {"delta": AWKWARD} and frames[2]["id"] == "m-1:2"
    assert all(len(block.split(b"\n")) <= 3 for block in raw.split(b"\n\n"))  # data: one line
    assert frames[0]["data"]["resume_token"] == "tok"
    assert frames[4]["data"] == {
        "message_id": "m-1",
        "finish_reason": "length",
        "usage": {"input_tokens": 12, "output_tokens": 48, "estimated": True},
        "conversation_usage": {"tokens_in": 100, "tokens_out": 200, "cost": 0.0000075},
        "policy": [{"id": "no-cards", "action": "redact"}],
        "stored": False,
    }


async def test_what_an_end_omits_and_a_resumed_stream_numbers(document):
    raw = await written(
        sse.encode(replay(START, Delta("a"), End("m-1", "stop", 1, 1)), start_seq=5)
    )
    start, content, end = sse_frames(raw)
    assert "resume_token" not in start["data"] and start["data"]["user_message_id"] == "u-1"
    assert content["id"] == "m-1:6"  # after the client's Last-Event-ID
    assert end["data"] == {
        "message_id": "m-1",
        "finish_reason": "stop",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    for frame in (start, content, end):
        conforms(document, "ChatStreamEvent", frame)


def test_a_frame_the_contract_does_not_allow_is_refused(document):
    bad = [
        {"event": "content", "data": {"delta": "x"}},  # no id
        {"event": "content", "id": "no-seq", "data": {"delta": "x"}},
        {"event": "end", "data": {"message_id": "m", "finish_reason": "maybe", "usage": {}}},
        {"event": "progress", "data": {}},
    ]
    for frame in bad:
        assert violations(document, "ChatStreamEvent", frame), frame
        with pytest.raises(ValidationError):
            stream.ChatStreamEvent.model_validate(frame)


# -- the OpenAI-compatible stream -------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
async def test_every_openai_chunk_is_a_stream_frame(document, include_usage):
    raw = await written(
        openai_compat.encode(
            replay(START, Delta(AWKWARD), End("m-1", "stop", 3, 4)), include_usage=include_usage
        )
    )
    frames = sse_frames(raw)
    assert frames[-1] == {"data": "[DONE]"}
    assert len(frames) == (5 if include_usage else 4)  # role, content, finish, usage?, done
    for frame in frames:
        openai.ChatCompletionStreamFrame.model_validate(frame)
        conforms(document, "ChatCompletionStreamFrame", frame)
    chunks = [openai.ChatCompletionChunk.model_validate(f["data"]) for f in frames[:-1]]
    assert chunks[1].choices[0].delta.content == AWKWARD
    assert chunks[2].choices[0].finish_reason == "stop"
    if include_usage:
        assert chunks[3].choices == [] and chunks[3].usage is not None
        assert chunks[3].usage.total_tokens == 7
    else:
        assert all("usage" not in f["data"] for f in frames[:-1])


async def test_a_failed_openai_stream_ends_with_an_error_frame(document):
    raw = await written(
        openai_compat.encode(
            replay(
                START, Delta("a"), ErrorEvent("provider_error", "boom"), End("m-1", "error", 1, 1)
            ),
            include_usage=False,
        )
    )
    frames = sse_frames(raw)
    assert frames[-1]["data"]["error"]["code"] == "provider_error"
    for frame in frames:
        parsed = openai.ChatCompletionStreamFrame.model_validate(frame)
        conforms(document, "ChatCompletionStreamFrame", frame)
    assert isinstance(parsed.root, openai.ChunkErrorFrame)
    assert violations(document, "ChatCompletionStreamFrame", {"data": {"id": "x"}})


# every kind of event an answer beyond plain text carries, in the order a model may say them
STRUCTURED = (
    START,
    ReasoningDelta("think"),
    ReasoningEnd(signature="sig=="),
    ReasoningEnd(redacted="opaque"),
    Delta(AWKWARD),
    RefusalDelta("I will not"),
    Logprobs((TokenLogprob("hi", -0.1, (104, 105), (TokenLogprob("ho", -2.0),)),)),
    ToolCallDelta(0, "call_1", "get_weather", '{"ci'),
    ToolCallDelta(0, arguments='ty": "Paris"}'),
    ToolCallDelta(1, "call_2", "get_time", ""),
    End("m-1", "tool_calls", 3, 4, cached_input_tokens=1, reasoning_tokens=2),
)


async def test_every_openai_chunk_of_a_structured_answer_is_a_stream_frame(document):
    frames = sse_frames(
        await written(openai_compat.encode(replay(*STRUCTURED), include_usage=True))
    )
    for frame in frames:
        openai.ChatCompletionStreamFrame.model_validate(frame)
        conforms(document, "ChatCompletionStreamFrame", frame)
    chunks = [openai.ChatCompletionChunk.model_validate(f["data"]) for f in frames[:-1]]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[1].reasoning_content == "think"  # signatures: nothing OpenAI can carry
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert [(c.index, c.id, c.function.name) for c in calls] == [
        (0, "call_1", "get_weather"),
        (0, None, None),
        (1, "call_2", "get_time"),
    ]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens_details.cached_tokens == 1
    assert usage.completion_tokens_details.reasoning_tokens == 2


async def test_every_anthropic_event_of_a_structured_answer_is_a_stream_frame(document):
    frames = sse_frames(await written(anthropic_compat.encode(replay(*STRUCTURED), input_tokens=2)))
    for frame in frames:
        anthropic.AnthropicStreamFrame.model_validate(frame)
        conforms(document, "AnthropicStreamFrame", frame)
    starts = [f["data"] for f in frames if f["event"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "thinking"),
        (1, "redacted_thinking"),
        (2, "text"),
        (3, "tool_use"),
        (4, "tool_use"),
    ]
    deltas = [f["data"]["delta"] for f in frames if f["event"] == "content_block_delta"]
    assert [d["type"] for d in deltas] == [
        "thinking_delta",
        "signature_delta",
        "text_delta",
        "text_delta",  # a refusal is text, ended by stop_reason refusal
        "input_json_delta",
        "input_json_delta",
    ]
    end = next(f["data"] for f in frames if f["event"] == "message_delta")
    assert end["delta"]["stop_reason"] == "tool_use"
    assert end["usage"] == {
        "input_tokens": 2,
        "output_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1,
    }


async def test_a_tool_call_frame_of_the_native_stream_is_a_chat_stream_event(document):
    raw = await written(
        sse.encode(replay(START, Delta("a"), *STRUCTURED[7:10], End("m-1", "tool_calls", 1, 1)))
    )
    frames = sse_frames(raw)
    assert [(f["event"], f.get("id")) for f in frames] == [
        ("start", None),
        ("content", "m-1:1"),
        ("tool_call", "m-1:2"),
        ("tool_call", "m-1:3"),
        ("tool_call", "m-1:4"),
        ("end", None),
    ]
    for frame in frames:
        stream.ChatStreamEvent.model_validate(frame)
        conforms(document, "ChatStreamEvent", frame)
    assert frames[2]["data"] == {
        "index": 0,
        "id": "call_1",
        "name": "get_weather",
        "arguments": '{"ci',
    }
    assert frames[3]["data"] == {"index": 0, "arguments": 'ty": "Paris"}'}


# -- the Anthropic-compatible stream ----------------------------------------------------------


async def test_every_anthropic_event_is_a_stream_frame(document):
    raw = await written(
        anthropic_compat.encode(
            replay(START, Delta(AWKWARD), End("m-1", "length", 3, 4)), input_tokens=2
        )
    )
    frames = sse_frames(raw)
    assert [f["event"] for f in frames] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for frame in frames:
        anthropic.AnthropicStreamFrame.model_validate(frame)
        conforms(document, "AnthropicStreamFrame", frame)
    assert frames[3]["data"]["delta"]["text"] == AWKWARD
    assert frames[5]["data"]["delta"]["stop_reason"] == "max_tokens"


async def test_a_failed_anthropic_stream_ends_with_an_error_event(document):
    raw = await written(
        anthropic_compat.encode(
            replay(START, ErrorEvent("policy_blocked", "no"), End("m-1", "policy_blocked", 1, 0)),
            input_tokens=2,
        )
    )
    frames = sse_frames(raw)
    assert frames[-1] == {
        "event": "error",
        "data": {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}},
    }
    for frame in frames:
        anthropic.AnthropicStreamFrame.model_validate(frame)
        conforms(document, "AnthropicStreamFrame", frame)


def test_an_anthropic_frame_whose_event_is_not_its_data_type_is_refused():
    with pytest.raises(ValidationError, match="carries data of type"):
        anthropic.AnthropicStreamFrame.model_validate(
            {"event": "message_stop", "data": {"type": "ping"}}
        )


# -- error bodies and the document's components ----------------------------------------------


def test_the_error_bodies_are_their_models(document):
    import json

    body = json.loads(error_body("validation_error", "limit: must be an integer"))
    Error.model_validate(body)
    conforms(document, "Error", body)
    openai_body = openai_compat.error_json(400, "unsupported_parameter", "n: no", ("n",))
    assert openai_body.model_dump()["error"]["param"] == "n"
    conforms(document, "OpenAIError", openai_body.model_dump(mode="json"))
    conforms(document, "AnthropicError", anthropic_compat.error_json(404, "x").model_dump())


def test_the_documents_components_are_the_models_own_schemas(document):
    for model in (PromptAnswer, stream.StreamEnd, openai.ChatCompletion):
        own = model.model_json_schema(
            mode="serialization", ref_template=REF + "{model}", schema_generator=DocumentSchema
        )
        own.pop("$defs", None)
        assert document["components"]["schemas"][model.__name__] == own
    # a field the answer omits while empty is not required; one it always sends is
    prompt = document["components"]["schemas"]["PromptAnswer"]
    assert {"success", "message", "finishReason"} <= set(prompt["required"])
    assert "policy" not in prompt["required"] and "usageEstimated" not in prompt["required"]


def test_two_answer_models_with_one_class_name_are_refused():
    def first() -> type[Schema]:
        class Usage(Schema):
            tokens: int

        return Usage

    def second() -> type[Schema]:
        class Usage(Schema):
            words: int

        return Usage

    with pytest.raises(ValueError, match="distinct class names"):
        answer_components([first(), second()])


def test_a_request_body_may_not_take_an_answers_component_name():
    schemas = answer_components([stream.StopAccepted])
    with pytest.raises(ValueError, match="StopAccepted"):
        add_body(schemas, "StopAccepted", CreateConversation)
