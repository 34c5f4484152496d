"""The playground's SSE parser (gateway/static/sse.js), run in Chromium: the HTML standard's
event-stream rules, whatever the chunking of the bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import StaticServer

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"

# parse(chunks) -> {events, comments, retries, partial}; chunks are strings
PARSE = """
async ([chunks]) => {
  const { SSEParser } = await import("/sse.js");
  const out = { events: [], comments: [], retries: [] };
  const parser = new SSEParser((e) => out.events.push(e), {
    onComment: (c) => out.comments.push(c), onRetry: (ms) => out.retries.push(ms),
  });
  for (const chunk of chunks) parser.push(chunk);
  out.partial = parser.finish();
  return out;
}
"""

STREAM = (
    'event: start\ndata: {"message_id":"m1","model":"demo"}\n\n'
    ": ping\n\n"
    'event: content\nid: m1:1\ndata: {"delta":"Hé"}\n\n'
    'event: content\nid: m1:2\ndata: {"delta":"llo 🌍"}\n\n'
    'event: end\ndata: {"message_id":"m1","finish_reason":"stop"}\n\n'
)
EXPECTED = [
    {"type": "start", "data": '{"message_id":"m1","model":"demo"}', "id": ""},
    {"type": "content", "data": '{"delta":"Hé"}', "id": "m1:1"},
    {"type": "content", "data": '{"delta":"llo 🌍"}', "id": "m1:2"},
    {"type": "end", "data": '{"message_id":"m1","finish_reason":"stop"}', "id": "m1:2"},
]


READ = """
async ([parts]) => {
  const { readEventStream } = await import("/sse.js");
  const body = new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(new Uint8Array(part));
      controller.close();
    },
  });
  const events = [];
  await readEventStream(body, (e) => events.push(e));
  return events;
}
"""


@pytest.fixture(scope="module")
def sse_page(chromium: Any) -> Iterator[Any]:
    server = StaticServer(STATIC).start()
    page = chromium.new_page()
    page.goto(server.url + "/")  # any page of that origin: the parser is imported from it
    yield page
    page.close()
    server.stop()


@pytest.fixture
def parse(sse_page: Any) -> Any:
    return lambda *chunks: sse_page.evaluate(PARSE, [list(chunks)])


def test_a_stream_parses_the_same_however_it_is_split(parse):
    assert parse(STREAM)["events"] == EXPECTED
    assert parse(*STREAM)["events"] == EXPECTED  # one character at a time
    for cut in range(1, len(STREAM)):
        assert parse(STREAM[:cut], STREAM[cut:])["events"] == EXPECTED, cut


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_every_line_ending_and_a_crlf_split_between_chunks(parse, newline):
    text = STREAM.replace("\n", newline)
    assert parse(text)["events"] == EXPECTED
    # "\r" at the end of one chunk and "\n" at the start of the next are one line break
    out = parse("data: a\r", "\ndata: b\r", "\n\r", "\n")
    assert [e["data"] for e in out["events"]] == ["a\nb"]


def test_comments_multiline_data_and_field_details(parse):
    out = parse(
        ": ping\n\n"
        "data: line one\ndata: line two\n\n"  # data lines join with \n
        "data:no space\n\n"
        "data:  two spaces\n\n"  # only one leading space is dropped
        "data\n\n"  # a field with no colon: empty data, still an event
        "event: orphan\n\n"  # no data: nothing dispatched, and the type does not leak
        "data: plain\n\n"
        "id: 7\ndata: a\n\n"
        "data: b\n\n"  # the last id stays
        "id: bad\u0000id\ndata: c\n\n"  # an id with NUL is ignored
        "retry: 2500\nretry: soon\n\n"
        "unknown: field\ndata: d\n\n"
    )
    assert out["comments"] == ["ping"]
    assert out["retries"] == [2500]
    assert [(e["type"], e["data"], e["id"]) for e in out["events"]] == [
        ("message", "line one\nline two", ""),
        ("message", "no space", ""),
        ("message", " two spaces", ""),
        ("message", "", ""),
        ("message", "plain", ""),
        ("message", "a", "7"),
        ("message", "b", "7"),
        ("message", "c", "7"),
        ("message", "d", "7"),
    ]


def test_a_frame_cut_off_by_the_end_of_the_stream_is_dropped(parse):
    out = parse(
        'event: content\nid: m:1\ndata: {"delta":"a"}\n\nevent: content\nid: m:2\ndata: {"del'
    )
    assert [e["id"] for e in out["events"]] == ["m:1"] and out["partial"] is True
    out = parse("data: x\n")  # the line ended, the frame did not
    assert out["events"] == [] and out["partial"] is True


def test_bytes_split_inside_a_character_and_a_leading_bom(sse_page, parse):
    raw = STREAM.encode()
    split = raw.index("🌍".encode()) + 2  # in the middle of the emoji's four bytes
    events = sse_page.evaluate(READ, [[list(raw[:split]), list(raw[split:])]])
    assert events == EXPECTED
    events = sse_page.evaluate(READ, [[[b] for b in b"\xef\xbb\xbf" + raw]])  # BOM, byte by byte
    assert events == EXPECTED
    assert parse("\ufeffdata: x\n\n")["events"] == [{"type": "message", "data": "x", "id": ""}]
