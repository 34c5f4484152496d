"""A stored message reads back as it was written, whichever text it holds, and the records
written before orjson (json.dumps with ASCII escapes) still read the same; a worker's
cache of parsed history (ParsedMessages) gives what a fresh parse gives, within its bound."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from gateway.storage.records import Message, ParsedMessages

OPTIONAL = {"parts", "tool_calls", "reasoning", "refusal", "alternatives", "native_finish"}
OPTIONAL |= {"stop_sequence", "cached_input_tokens", "cache_write_input_tokens"}
OPTIONAL |= {"reasoning_tokens"}
TEXTS = ["plain", "café 🙂 \u2028 line", 'quote " back \\ nul \x00', "half \ud83d surrogate"]


def message(content: str) -> Message:
    return Message(
        id="m1",
        conversation_id="c1",
        role="assistant",
        content=content,
        status="complete",
        created_at=1764640000123,
        chat_session_id="s1",
        model_id="openai-50",
        user_id="alice",
        input_tokens=3,
        output_tokens=7,
        finish_reason="stop",
        policy=[{"policy_id": "p", "action": "redact", "stage": "post"}],
        error=None,
    )


@pytest.mark.parametrize("content", TEXTS)
def test_a_message_reads_back_as_written(content):
    m = message(content)
    raw = m.to_json()
    # any JSON reader sees the same record, less the structured fields while they are empty
    written = {k: v for k, v in asdict(m).items() if v or k not in OPTIONAL}
    assert json.loads(raw) == written and "tool_calls" not in written
    assert Message.from_json(raw) == m


@pytest.mark.parametrize("content", TEXTS)
def test_a_message_stored_before_orjson_reads_the_same(content):
    m = message(content)
    before = json.dumps(asdict(m), separators=(",", ":"))  # what to_json wrote until now
    assert Message.from_json(before) == m


def test_parsed_messages_give_what_a_parse_gives_and_parse_each_record_once():
    parsed = ParsedMessages()
    first, changed = message("one").to_json(), message("one, edited").to_json()
    a = parsed(first)
    assert a == Message.from_json(first)
    # the same record read again (a new str, as each LRANGE reply is) is the same object
    assert parsed("".join(list(first))) is a
    # a record that changed is another key: its own parse, never the old one
    assert parsed(changed).content == "one, edited" and parsed(first).content == "one"


def test_parsed_messages_keep_at_most_their_budget_and_no_large_record():
    raw = message("x" * 100).to_json()
    size = len(raw) + 1  # "m1" becomes "m00".."m49"
    parsed = ParsedMessages(budget=10 * size, largest=2 * size)
    for i in range(50):  # an attacker's many distinct messages
        parsed(raw.replace('"m1"', f'"m{i:02}"'))
    assert len(parsed) == 10 and parsed.kept <= parsed.budget
    assert parsed(raw.replace('"m1"', '"m49"')).id == "m49"  # the newest are kept
    huge = message("y" * 10_000).to_json()
    assert parsed(huge).content == "y" * 10_000
    assert huge not in parsed._parsed and parsed.kept <= parsed.budget
