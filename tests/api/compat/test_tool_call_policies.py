"""Policies on what a model writes into a tool call's arguments, as on its text: a secret
in a generated `send_email` argument is blocked, a card number redacted, whatever the
upstream's fragmenting (one character per piece, one to three, a split inside the value),
and no character of either ever reaches the client: in an OpenAI stream, an Anthropic
stream and the native SSE route. Redis keeps the redacted arguments and the violations.
The baseline policies are on: secrets in answers are blocked, card numbers redacted."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import json
from collections.abc import Callable

import anthropic
import openai
import pytest

from gateway.storage import keys
from tests.api.compat.support import (
    anthropic_client,
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    openai_client,
    stored_messages,
)
from tests.fake_upstream import FakeToolCall, Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse

SECRET = "sk-proj-" + "Zq8vT3mK9pLw2XcR7nB4yHs6dFj1gUe5aQo0iVt"
CARD = "4111 1111 1111 1111"  # Luhn-valid
SEND_EMAIL = {
    "type": "function",
    "function": {
        "name": "send_email",
        "parameters": {
            "type": "object",
            "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
        },
    },
}


def arguments(value: str) -> str:
    return json.dumps({"to": "bob@example.com", "body": f"Here it is: {value} - thanks"})


def ones(text: str) -> list[str]:
    return list(text)


def one_to_three(text: str) -> list[str]:
    out, i, size = [], 0, 1
    while i < len(text):
        out.append(text[i : i + size])
        i += size
        size = size % 3 + 1
    return out


def inside(secret: str) -> Callable[[str], list[str]]:
    """Three pieces, cut inside the secret itself."""

    def split(text: str) -> list[str]:
        at = text.index(secret)
        cut1, cut2 = at + len(secret) // 3, at + 2 * len(secret) // 3
        return [text[:cut1], text[cut1:cut2], text[cut2:]]

    return split


FRAGMENTINGS = {"1-char": lambda s: ones, "1-3-char": lambda s: one_to_three, "inside": inside}


def leaked(seen: str, value: str) -> list[str]:
    """Any run of 6 characters of the value's digits/letters that reached the client."""
    core = value.replace(" ", "")
    flat = seen.replace(" ", "")
    return [core[i : i + 6] for i in range(len(core) - 5) if core[i : i + 6] in flat]


async def violations(redis) -> list[dict]:
    return [json.loads(f[b"v"]) for _, f in await redis.xrange(keys.violations(ORG))]


def reply(value: str, fragmenting: str) -> Reply:
    text = arguments(value)
    pieces = FRAGMENTINGS[fragmenting](value)(text)
    assert "".join(pieces) == text
    return Reply(tool_calls=[FakeToolCall("send_email", pieces, id="call_mail")])


# -- the OpenAI-compatible stream ------------------------------------------------------------


@pytest.mark.parametrize("fragmenting", list(FRAGMENTINGS))
@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_openai_stream_never_sends_a_secret_in_arguments(
    gateway_server, make_key, upstream, redis, fragmenting, model
):
    key = await make_key()
    upstream.script(reply(SECRET, fragmenting))
    stream = await openai_client(gateway_server, key.key).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "mail bob the key"}],
        tools=[SEND_EMAIL],
        stream=True,
    )
    seen = []
    with pytest.raises(openai.APIError) as err:
        async for chunk in stream:
            for call in chunk.choices[0].delta.tool_calls or ():
                seen.append(call.function.arguments or "")
    assert err.value.body["code"] == "policy_blocked"
    assert leaked("".join(seen), SECRET) == []
    assert "".join(seen).startswith('{"to": "bob@example.com"')  # what came before went out
    [v] = await violations(redis)
    assert (v["policy_id"], v["stage"], v["action"]) == ("secrets-in-answer", "during", "block")
    assert SECRET not in json.dumps(v)


@pytest.mark.parametrize("fragmenting", list(FRAGMENTINGS))
async def test_openai_stream_redacts_a_card_in_arguments(
    gateway_server, client, make_key, upstream, redis, fragmenting
):
    key = await make_key("kim")
    conv = await client.create_conversation(key.key)
    upstream.script(reply(CARD, fragmenting))
    sdk = openai_client(gateway_server, key.key)
    async with sdk.chat.completions.stream(
        model="claude",
        messages=[{"role": "user", "content": "mail bob my card"}],
        tools=[SEND_EMAIL],
        extra_headers={"X-Conversation-Id": conv["id"]},
    ) as stream:
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.arguments == arguments("[REDACTED:card]")
    assert json.loads(call.function.arguments)["body"] == "Here it is: [REDACTED:card] - thanks"
    _, answer = await stored_messages(redis, conv["id"])
    assert answer["tool_calls"][0]["arguments"] == arguments("[REDACTED:card]")
    assert answer["policy"] == [{"id": "payment-cards", "action": "redact", "stage": "during"}]


# -- the Anthropic-compatible stream ---------------------------------------------------------


@pytest.mark.parametrize("fragmenting", list(FRAGMENTINGS))
@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_anthropic_stream_never_sends_a_secret_in_input(
    gateway_server, make_key, upstream, redis, fragmenting, model
):
    key = await make_key()
    upstream.script(reply(SECRET, fragmenting))
    tool = {"name": "send_email", "input_schema": SEND_EMAIL["function"]["parameters"]}
    stream = await anthropic_client(gateway_server, key.key).messages.create(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": "mail bob the key"}],
        tools=[tool],
        stream=True,
    )
    seen = []
    with pytest.raises(anthropic.APIError) as err:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                seen.append(event.delta.partial_json)
    assert "blocked" in str(err.value.body)
    assert leaked("".join(seen), SECRET) == []
    [v] = await violations(redis)
    assert (v["policy_id"], v["action"]) == ("secrets-in-answer", "block")


@pytest.mark.parametrize("fragmenting", list(FRAGMENTINGS))
async def test_anthropic_stream_redacts_a_card_in_input(
    gateway_server, make_key, upstream, fragmenting
):
    key = await make_key()
    upstream.script(reply(CARD, fragmenting))
    tool = {"name": "send_email", "input_schema": SEND_EMAIL["function"]["parameters"]}
    sdk = anthropic_client(gateway_server, key.key)
    async with sdk.messages.stream(
        model="gpt",
        max_tokens=200,
        messages=[{"role": "user", "content": "mail bob my card"}],
        tools=[tool],
    ) as stream:
        final = await stream.get_final_message()
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert use.input == {"to": "bob@example.com", "body": "Here it is: [REDACTED:card] - thanks"}


# -- the native SSE route: tool_call events -------------------------------------------------


@pytest.mark.parametrize("fragmenting", list(FRAGMENTINGS))
@pytest.mark.parametrize("value", [SECRET, CARD], ids=["secret", "card"])
async def test_native_stream_tool_calls_are_guarded_and_resumable(
    client, alice, upstream, redis, fragmenting, value
):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(reply(value, fragmenting))
    r, raw = await client.stream_chat(alice, session["id"], "mail bob")
    stream = parse_sse(raw)
    calls = [e for e in stream.events if e.event == "tool_call"]
    sent = "".join(e.json["arguments"] for e in calls)
    assert leaked(sent, value) == [] and leaked(raw.decode(), value) == []
    assert calls[0].json["id"] == "call_mail" and calls[0].json["name"] == "send_email"
    assert [e.id.rsplit(":", 1)[1] for e in calls] == [str(i + 1) for i in range(len(calls))]
    _, answer = await stored_messages(redis, conv["id"])
    end = stream.events[-1].json
    if value == SECRET:
        assert [e.event for e in stream.events[-2:]] == ["error", "end"]
        assert end["finish_reason"] == "policy_blocked" and answer["status"] == "blocked"
    else:
        assert sent == arguments("[REDACTED:card]")
        assert end["finish_reason"] == "tool_calls" and answer["status"] == "complete"
        assert answer["tool_calls"] == [
            {"id": "call_mail", "name": "send_email", "arguments": sent}
        ]
    # the resume route replays the same tool_call events, from any point
    message_id = stream.events[0].json["message_id"]
    r = await client.http.get(
        "/api/conversation/stream",
        params={"org_id": ORG, "message_id": message_id},
        headers={**bearer(alice), "Last-Event-ID": f"{message_id}:1"},
    )
    replayed = parse_sse(r.content)
    again = [e for e in replayed.events if e.event == "tool_call"]
    assert [(e.id, e.json) for e in again] == [(e.id, e.json) for e in calls[1:]]
