"""A turn's events as a Responses API response: its output items (reasoning, a message with
its text or refusal, function calls) and, when streamed, the events OpenAI sends, each with
its sequence_number, byte for byte in the shapes of gateway/api/schemas/openai_responses.py.

An item opens when its first piece arrives and is done when the next item begins or the
answer ends: text after a tool call opens a new message item, as the API's own output
would list it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.api import sse
from gateway.api.schemas import openai_responses as answers
from gateway.turn import Delta, TextRun
from gateway.turn.events import ChatEvent, ReasoningDelta, ReasoningEnd, RefusalDelta, ToolCallDelta


def _event(data: answers.ResponseEventData) -> bytes:
    body = sse.escape_line_break_bytes(data.__pydantic_serializer__.to_json(data))
    return b"event: %s\ndata: %s\n\n" % (data.type.encode(), body)


def _str(value: str) -> bytes:
    return sse.json_string(value)


# a text delta of one content part: its template (rendered when the part opens) takes the
# sequence number and the JSON-escaped text, one formatting pass per delta
TEXT_DELTA = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":%%d,"item_id":"%s","output_index":%d,"content_index":%d,"delta":%%s,'
    b'"logprobs":[]}\n\n'
)
ARGUMENTS_DELTA = (
    b"event: response.function_call_arguments.delta\n"
    b'data: {"type":"response.function_call_arguments.delta","sequence_number":%d,'
    b'"item_id":"%s","output_index":%d,"delta":%s}\n\n'
)


@dataclass(slots=True)
class _Message:
    id: str
    index: int
    parts: list[list[str]] = field(default_factory=list)  # [kind, text...] per content part

    def part(self, kind: str) -> tuple[int, bool]:
        """The index of the content part now written, and whether it is new."""
        if self.parts and self.parts[-1][0] == kind:
            return len(self.parts) - 1, False
        self.parts.append([kind])
        return len(self.parts) - 1, True

    def model(self, status: answers.ItemStatus) -> answers.OutputMessage:
        return answers.OutputMessage(
            id=self.id, status=status, content=[_content(p) for p in self.parts]
        )


def _content(part: list[str]) -> answers.OutputText | answers.Refusal:
    text = "".join(part[1:])
    if part[0] == "refusal":
        return answers.Refusal(refusal=text)
    return answers.OutputText(text=text)


@dataclass(slots=True)
class _Call:
    id: str
    index: int
    call_id: str
    name: str
    call_index: int  # the turn's index of the tool call
    arguments: list[str] = field(default_factory=list)

    def model(self, status: answers.ItemStatus) -> answers.FunctionCall:
        return answers.FunctionCall(
            id=self.id,
            status=status,
            call_id=self.call_id,
            name=self.name,
            arguments="".join(self.arguments),
        )


@dataclass(slots=True)
class _Reasoning:
    id: str
    index: int
    text: list[str] = field(default_factory=list)
    signature: str | None = None
    started: bool = False  # its summary part was announced

    def model(self, encrypted: bool) -> answers.ReasoningItem:
        text = "".join(self.text)
        return answers.ReasoningItem(
            id=self.id,
            summary=[answers.SummaryText(text=text)] if text else [],
            encrypted_content=self.signature if encrypted else None,
        )


_Open = _Message | _Call | _Reasoning


class Output:  # long: one response's items and every event of them, numbered in order
    """The output items of one response as its events arrive; `feed` returns the frames to
    stream for each event (ignored when the answer is not streamed)."""

    def __init__(self, key: str, *, encrypted_reasoning: bool) -> None:
        self.key = key  # the answer's id in hex: every item id carries it
        self.encrypted = encrypted_reasoning
        self.sequence = 0
        self.items: list[answers.OutputMessage | answers.FunctionCall | answers.ReasoningItem] = []
        self.open: _Open | None = None
        # while a text part is open: its delta template and its pieces (the hot path's state)
        self._template: bytes | None = None
        self._pieces: list[str] = []

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def frame(self, event: type[answers.ResponseEventData], **fields: Any) -> bytes:
        """The next event of the stream, numbered."""
        return _event(event(sequence_number=self.next_sequence(), **fields))

    def feed(self, ev: ChatEvent) -> bytes:
        """The frames of one event, as one chunk (b"" for none)."""
        if type(ev) is Delta and self._template is not None and not ev.choice:
            # the hot path: more text for the open part, one template filled in
            self._pieces.append(ev.text)
            sequence = self.sequence
            self.sequence = sequence + 1
            return self._template % (sequence, _str(ev.text))
        if type(ev) is TextRun:
            return b"".join([self.feed(Delta(text)) for text in ev.texts])
        return b"".join(self._frames(ev))

    def close(self) -> bytes:
        """The open item is done (the answer ended)."""
        return b"".join(self._close())

    def _frames(self, ev: ChatEvent) -> list[bytes]:
        if ev.choice:  # type: ignore[union-attr]  # the Responses API has no n > 1
            return []
        kind = type(ev)
        if kind is Delta or kind is RefusalDelta:
            return self._text(ev.text, "text" if kind is Delta else "refusal")  # type: ignore[union-attr]
        if kind is ToolCallDelta:
            return self._call(ev)  # type: ignore[arg-type]
        if kind is ReasoningDelta:
            return self._reasoning_text(ev.text)  # type: ignore[union-attr]
        if kind is ReasoningEnd:
            return self._reasoning_end(ev)  # type: ignore[arg-type]
        return []

    # -- items -----------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.key}_{len(self.items)}"

    def _text(self, text: str, kind: str) -> list[bytes]:
        frames: list[bytes] = []
        message = self.open
        if type(message) is not _Message:
            frames += self._close()
            message = self.open = _Message(self._id("msg"), len(self.items))
            frames.append(
                self.frame(
                    answers.OutputItemAdded,
                    output_index=message.index,
                    item=message.model("in_progress"),
                )
            )
        index, new = message.part(kind)
        if new:
            if index:  # the part before it is done
                frames += self._part_done(message, index - 1)
            empty = (
                answers.Refusal(refusal="") if kind == "refusal" else answers.OutputText(text="")
            )
            frames.append(
                self.frame(
                    answers.ContentPartAdded,
                    item_id=message.id,
                    output_index=message.index,
                    content_index=index,
                    part=empty,
                )
            )
        message.parts[index].append(text)
        if kind == "text":
            item_id = message.id.encode().replace(b"%", b"%%")
            self._template = TEXT_DELTA % (item_id, message.index, index)
            self._pieces = message.parts[index]
        else:
            self._template = None
        if kind == "refusal":
            frames.append(
                self.frame(
                    answers.RefusalDelta,
                    item_id=message.id,
                    output_index=message.index,
                    content_index=index,
                    delta=text,
                )
            )
        else:
            assert self._template is not None
            frames.append(self._template % (self.next_sequence(), _str(text)))
        return frames

    def _call(self, ev: ToolCallDelta) -> list[bytes]:
        frames: list[bytes] = []
        call = self.open
        if type(call) is not _Call or ev.index != call.call_index:
            frames += self._close()
            call_id = ev.id or f"call_{self.key}_{ev.index}"
            call = self.open = _Call(
                self._id("fc"), len(self.items), call_id, ev.name or "", ev.index
            )
            frames.append(
                self.frame(
                    answers.OutputItemAdded, output_index=call.index, item=call.model("in_progress")
                )
            )
        if ev.arguments:
            call.arguments.append(ev.arguments)
            frames.append(
                ARGUMENTS_DELTA
                % (self.next_sequence(), call.id.encode(), call.index, _str(ev.arguments))
            )
        return frames

    def _reasoning_text(self, text: str) -> list[bytes]:
        frames: list[bytes] = []
        item = self._reasoning_item(frames)
        if not item.started:
            item.started = True
            frames.append(
                self.frame(
                    answers.ReasoningSummaryPartAdded,
                    item_id=item.id,
                    output_index=item.index,
                    summary_index=0,
                    part=answers.SummaryText(text=""),
                )
            )
        item.text.append(text)
        frames.append(
            self.frame(
                answers.ReasoningSummaryTextDelta,
                item_id=item.id,
                output_index=item.index,
                summary_index=0,
                delta=text,
            )
        )
        return frames

    def _reasoning_end(self, ev: ReasoningEnd) -> list[bytes]:
        frames: list[bytes] = []
        if ev.redacted is not None:  # a block of its own, encrypted whole
            frames += self._close()
            item = self._reasoning_item(frames)
            item.signature = ev.redacted
        else:
            item = self._reasoning_item(frames)
            item.signature = ev.signature
        return frames + self._close()

    def _reasoning_item(self, frames: list[bytes]) -> _Reasoning:
        item = self.open
        if type(item) is _Reasoning:
            return item
        frames += self._close()
        item = self.open = _Reasoning(self._id("rs"), len(self.items))
        frames.append(
            self.frame(answers.OutputItemAdded, output_index=item.index, item=item.model(False))
        )
        return item

    # -- done ------------------------------------------------------------------------------

    def _part_done(self, message: _Message, index: int) -> list[bytes]:
        part = _content(message.parts[index])
        frames: list[bytes] = []
        if isinstance(part, answers.Refusal):
            frames.append(
                self.frame(
                    answers.RefusalDone,
                    item_id=message.id,
                    output_index=message.index,
                    content_index=index,
                    refusal=part.refusal,
                )
            )
        else:
            frames.append(
                self.frame(
                    answers.OutputTextDone,
                    item_id=message.id,
                    output_index=message.index,
                    content_index=index,
                    text=part.text,
                )
            )
        frames.append(
            self.frame(
                answers.ContentPartDone,
                item_id=message.id,
                output_index=message.index,
                content_index=index,
                part=part,
            )
        )
        return frames

    def _close(self) -> list[bytes]:
        item, self.open = self.open, None
        self._template = None
        if item is None:
            return []
        frames: list[bytes] = []
        done: answers.OutputMessage | answers.FunctionCall | answers.ReasoningItem
        if type(item) is _Message:
            frames += self._part_done(item, len(item.parts) - 1)
            done = item.model("completed")
        elif type(item) is _Call:
            call = item
            frames.append(
                self.frame(
                    answers.FunctionCallArgumentsDone,
                    item_id=call.id,
                    output_index=call.index,
                    name=call.name,
                    arguments="".join(call.arguments),
                )
            )
            done = item.model("completed")
        else:
            assert type(item) is _Reasoning
            reasoning = item
            if reasoning.started:
                text = "".join(reasoning.text)
                frames.append(
                    self.frame(
                        answers.ReasoningSummaryTextDone,
                        item_id=reasoning.id,
                        output_index=reasoning.index,
                        summary_index=0,
                        text=text,
                    )
                )
                frames.append(
                    self.frame(
                        answers.ReasoningSummaryPartDone,
                        item_id=reasoning.id,
                        output_index=reasoning.index,
                        summary_index=0,
                        part=answers.SummaryText(text=text),
                    )
                )
            done = reasoning.model(self.encrypted)
        self.items.append(done)
        index = len(self.items) - 1
        frames.append(self.frame(answers.OutputItemDone, output_index=index, item=done))
        return frames
