"""The resume log: every answer of a stored conversation, as a Redis stream its clients can
replay from any worker or replica (gateway/storage/resume_log.py runs the commands).

This module owns the log's format, its writer and its replay. An entry has three fields:
`t` its kind, `s` a sequence number, `d` its data (JSON):

    t=start  s=0      d={message_id, conversation_id, chat_session_id, model,
                         user_message_id, worker, producer}
    t=c      s=<seq>  d=["text", {"tool_call": {index, id?, name?, arguments}}, ...]
                      the content deltas and tool-call pieces numbered seq, seq+1, ...
    t=error  s=0      d={code, message}
    t=end    s=0      d={message_id, finish_reason, input_tokens, output_tokens,
                         usage_estimated[, policy], totals}
                      (the totals are added by the end-of-turn script)

`producer` says who asked and what the turn holds (org, user, API key, its token
reservation): what a worker that finds the producer gone needs to store the
partial answer in its place (gateway/turn/salvage.py).

The start entry is written with the user's message (one script), the end with the answer
(another); deltas in between are batched: every FLUSH_INTERVAL, or at FLUSH_BYTES, never per
token. Followers read the log through one reader per message and worker
(gateway/turn/followers.py), which also tells a dead producer (its heartbeat is gone) from a
slow one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from dataclasses import fields as fields_of
from typing import Any

from gateway.errors import BadRequest
from gateway.storage.records import Totals
from gateway.storage.store import Store
from gateway.turn.events import (
    ChatEvent,
    ChoiceEnd,
    Delta,
    End,
    ErrorEvent,
    Start,
    ToolCallDelta,
)

log = logging.getLogger("gateway.resume")

FLUSH_INTERVAL = 0.05  # seconds: deltas reach the resume log within this, never per token
# ...or as soon as this much text is waiting (only a stream faster than 1 MB/s gets
# there; below it a turn costs one XADD per 50 ms of streaming, whatever its token count)
FLUSH_BYTES = 64 * 1024

LogEntry = tuple[str, str, str]  # (t, s, d)
# one numbered item of a `c` entry: a content delta's text, or a piece of a tool call
LogItem = str | dict[str, Any]
Entry = tuple[str, dict[str, str]]  # (stream id, fields) as read back


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# -- the format --------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Producer:
    """Who a turn answers and what it holds, as its start entry records it."""

    worker: str
    org_id: str
    user_id: str
    key_id: str | None = None
    reserved_keys: tuple[str, ...] = ()  # token windows holding the admission's reservation
    reserved_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "org": self.org_id,
            "user": self.user_id,
            "key": self.key_id,
            "rk": list(self.reserved_keys),
            "rt": self.reserved_tokens,
        }

    @classmethod
    def from_start(cls, data: dict[str, Any]) -> Producer | None:
        """The producer of a start entry's data (None for a log written before it was kept)."""
        p = data.get("producer")
        if not isinstance(p, dict) or not data.get("worker"):
            return None
        return cls(
            worker=str(data["worker"]),
            org_id=str(p["org"]),
            user_id=str(p["user"]),
            key_id=p.get("key"),
            reserved_keys=tuple(p.get("rk") or ()),
            reserved_tokens=int(p.get("rt") or 0),
        )


def start_entry(start: Start, producer: Producer) -> list[str]:
    """The start entry's fields, flat, as the begin-of-turn script appends them."""
    data: dict[str, Any] = {name: getattr(start, name) for name in _START_FIELDS}
    data["worker"] = producer.worker
    data["producer"] = producer.to_json()
    return ["t", "start", "s", "0", "d", json.dumps(data)]


# the fields of each entry's data, in order: read one by one (all are plain values but
# End's choices), where dataclasses.asdict's deep copy cost a turn ~30 us
_START_FIELDS = tuple(f.name for f in fields_of(Start))


def deltas_entry(first_seq: int, items: list[LogItem]) -> LogEntry:
    return ("c", str(first_seq), _json(items))


def tool_call_item(ev: ToolCallDelta) -> dict[str, Any]:
    """A tool call's piece as the log keeps it (id and name only on its first piece)."""
    call: dict[str, Any] = {"index": ev.index, "arguments": ev.arguments}
    if ev.id is not None:
        call["id"] = ev.id
    if ev.name is not None:
        call["name"] = ev.name
    return {"tool_call": call}


def _item_event(item: LogItem) -> Delta | ToolCallDelta:
    if isinstance(item, str):
        return Delta(item)
    call = item["tool_call"]
    return ToolCallDelta(call["index"], call.get("id"), call.get("name"), call["arguments"])


def error_entry(error: ErrorEvent) -> LogEntry:
    return ("error", "0", _json({"code": error.code, "message": error.message}))


def end_data(end: End) -> str:
    """The end entry's data before the end-of-turn script adds the conversation's totals."""
    data: dict[str, Any] = {}
    for name in _END_FIELDS:
        value = getattr(end, name)
        if name in _END_DETAILS and not value:  # left out while empty: the entry reads as before
            continue
        data[name] = [asdict(c) for c in value] if name == "choices" else value
    if end.policy:
        data["policy"] = end.policy
    return json.dumps(data)


_END_DETAILS = (
    "native",
    "stop_sequence",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
    "choices",
)
_END_FIELDS = tuple(f.name for f in fields_of(End) if f.name not in ("totals", "policy", "stored"))


def _event(kind: str, data: dict[str, Any]) -> ChatEvent:
    if kind == "start":
        data.pop("worker", None)
        data.pop("producer", None)
        return Start(**data)
    if kind == "error":
        return ErrorEvent(**data)
    totals = data.pop("totals", None)
    policy = data.pop("policy", None) or []
    choices = tuple(ChoiceEnd(**c) for c in data.pop("choices", None) or ())
    return End(
        **data,
        totals=Totals(**totals) if totals else None,
        policy=list(policy),
        choices=choices,
    )


def is_ended(last: dict[str, str] | None) -> bool:
    return last is None or last.get("t") == "end"


# -- the writer --------------------------------------------------------------------------


@dataclass(slots=True)
class LogBuffer:
    """One answer's deltas not yet in Redis."""

    conversation_id: str
    message_id: str
    first_seq: int = 1
    pending: list[LogItem] = field(default_factory=list)
    pending_bytes: int = 0


class LogWriter:
    """Batches every running answer's deltas: one pipeline per FLUSH_INTERVAL for all of
    them. The answer's last batch rides in its end-of-turn write (take() it there)."""

    def __init__(self, store: Store) -> None:
        self.logs = store.resume_logs
        self._dirty: dict[str, LogBuffer] = {}
        self._wake = asyncio.Event()
        self._flush_done: asyncio.Future[None] | None = None

    def append(self, buffer: LogBuffer, item: LogItem) -> None:
        """O(1) and no I/O: the flusher writes the batch."""
        buffer.pending.append(item)
        buffer.pending_bytes += len(item) if type(item) is str else len(str(item))
        self._added(buffer)

    def extend(self, buffer: LogBuffer, texts: list[str]) -> None:
        """append() for several deltas of text at once."""
        buffer.pending.extend(texts)
        buffer.pending_bytes += sum(map(len, texts))
        self._added(buffer)

    def _added(self, buffer: LogBuffer) -> None:
        if buffer.message_id not in self._dirty:
            self._dirty[buffer.message_id] = buffer
            self._wake.set()
        elif buffer.pending_bytes >= FLUSH_BYTES:
            self._wake.set()

    def take(self, buffer: LogBuffer) -> LogEntry | None:
        """The buffer's pending deltas as one entry, removed."""
        if not buffer.pending:
            return None
        entry = deltas_entry(buffer.first_seq, buffer.pending)
        buffer.first_seq += len(buffer.pending)
        buffer.pending, buffer.pending_bytes = [], 0
        self._dirty.pop(buffer.message_id, None)
        return entry

    def forget(self, buffer: LogBuffer) -> None:
        self._dirty.pop(buffer.message_id, None)

    async def settle(self) -> None:
        """Wait for a flush in flight, so a turn's last batch lands after it."""
        if self._flush_done is not None:
            await asyncio.shield(self._flush_done)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not any(b.pending_bytes >= FLUSH_BYTES for b in self._dirty.values()):
                await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        batches = []
        for buffer in list(self._dirty.values()):
            entry = self.take(buffer)
            if entry is not None:
                t, s, d = entry
                batches.append(
                    (buffer.conversation_id, buffer.message_id, {"t": t, "s": s, "d": d})
                )
        if not batches:
            return
        done = self._flush_done = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        try:
            await self.logs.append_many(batches)
        except Exception as exc:
            # the client already has this text and the final write carries the whole
            # answer; only a resume in the meantime would miss it
            log.warning(
                "resume log flush failed (%s): %d streams", type(exc).__name__, len(batches)
            )
        finally:
            done.set_result(None)
            if self._flush_done is done:
                self._flush_done = None
        if time.perf_counter() - started > 0.5:
            log.warning("resume log flush took %.3fs", time.perf_counter() - started)


# -- the reader --------------------------------------------------------------------------


def last_seq(last_event_id: str | None, message_id: str) -> int:
    """`<message_id>:<seq>` -> seq; none -> 0 (replay everything)."""
    if not last_event_id:
        return 0
    mid, _, seq = last_event_id.rpartition(":")
    if mid != message_id or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        raise BadRequest(
            "Last-Event-ID does not belong to this message", code="invalid_last_event_id"
        )
    return int(seq)


async def replay(batches: AsyncIterator[list[Entry]], after: int) -> AsyncIterator[ChatEvent]:
    """Start, the content events with seq > after, then error/end when they come, from the
    log's entries in order (as one message's reader hands them out)."""
    async for batch in batches:
        for _, fields in batch:
            kind = fields["t"]
            if kind == "c":
                seq = int(fields["s"])
                for item in json.loads(fields["d"]):
                    if seq > after:
                        yield Delta(item) if type(item) is str else _item_event(item)
                        after = seq
                    seq += 1
                continue
            yield _event(kind, json.loads(fields["d"]))
            if kind == "end":
                return


def text_of(entries: list[Entry]) -> str:
    """The answer's text so far, from its content entries (tool-call pieces left out)."""
    items = (t for _, f in entries if f["t"] == "c" for t in json.loads(f["d"]))
    return "".join(t for t in items if type(t) is str)
