"""Attach to a running or finished stream from its resume log: replay exactly the events
after Last-Event-ID, then follow live until `end`, on any worker or replica.

If the producing worker dies, its heartbeat key expires and the follower ends the stream
with `error` {producer_lost} + `end` {error} instead of hanging.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator

from gateway.chat import ChatEvent, Delta, End, ErrorEvent, Start
from gateway.errors import BadRequest
from gateway.store import Store, Totals

FOLLOW_BLOCK_MS = 1000
PRODUCER_CHECK_AFTER = 3.0  # seconds without a new entry before asking whether the producer lives
RESUME_TOKEN_TTL = 900


def last_seq(last_event_id: str | None, message_id: str) -> int:
    """`<message_id>:<seq>` -> seq; none -> 0 (replay everything)."""
    if not last_event_id:
        return 0
    mid, _, seq = last_event_id.rpartition(":")
    if mid != message_id or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        raise BadRequest("Last-Event-ID does not belong to this message", code="invalid_last_event_id")
    return int(seq)


def _event(kind: str, data: dict) -> ChatEvent:
    if kind == "start":
        data.pop("worker", None)
        return Start(**data)
    if kind == "error":
        return ErrorEvent(**data)
    totals = data.pop("totals", None)
    policy = data.pop("policy", None) or []
    return End(**data, totals=Totals(**totals) if totals else None, policy=list(policy))


async def replay(
    store: Store, log_key: str, after: int, entries: list[tuple[str, dict[str, str]]]
) -> AsyncIterator[ChatEvent]:
    """Start, the content events with seq > after, then error/end when they come.
    `entries` is the log as already read (the route reads it to answer 404 early)."""
    entry_id = "-"
    worker: str | None = None
    quiet_since = time.monotonic()
    while True:
        for entry_id, fields in entries:
            kind = fields["t"]
            if kind == "c":
                seq = int(fields["s"])
                for text in json.loads(fields["d"]):
                    if seq > after:
                        yield Delta(text)
                        after = seq
                    seq += 1
                continue
            data = json.loads(fields["d"])
            if kind == "start":
                worker = data.get("worker")
            event = _event(kind, data)
            yield event
            if kind == "end":
                return
        if entries:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > PRODUCER_CHECK_AFTER:
            if worker is None or not await store.worker_alive(worker):
                yield ErrorEvent("producer_lost", "the worker producing this stream is gone")
                yield End(message_id=log_key.rsplit(":", 1)[-1], finish_reason="error",
                          input_tokens=0, output_tokens=0, usage_estimated=True)
                return
            quiet_since = time.monotonic()
        entries = await store.follow_log(log_key, entry_id if entry_id != "-" else "0-0", FOLLOW_BLOCK_MS)


# -- resume tokens: what a browser's EventSource (no headers) presents instead ---------------

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def resume_token(secret: bytes, message_id: str, ttl: int = RESUME_TOKEN_TTL) -> str:
    body = f"{message_id}:{int(time.time()) + ttl}"
    sig = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:18]
    return f"{_b64(body.encode())}.{_b64(sig)}"


def check_resume_token(secret: bytes, token: str, message_id: str) -> bool:
    try:
        body_b64, sig_b64 = token.split(".")
        body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
        sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    except ValueError:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(sig, expected):
        return False
    mid, _, expires = body.decode().rpartition(":")
    return mid == message_id and expires.isdigit() and int(expires) >= time.time()
