"""CPU per answer of the HTTP room's serializers: each answer as the handlers build it now
(a pydantic model, serialized by pydantic-core; gateway/api/schemas/) against the dict
building plus json.dumps that they replaced (copied below from the tree before the models),
with the unchanged per-token templates beside them as a yardstick. The figures are CPU
microseconds per answer (process time), the best of --rounds rounds.

    python -m bench.answers [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.api import queries, sse
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import common as compat
from gateway.api.compat import openai as openai_compat
from gateway.api.inputs import ok
from gateway.api.schemas import conversation_service as service_answers
from gateway.api.schemas import repository as repository_answers
from gateway.api.schemas.common import FinishReason, PolicyEvent
from gateway.storage.records import Message, Totals, iso
from gateway.turn import Collected, End, Start

TEXT = "Gateways stream tokens as server-sent events; each one is a small frame. " * 12
START = Start("0b7c6a5e-8d2f-4a51-9a0e-2f4c1f7f9d3e", "c" * 36, "s" * 36, "gpt-4o-mini", "u" * 36)
END = End(START.message_id, "stop", 412, 96, totals=Totals(5000, 9000))
ANSWER = compat.Answer(START.message_id, START.model, TEXT, END)
TURN = Collected(START, TEXT, None, END)
MESSAGES = [
    Message(f"m-{i}", "c" * 36, "assistant", TEXT[:200], "complete", 1_700_000_000_000 + i,
            "s" * 36, "gpt-4o-mini", "alice", 12, 48, "stop")
    for i in range(50)
]  # fmt: skip


# -- the answers as the handlers built them before the models (dict + JSONResponse) -------------


def prompt_before() -> bytes:
    start, end = TURN.start, TURN.end
    answer: dict[str, Any] = {
        "success": True,
        "message": "Prompt sent successfully",
        "conversationId": start.conversation_id,
        "messageId": end.message_id,
        "response": TURN.text,
        "model": start.model,
        "tokensIn": end.input_tokens,
        "tokensOut": end.output_tokens,
        "finishReason": end.finish_reason,
    }
    if end.usage_estimated:
        answer["usageEstimated"] = True
    if end.policy:
        answer["policy"] = end.policy
    return JSONResponse(answer).body


def completion_before() -> bytes:
    end = ANSWER.end
    return JSONResponse(
        {
            "id": openai_compat.completion_id(ANSWER.message_id),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ANSWER.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": ANSWER.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": openai_compat.FINISH.get(end.finish_reason, end.finish_reason),
                }
            ],
            "usage": {
                "prompt_tokens": end.input_tokens,
                "completion_tokens": end.output_tokens,
                "total_tokens": end.input_tokens + end.output_tokens,
            },
            "system_fingerprint": None,
        }
    ).body


def message_before() -> bytes:
    end = ANSWER.end
    return JSONResponse(
        {
            "id": anthropic_compat.message_id(ANSWER.message_id),
            "type": "message",
            "role": "assistant",
            "model": ANSWER.model,
            "content": [{"type": "text", "text": ANSWER.text}],
            "stop_reason": anthropic_compat.STOP_REASONS.get(end.finish_reason, end.finish_reason),
            "stop_sequence": None,
            "usage": {"input_tokens": end.input_tokens, "output_tokens": end.output_tokens},
        }
    ).body


def _frame_before(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def start_end_before() -> bytes:
    ev = START
    start = {
        "message_id": ev.message_id,
        "conversation_id": ev.conversation_id,
        "chat_session_id": ev.chat_session_id,
        "model": ev.model,
        "user_message_id": ev.user_message_id,
        "resume_token": "t" * 60,
    }
    end = END
    data: dict[str, Any] = {
        "message_id": end.message_id,
        "finish_reason": end.finish_reason,
        "usage": {"input_tokens": end.input_tokens, "output_tokens": end.output_tokens},
    }
    if end.totals is not None:
        data["conversation_usage"] = {
            "tokens_in": end.totals.tokens_in,
            "tokens_out": end.totals.tokens_out,
        }
    return _frame_before("start", start) + _frame_before("end", data)


def page_before() -> bytes:
    def message_json(m: Message) -> dict[str, Any]:
        return {
            "id": m.id,
            "conversation_id": m.conversation_id,
            "chat_session_id": m.chat_session_id,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "model_id": m.model_id,
            "input_tokens": m.input_tokens,
            "output_tokens": m.output_tokens,
            "finish_reason": m.finish_reason,
            "usage_estimated": m.usage_estimated,
            "created_at": iso(m.created_at),
            **({"policy": m.policy} if m.policy else {}),
            **({"error": m.error} if m.error else {}),
        }

    page = {"messages": [message_json(m) for m in MESSAGES], "total": 50, "limit": 50, "offset": 0}
    return JSONResponse(page).body


REQUEST = Request(
    {"type": "http", "method": "GET", "path": "/", "headers": [],
     "query_string": b"org_id=org-1&limit=50&offset=100"}
)  # fmt: skip


def query_before() -> tuple[str, int, int]:
    """inputs.org_param's and inputs.int_param's reading, minus the org check."""
    params = REQUEST.query_params
    org_id = params.get("org_id")
    assert org_id
    found = []
    for name, default, lo, hi in (("limit", 50, 1, 100), ("offset", 0, 0, 10_000_000)):
        raw = params.get(name)
        value = default if not raw else int(raw)
        assert queries._INTEGER.fullmatch(raw or "0") and lo <= value <= hi
        found.append(value)
    return org_id, found[0], found[1]


# -- the same answers now -----------------------------------------------------------------------


def prompt_now() -> bytes:
    start, end = TURN.start, TURN.end
    answer = repository_answers.PromptAnswer(
        conversationId=start.conversation_id or "",
        messageId=end.message_id,
        response=TURN.text,
        model=start.model,
        tokensIn=end.input_tokens,
        tokensOut=end.output_tokens,
        finishReason=cast(FinishReason, end.finish_reason),
        usageEstimated=end.usage_estimated,
        policy=[PolicyEvent(**p) for p in end.policy],
    )
    return bytes(ok(answer).body)


def completion_now() -> bytes:
    return bytes(ok(openai_compat.completion_json(ANSWER)).body)


def message_now() -> bytes:
    return bytes(ok(anthropic_compat.message_json(ANSWER)).body)


def start_end_now() -> bytes:
    start = sse.frame("start", sse.start_data(START, {"resume_token": "t" * 60}))
    return start + sse.frame("end", sse.end_data(END))


def page_now() -> bytes:
    page = service_answers.MessagePage(
        messages=[service_answers.Message.of(m) for m in MESSAGES], total=50, limit=50, offset=0
    )
    return bytes(ok(page).body)


def query_now() -> queries.ConversationListQuery:
    return queries.read_query(REQUEST, queries.ConversationListQuery)


# -- the per-token templates, unchanged: the yardstick ------------------------------------------


def content_frame() -> bytes:
    return sse.ContentFrames(START.message_id)("a token")


def per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    for _ in range(min(calls, 1000)):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t0) / calls * 1e6)
    return best


CASES: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
    ("repository prompt, JSON answer (~1 KB)", prompt_before, prompt_now),
    ("OpenAI chat completion, JSON (~1 KB)", completion_before, completion_now),
    ("Anthropic message, JSON (~1 KB)", message_before, message_now),
    ("a stream's start + end frames", start_end_before, start_end_now),
    ("a page of 50 messages (Conversation Service)", page_before, page_now),
    ("a list route's query (org_id, limit, offset)", query_before, query_now),
]


def same_json(a: bytes, b: bytes) -> bool:
    """The before and now answers are the same JSON (key order and escaping aside)."""
    if a.startswith(b"event:"):
        return [json.loads(x.split(b"data: ", 1)[1]) for x in a.split(b"\n\n") if x] == [
            json.loads(x.split(b"data: ", 1)[1]) for x in b.split(b"\n\n") if x
        ]
    before, now = json.loads(a), json.loads(b)
    if isinstance(before, dict) and "created" in before:  # a clock: the seconds may differ
        before["created"] = now["created"]
    return bool(before == now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"{'answer':48} {'before us':>10} {'now us':>8} {'change':>8}")
    for name, before, now in CASES:
        if isinstance(before(), bytes):
            assert same_json(before(), now()), name  # type: ignore[arg-type]
        b = per_call(before, args.calls, args.rounds)
        n = per_call(now, args.calls, args.rounds)
        print(f"{name:48} {b:10.2f} {n:8.2f} {(n - b) / b:+8.0%}")
    yardstick = per_call(content_frame, args.calls, args.rounds)
    print(f"{'one content frame (per token; unchanged)':48} {yardstick:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
