"""Refusals of malformed input say what is wrong in the gateway's own words: the parser's
finding and where, never an exception's text or repr."""

from __future__ import annotations

import pytest

from tests.api.compat.support import snapshot
from tests.gateway_fixtures import ORG
from tests.support import bearer

LEAKS = ("Error(", "Error:", "<", "object at", "Traceback", "Exceeds the limit", "sys.")


@pytest.mark.parametrize(
    "body, said",
    [
        (
            b"{",
            "request body is not valid JSON: Expecting property name enclosed in double quotes"
            " at line 1 column 2",
        ),
        (b'{"title": }', "request body is not valid JSON: Expecting value at line 1 column 11"),
        (
            b'{"title": "x"} trailing',
            "request body is not valid JSON: Extra data at line 1 column 16",
        ),
        (
            b'{"title": "x", "n": 1' + b"0" * 4400 + b"}",
            "request body: integer 1000000000000000000",
        ),
    ],
    ids=["unclosed", "no-value", "trailing", "4401-digits"],
)
async def test_a_malformed_body_is_refused_in_our_words(client, alice, redis, body, said):
    before = await snapshot(redis)
    r = await client.http.post(
        f"/api/conversation/create?org_id={ORG}",
        content=body,
        headers={**bearer(alice), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    message = r.json()["message"]
    assert message.startswith(said), message
    assert not any(leak in message for leak in LEAKS), message
    assert await snapshot(redis) == before
