"""Every option of each API's request, on both provider kinds behind it: forwarded (what the
upstream received is read from the fake upstream's request log, which, like the real APIs,
refuses fields it does not know), or refused with 400 `unsupported_parameter` naming the
field as the client's API names it, before any upstream call and with no tokens counted.
Nothing is dropped silently."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.api.compat.support import (
    anthropic_client,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    usage,
)
from tests.fake_upstream import Reply

QUESTION = [{"role": "user", "content": "Count to three."}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
ANTHROPIC_TOOL = {"name": "f", "input_schema": {"type": "object"}}
REFUSED = object()  # the expected upstream body: none, the gateway answers 400


def dig(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for step in path.split("."):
        value = value[step]
    return value


# (what the OpenAI client sends, what an OpenAI upstream gets, what an Anthropic upstream
# gets); a refusal names the field
OPENAI_CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("temperature", {"temperature": 0.3}, {"temperature": 0.3}, {"temperature": 0.3}),
    ("top_p", {"top_p": 0.9}, {"top_p": 0.9}, {"top_p": 0.9}),
    ("top_k", {"extra_body": {"top_k": 5}}, REFUSED, {"top_k": 5}),
    (
        "stop",
        {"stop": ["END", "STOP"]},
        {"stop": ["END", "STOP"]},
        {"stop_sequences": ["END", "STOP"]},
    ),
    ("stop", {"stop": "END"}, {"stop": ["END"]}, {"stop_sequences": ["END"]}),
    ("seed", {"seed": 7}, {"seed": 7}, REFUSED),
    ("presence_penalty", {"presence_penalty": 0.5}, {"presence_penalty": 0.5}, REFUSED),
    ("frequency_penalty", {"frequency_penalty": -0.5}, {"frequency_penalty": -0.5}, REFUSED),
    ("frequency_penalty", {"frequency_penalty": 0}, {"frequency_penalty": 0}, {}),  # asks nothing
    ("logit_bias", {"logit_bias": {"50256": -100}}, {"logit_bias": {"50256": -100}}, REFUSED),
    (
        "logprobs",
        {"logprobs": True, "top_logprobs": 2},
        {"logprobs": True, "top_logprobs": 2},
        REFUSED,
    ),
    ("n", {"n": 2}, {"n": 2}, REFUSED),
    ("user", {"user": "u-17"}, {"user": "u-17"}, {"metadata.user_id": "u-17"}),
    ("metadata", {"metadata": {"team": "a"}}, {"metadata": {"team": "a"}}, REFUSED),
    ("service_tier", {"service_tier": "auto"}, {"service_tier": "auto"}, {"service_tier": "auto"}),
    ("service_tier", {"service_tier": "flex"}, {"service_tier": "flex"}, REFUSED),
    (
        "reasoning_effort",
        {"reasoning_effort": "low"},
        {"reasoning_effort": "low"},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048},
    ),
    (
        "parallel_tool_calls",
        {"tools": [TOOL], "parallel_tool_calls": False},
        {"parallel_tool_calls": False},
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    (
        "tool_choice",
        {"tools": [TOOL], "tool_choice": "required"},
        {"tool_choice": "required"},
        {"tool_choice": {"type": "any"}},
    ),
    (
        "response_format",
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "json_object"}},
        {"tool_choice": {"type": "tool", "name": "json_response"}},
    ),
    (
        "max_completion_tokens",
        {"max_completion_tokens": 50},
        {"max_tokens": 50},
        {"max_tokens": 50},
    ),
    ("store", {"store": True}, {"store": True}, REFUSED),
    ("verbosity", {"verbosity": "low"}, {"verbosity": "low"}, REFUSED),
    (
        "prediction",
        {"prediction": {"type": "content", "content": "1 2 3"}},
        {"prediction": {"type": "content", "content": "1 2 3"}},
        REFUSED,
    ),  # noqa: E501
]


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize(
    "name, sent, to_openai, to_anthropic", OPENAI_CASES, ids=[c[0] for c in OPENAI_CASES]
)
async def test_every_chat_completions_option(
    gateway_server, client, make_key, upstream, redis, model, name, sent, to_openai, to_anthropic
):
    key = await make_key()
    sdk = openai_client(gateway_server, key.key)
    expected = to_openai if model == "gpt" else to_anthropic
    upstream.script(Reply(chunks=["1 2 3"]))
    counted = await usage(redis)
    if expected is REFUSED:
        with pytest.raises(openai.BadRequestError) as err:
            await sdk.chat.completions.create(model=model, messages=QUESTION, **sent)
        assert err.value.code == "unsupported_parameter"
        assert err.value.param == name and err.value.body["message"].startswith(f"{name}: ")
        assert err.value.response.headers["x-should-retry"] == "false"
        assert upstream.requests == []
        # nothing was generated: the model's counters got no token
        assert {k: v for k, v in (await usage(redis)).items() if v} == {
            k: v for k, v in counted.items() if v
        }
        return
    done = await sdk.chat.completions.create(model=model, messages=QUESTION, **sent)
    (received,) = upstream.requests
    for path, value in expected.items():
        assert dig(received.body, path) == value, path
    if name == "n":
        assert [c.index for c in done.choices] == [0, 1]
        assert all(c.message.content == "1 2 3" for c in done.choices)
    if name == "logprobs":
        assert [t.token for t in done.choices[0].logprobs.content] == ["1 2 3"]
        assert len(done.choices[0].logprobs.content[0].top_logprobs) == 2


ANTHROPIC_CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    # (what the Anthropic client sends, what an Anthropic upstream gets, an OpenAI upstream)
    ("temperature", {"temperature": 0.5}, {"temperature": 0.5}, {"temperature": 0.5}),
    ("top_p", {"top_p": 0.8}, {"top_p": 0.8}, {"top_p": 0.8}),
    ("top_k", {"top_k": 3}, {"top_k": 3}, REFUSED),
    ("stop_sequences", {"stop_sequences": ["END"]}, {"stop_sequences": ["END"]}, {"stop": ["END"]}),
    (
        "metadata",
        {"metadata": {"user_id": "u-9"}},
        {"metadata": {"user_id": "u-9"}},
        {"user": "u-9"},
    ),
    (
        "service_tier",
        {"service_tier": "standard_only"},
        {"service_tier": "standard_only"},
        {"service_tier": "default"},
    ),  # noqa: E501
    (
        "thinking",
        {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"reasoning_effort": "medium"},
    ),
    (
        "output_config",
        {"output_config": {"effort": "high"}, "max_tokens": 8192},
        {"thinking": {"type": "enabled", "budget_tokens": 4096}},
        {"reasoning_effort": "high"},
    ),
    (
        "tool_choice",
        {
            "tools": [ANTHROPIC_TOOL],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        {"tool_choice": "auto", "parallel_tool_calls": False},
    ),
    ("container", {"container": "container_011"}, {"container": "container_011"}, REFUSED),
    ("inference_geo", {"inference_geo": "us"}, {"inference_geo": "us"}, REFUSED),
]


@pytest.mark.parametrize("model", ["claude", "gpt"])
@pytest.mark.parametrize(
    "name, sent, to_anthropic, to_openai", ANTHROPIC_CASES, ids=[c[0] for c in ANTHROPIC_CASES]
)
async def test_every_messages_option(
    gateway_server, client, make_key, upstream, redis, model, name, sent, to_anthropic, to_openai
):
    key = await make_key()
    sdk = anthropic_client(gateway_server, key.key)
    expected = to_anthropic if model == "claude" else to_openai
    upstream.script(Reply(chunks=["1 2 3"]))
    arguments = {"max_tokens": 100, **sent}
    # anthropic 2.x dropped temperature, top_p and top_k from create(); the API takes them
    typed = ("max_tokens", "metadata", "stop_sequences", "tools", "tool_choice", "thinking")
    body = {k: v for k, v in arguments.items() if k in typed or k == "service_tier"}
    extra = {k: v for k, v in arguments.items() if k not in body}
    if expected is REFUSED:
        with pytest.raises(anthropic.BadRequestError) as err:
            await sdk.messages.create(model=model, messages=QUESTION, extra_body=extra, **body)
        assert err.value.body["error"]["message"].startswith(f"{name}: ")
        assert err.value.response.headers["x-should-retry"] == "false"
        assert upstream.requests == []
        return
    await sdk.messages.create(model=model, messages=QUESTION, extra_body=extra, **body)
    (received,) = upstream.requests
    for path, value in expected.items():
        assert dig(received.body, path) == value, path


async def test_a_stop_sequence_is_echoed_as_the_upstream_said_it(
    gateway_server, make_key, upstream
):
    key = await make_key()
    upstream.script(Reply(chunks=["one ", "two ", "END", " three"]))
    sdk = anthropic_client(gateway_server, key.key)
    done = await sdk.messages.create(
        model="claude", max_tokens=50, messages=QUESTION, stop_sequences=["END"]
    )
    assert (done.stop_reason, done.stop_sequence) == ("stop_sequence", "END")
    assert done.content[0].text == "one two "

    upstream.script(Reply(chunks=["one ", "two ", "END", " three"]))
    async with sdk.messages.stream(
        model="claude", max_tokens=50, messages=QUESTION, stop_sequences=["END"]
    ) as stream:
        final = await stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END")
