"""Input limits through real HTTP: body size (413), encoding, JSON nesting, control
characters, numbers, duplicate keys, Content-Type, prompt length and query parameters.
Every refusal is in the contract's error shape (or the compatible APIs' own), never a 500,
and leaves Redis exactly as it was and the upstream untouched."""

from __future__ import annotations

import json

import pytest

from gateway.api.inputs import MAX_JSON_DEPTH, MAX_JSON_INT
from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import bearer

MAX_BODY = 1_048_576  # the default max_body_bytes
MAX_PROMPT = 200_000  # the default max_prompt_chars


@pytest.fixture
async def session(client, alice):
    conv = await client.create_conversation(alice)
    return await client.create_session(alice, conv["id"], "gpt")


async def post_raw(
    client, token, body: bytes, *, path=None, content_type="application/json", **headers
):
    path = path or f"/api/conversation/create?org_id={ORG}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await client.http.post(path, content=body, headers={**bearer(token), **headers})


def assert_refused(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["code"] == code and body["message"], body


async def test_a_body_over_the_limit_is_413_by_content_length_or_by_counting(client, alice, redis):
    before = await snapshot(redis)
    r = await post_raw(client, alice, b'{"title": "' + b"x" * MAX_BODY + b'"}')
    assert_refused(r, 413, "payload_too_large")

    async def chunked():  # no Content-Length: the gateway counts what arrives
        yield b'{"title": "'
        for _ in range(MAX_BODY // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    r = await client.http.post(
        f"/api/conversation/create?org_id={ORG}",
        content=chunked(),
        headers={**bearer(alice), "Content-Type": "application/json"},
    )
    assert_refused(r, 413, "payload_too_large")
    assert await snapshot(redis) == before


@pytest.mark.parametrize(
    "body, code",
    [
        (b'{"title": "caf\xe9"}', "invalid_json"),  # Latin-1, not UTF-8
        (b'{"title": "\xed\xa0\x80"}', "invalid_json"),  # a UTF-8-encoded surrogate
        (b'\xef\xbb\xbf{"title": "x"}', "invalid_json"),  # a byte order mark
        (b"\xff\xfe{\x00}\x00", "invalid_json"),  # UTF-16
        (b'{"title": "x", "title": "y"}', "invalid_json"),  # a duplicate key
        (b'{"a": 1, "a": {"title": "x"}}', "invalid_json"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "invalid_json"),
        (
            b'{"title": "x", "n": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
            "invalid_json",
        ),
        # deeper than Python recurses (at 50,000 the count of values refuses it first, 413:
        # tests/api/test_body_values_limit.py)
        (b'{"x": ' * 5_000 + b"1" + b"}" * 5_000, "invalid_json"),
        (b'{"title": "a\\u0000b"}', "invalid_characters"),
        (b'{"title": "a\x01b"}', "invalid_characters"),  # raw, which JSON forbids anyway
        (b'{"title": "bell\\u0007"}', "invalid_characters"),
        (b'{"title": "esc\\u001b[31m"}', "invalid_characters"),
        (b'{"title": "del\x7f"}', "invalid_characters"),
        (b'{"title": "\\ud800"}', "invalid_characters"),  # an unpaired surrogate
        (b'{"title": "\\udfff\\ud800"}', "invalid_characters"),  # a pair the wrong way round
        (b'{"title": "x", "k\\u0000": 1}', "invalid_characters"),  # in a key
        (b'{"title": "x", "deep": [{"v": ["\\u0002"]}]}', "invalid_characters"),
        (b'{"title": "x", "n": NaN}', "number_out_of_range"),
        (b'{"title": "x", "n": Infinity}', "number_out_of_range"),
        (b'{"title": "x", "n": -Infinity}', "number_out_of_range"),
        (b'{"title": "x", "n": 1e400}', "number_out_of_range"),
        (b'{"title": "x", "n": -1e309}', "number_out_of_range"),
        (b'{"title": "x", "n": %d}' % (MAX_JSON_INT + 1), "number_out_of_range"),
        (b'{"title": "x", "n": -%d}' % (MAX_JSON_INT + 1), "number_out_of_range"),
        (b'{"title": "x", "n": ' + b"9" * 5000 + b"}", "number_out_of_range"),
    ],
    ids=lambda v: v[:40].decode("latin-1") if isinstance(v, bytes) else v,
)
async def test_bodies_refused_before_validation(client, alice, redis, upstream, body, code):
    before = await snapshot(redis)
    assert_refused(await post_raw(client, alice, body), 400, code)
    assert await snapshot(redis) == before


async def test_the_refusal_names_the_field_and_never_echoes_the_character(client, alice):
    r = await post_raw(client, alice, b'{"title": "x", "deep": [{"v\\u0003": 1}]}')
    assert_refused(r, 400, "invalid_characters")
    message = r.json()["message"]
    assert message.startswith("deep.0.v?: key contains a control character (U+0003)")
    assert "\x03" not in message


async def test_what_is_still_fine(client, alice, redis):
    ok = [
        b'{"title": "tab\\tnew line\\ncarriage\\r"}',
        '{"title": "caf\u00e9 \u4e2d\u6587 \\ud83d\\ude00 \U0001f600"}'.encode(),  # a pair is fine
        b'{"title": "x", "n": %d, "f": -1.5e300}' % MAX_JSON_INT,
        b'{"title": "x", "n": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}",
    ]
    for body in ok:
        r = await post_raw(client, alice, body)
        assert r.status_code == 201, (body, r.text)
    titles = [
        (
            await client.http.get(f"/api/conversation/list?org_id={ORG}", headers=bearer(alice))
        ).json()
    ]
    assert any(
        c["title"] == "caf\u00e9 \u4e2d\u6587 \U0001f600 \U0001f600"
        for c in titles[0]["conversations"]
    )


@pytest.mark.parametrize(
    "content_type, status",
    [
        (None, 201),
        ("application/json", 201),
        ("application/json; charset=utf-8", 201),
        ('application/json;charset="UTF-8"', 201),
        ("application/merge-patch+json", 201),
        ("text/plain;charset=UTF-8", 201),  # what fetch() sends when no type is set
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("text/xml", 415),
        ("application/json; charset=latin-1", 415),
        ("application/json; charset=utf-16", 415),
    ],
)
async def test_content_type(client, alice, redis, content_type, status):
    before = await snapshot(redis)
    r = await post_raw(client, alice, b'{"title": "x"}', content_type=content_type)
    if status == 201:
        assert r.status_code == 201, r.text
        return
    assert_refused(r, 415, "unsupported_media_type")
    assert await snapshot(redis) == before


async def test_control_characters_in_a_prompt_on_every_prompt_route(
    client, alice, session, redis, upstream
):
    before = await snapshot(redis)
    bad = "list the files\x00; then \x1b[2J"
    r = await client.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=bearer(alice),
        json={"chat_session_id": session["id"], "message": bad},
    )
    assert_refused(r, 400, "invalid_characters")
    assert r.json()["message"].startswith("message: ")
    r = await client.http.post(
        f"/conversation/{session['conversation_id']}/prompt",
        headers=bearer(alice),
        json={"prompt": bad},
    )
    assert_refused(r, 400, "invalid_characters")
    r = await client.http.post(
        "/v1/chat/completions",
        headers=bearer(alice),
        json={"model": "gpt", "messages": [{"role": "user", "content": bad}]},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_characters"
    r = await client.http.post(
        "/v1/messages",
        headers=bearer(alice),
        content=json.dumps(
            {
                "model": "claude",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "\ud800"}],
            }
        ).encode(),
    )
    assert r.status_code == 400 and "unpaired surrogate" in r.json()["error"]["message"]
    assert await snapshot(redis) == before
    assert upstream.requests == []


async def test_prompt_length_on_every_prompt_route(client, alice, session, redis, upstream):
    before = await snapshot(redis)
    long = "x" * (MAX_PROMPT + 1)
    r = await client.http.post(
        f"/api/conversation/stream_chat?org_id={ORG}",
        headers=bearer(alice),
        json={"chat_session_id": session["id"], "message": long},
    )
    assert_refused(r, 400, "prompt_too_long")
    r = await client.http.post(
        f"/conversation/{session['conversation_id']}/prompt",
        headers=bearer(alice),
        json={"prompt": long},
    )
    assert_refused(r, 400, "prompt_too_long")
    # the compatible APIs send the whole history: the limit is on all of it
    half = "y" * (MAX_PROMPT // 2 + 1)
    r = await client.http.post(
        "/v1/chat/completions",
        headers=bearer(alice),
        json={
            "model": "gpt",
            "messages": [{"role": "system", "content": half}, {"role": "user", "content": half}],
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "prompt_too_long"
    r = await client.http.post(
        "/v1/messages",
        headers=bearer(alice),
        json={"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": long}]},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert await snapshot(redis) == before
    assert upstream.requests == []


async def test_out_of_range_numbers_on_the_compatible_routes(client, alice, redis, upstream):
    before = await snapshot(redis)
    for raw in (b"NaN", b"Infinity", b"1e999", b"%d" % 10**30):
        body = (
            b'{"model": "gpt", "temperature": %s, "messages": [{"role": "user", "content": "hi"}]}'
            % raw
        )
        r = await post_raw(client, alice, body, path="/v1/chat/completions")
        assert r.status_code == 400 and r.json()["error"]["code"] == "number_out_of_range", raw
        body = (
            b'{"model": "claude", "max_tokens": %s, "messages": [{"role": "user", "content": "hi"}]}'  # noqa: E501
            % raw
        )
        r = await post_raw(client, alice, body, path="/v1/messages")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", raw
    assert await snapshot(redis) == before
    assert upstream.requests == []


@pytest.mark.parametrize(
    "path, query",
    [
        ("/api/conversation/list", "limit=0"),
        ("/api/conversation/list", "limit=101"),
        ("/api/conversation/list", "limit=1e3"),
        ("/api/conversation/list", "limit=%201"),
        ("/api/conversation/list", "limit=1_0"),
        ("/api/conversation/list", "limit=%EF%BC%91%EF%BC%92"),  # fullwidth digits
        ("/api/conversation/list", "offset=-1"),
        ("/api/conversation/list", "offset=" + "9" * 5000),
        ("/api/conversation/list", "offset=99999999999999999999"),
        ("/api/conversation/messages", "conversation_id=c&limit=NaN"),
        ("/conversation", "take=101"),
        ("/conversation", "take=0"),
        ("/conversation", "skip=-1"),
        ("/conversation", "skip=0x10"),
        ("/conversation", "from=2024-13-01"),
        ("/conversation", "from=" + "9" * 5000),
        ("/conversation", "from=2024-02-01&to=2024-01-01"),
    ],
    ids=lambda v: v[:30],
)
async def test_bad_query_numbers_are_400(client, alice, redis, path, query):
    before = await snapshot(redis)
    r = await client.http.get(f"{path}?org_id={ORG}&{query}", headers=bearer(alice))
    assert_refused(r, 400, "validation_error")
    assert await snapshot(redis) == before


@pytest.mark.parametrize(
    "last_event_id",
    ["x:1", "{mid}:-1", "{mid}:\u00b2", "{mid}:" + "9" * 5000],
    ids=["other-message", "negative", "superscript-two", "5000-digits"],
)
async def test_a_bad_last_event_id_is_400(client, alice, session, upstream, last_event_id):
    stream = await client.chat(alice, session["id"], "hi")
    mid = stream.events[0].json["message_id"]
    value = last_event_id.format(mid=mid)
    r = await client.http.get(
        "/api/conversation/stream",
        headers=bearer(alice),
        params={"org_id": ORG, "message_id": mid, "last_event_id": value},
    )
    assert_refused(r, 400, "invalid_last_event_id")
    header = value.encode("latin-1")  # as raw header bytes too
    r = await client.http.get(
        f"/api/conversation/stream?org_id={ORG}&message_id={mid}",
        headers=[(b"authorization", f"Bearer {alice}".encode()), (b"last-event-id", header)],
    )
    assert_refused(r, 400, "invalid_last_event_id")
