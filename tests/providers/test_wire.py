"""The shared wire helpers: SSE framing over arbitrary byte boundaries, Retry-After parsing,
and the status-to-kind table.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator

import pytest

from providers import wire

STREAM = (
    b": a comment\r\n"
    b"event: message_start\r\n"
    b'data: {"a": 1}\r\n'
    b"\r\n"
    b"data: first line\n"
    b"data:second line\n"
    b"\n"
    b'data: {"text": "\xe2\x80\xa8 and \xf0\x9f\x99\x82"}\n'
    b"\n"
    b"data: [DONE]"  # no final newline: lenient
)
EXPECTED = [
    ("message_start", b'{"a": 1}'),
    ("message", b"first line\nsecond line"),
    ("message", '{"text": "\u2028 and 🙂"}'.encode()),
    ("message", b"[DONE]"),
]


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
async def test_sse_events_do_not_depend_on_where_the_bytes_were_cut(size):
    events = [event async for event in wire.sse_events(_pieces(STREAM, size))]

    assert events == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_the_reader_gives_each_event_once_its_chunk_completes_it(size):
    reader = wire.SSEReader()
    events, seen_at = [], []
    for i in range(0, len(STREAM), size):
        got = list(reader.feed(STREAM[i : i + size]))
        events += got
        seen_at += [i + size] * len(got)
    assert events == EXPECTED[:-1]  # the last one has no blank line yet
    assert list(reader.end()) == EXPECTED[-1:]
    assert list(reader.end()) == []  # told once
    # an event is given by the chunk holding the blank line that ends it, not later
    assert all(STREAM[:at].count(b"\n\n") + STREAM[:at].count(b"\r\n\r\n") for at in seen_at)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
    ],
)
def test_retry_after(headers, expected):
    assert wire.parse_retry_after(headers) == expected


def test_retry_after_as_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)

    assert 25 < wire.parse_retry_after({"retry-after": when}) <= 30


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (401, "auth"),
        (403, "auth"),
        (404, "bad_request"),
        (408, "timeout"),
        (422, "bad_request"),
        (429, "rate_limit"),
        (500, "server"),
        (529, "server"),
    ],
)
def test_status_kind(status, kind):
    assert wire.status_kind(status) == kind


def test_the_upstream_pool_is_sized_for_streams_unless_the_options_say_otherwise():
    def sizes(**options):
        limits = wire.pool_limits(options)
        return limits.max_connections, limits.max_keepalive_connections

    # the SDKs' own default is 1,000 connections (100 kept alive): a worker's cap on streams
    assert sizes() == (10_000, 1_000)
    assert sizes(max_connections=None, max_keepalive_connections=None) == (10_000, 1_000)
    assert sizes(max_connections=20_000, max_keepalive_connections=2_000) == (20_000, 2_000)
    assert sizes(max_connections=50) == (50, 50)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b'{"delta": {"content": "caf\xc3\xa9 \\u2028 \\ud83d\\ude42"}}', "café \u2028 🙂"),
        # what orjson refuses and json.loads reads: read as before, not a protocol error
        (b'{"delta": {"content": "half \\ud83d"}}', "half \ud83d"),
        (b'{"delta": {"content": "n"}, "score": NaN}', "n"),
    ],
)
def test_an_upstream_chunk_reads_as_the_standard_library_reads_it(data, expected):
    import json

    chunk = wire.json_object(data)
    assert chunk["delta"]["content"] == expected
    assert repr(chunk) == repr(json.loads(data))  # NaN included


@pytest.mark.parametrize("data", [b"[1, 2]", b'"text"', b"{not json", b"", b"\xff"])
def test_an_upstream_chunk_that_is_no_json_object_is_a_protocol_error(data):
    with pytest.raises(wire.ProviderError, match="unreadable data") as failed:
        wire.json_object(data)
    assert failed.value.kind == "protocol"
