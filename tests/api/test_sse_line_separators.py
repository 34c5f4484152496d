"""Model output with U+2028, U+2029 or U+0085 (line and paragraph separators, NEL): they
are JSON-escaped in every frame the gateway writes (native, OpenAI, Anthropic, and the
replay), so a reader that splits lines on them (JavaScript's old parsers, Python's
str.splitlines) still gets one line of JSON per `data:`; the Python client splits lines only
on CR, LF and CRLF."""

# ruff: noqa: F811  (pytest fixtures imported from compat support are parameters here)
from __future__ import annotations

import json

import httpx
import pytest

from chat_gateway_client import GatewayClient
from gateway.storage import keys
from tests.api.compat.support import make_key  # noqa: F401  (a fixture)
from tests.fake_upstream import Reply
from tests.gateway_fixtures import ORG
from tests.support import bearer, parse_sse

SEPARATORS = "\u2028\u2029\x85"
RAW = [s.encode() for s in SEPARATORS]  # E2 80 A8, E2 80 A9, C2 85 on the wire
CHUNKS = ["one\u2028", "two\u2029", "three\x85", "four"]


def assert_no_raw_separator(raw: bytes) -> None:
    for sep in RAW:
        assert sep not in raw, f"raw {sep!r} in the stream"
    for line in raw.decode().split("\n"):  # every data line is one JSON value, splitlines or not
        assert len(line.splitlines()) <= 1, line


async def test_line_separators_in_model_output_never_split_a_data_line(
    client, alice, upstream, redis
):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=CHUNKS))
    r, raw = await client.stream_chat(alice, session["id"], "separate")
    assert r.status_code == 200
    assert_no_raw_separator(raw)
    stream = parse_sse(raw)
    assert stream.text == "".join(CHUNKS)
    mid = stream.events[0].json["message_id"]
    # the store keeps the text as it was; the replay escapes it the same way
    stored = json.loads((await redis.lrange(keys.messages(conv["id"]), -1, -1))[0])
    assert stored["content"] == "".join(CHUNKS)
    replay = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}", headers=bearer(alice)
    )
    assert_no_raw_separator(replay.content)
    assert parse_sse(replay.content).text == "".join(CHUNKS)


async def test_the_python_client_reads_line_separators_without_crashing(
    gateway_server, alice, upstream, redis
):
    async with GatewayClient(gateway_server.url, alice, org_id=ORG) as gw:
        conv = await gw.create_conversation("separators")
        session = await gw.create_session(conv["id"], "gpt")
        upstream.script(Reply(chunks=CHUNKS))
        events = [e async for e in gw.stream_chat(session["id"], "separate")]
    assert [e.type for e in events] == ["start"] + ["content"] * 4 + ["end"]
    assert "".join(e.delta for e in events) == "".join(CHUNKS)


async def test_the_python_client_splits_only_on_cr_lf_and_crlf():
    from chat_gateway_client.client import sse_lines

    async def chunks():
        # a CR at the end of one read and its LF at the start of the next are one line break
        for piece in [b"a\xe2\x80\xa8b\r", b"\nc\xc2\x85\x0bd\re\n", b"\n", b"f"]:
            yield piece

    lines = [line async for line in sse_lines(chunks())]
    assert lines == ["a\u2028b", "c\x85\x0bd", "e", "", "f"]


@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_line_separators_are_escaped_in_the_compatible_streams(
    gateway_server, client, make_key, upstream, route
):
    key = await make_key()
    upstream.script(Reply(chunks=CHUNKS))
    if route == "openai":
        path, body = "/v1/chat/completions", {"model": "gpt", "stream": True}
    else:
        path, body = "/v1/messages", {"model": "claude", "stream": True, "max_tokens": 50}
    body["messages"] = [{"role": "user", "content": "separate"}]
    async with httpx.AsyncClient(base_url=gateway_server.url, timeout=10) as http:
        r = await http.post(path, json=body, headers=bearer(key.key))
    assert r.status_code == 200
    assert_no_raw_separator(r.content)
    texts = []
    for line in r.content.decode().split("\n"):
        if line.startswith("data: {"):
            data = json.loads(line[6:])
            texts.append(
                data["choices"][0]["delta"].get("content") or ""
                if route == "openai" and data.get("choices")
                else data.get("delta", {}).get("text", "")
            )
    assert "".join(texts) == "".join(CHUNKS)
