"""A stored message reads back as it was written, whichever text it holds, and the records
written before orjson (json.dumps with ASCII escapes) still read the same."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from gateway.storage.records import Message

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
