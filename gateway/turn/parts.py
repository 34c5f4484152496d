"""The parts of a prompt that a compatible route's client sends: the pre-stage policies on
every text part, tool result and tool call of it, its size with its images and documents,
and the client's new input (what followed the last answer) as the one message the
conversation stores; and back again, stored messages as the turns a model sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.policy import ActivePolicies, Violation
from gateway.storage.records import Message
from providers.base import (
    ChatMessage,
    ContentPart,
    DocumentPart,
    ImagePart,
    ReasoningPart,
    TextPart,
    ToolCall,
)


def image_bytes(part: ImagePart) -> int:
    """An image's size as the provider receives it: its data's decoded bytes (of a data:
    URL too), or its URL's length (the provider fetches the rest)."""
    data = part.data
    if data is None and part.url is not None and part.url.startswith("data:"):
        data = part.url.partition(",")[2]
    if data is None:
        return len(part.url or "")
    return len(data) * 3 // 4


def document_chars(part: DocumentPart) -> int:
    if part.text is not None:
        return len(part.text)
    if part.data is not None:
        return len(part.data) * 3 // 4
    return len(part.url or part.file_id or "")


def size(messages: Sequence[ChatMessage]) -> int:
    """Characters of text, tool calls and plain-text documents, plus the bytes of images
    and binary documents: what the size limits (max_prompt_chars, max_length) count."""
    total = 0
    for m in messages:
        if isinstance(m.content, str):
            total += len(m.content)
        else:
            for part in m.content:
                if isinstance(part, TextPart | ReasoningPart):
                    total += len(part.text)
                elif isinstance(part, ImagePart):
                    total += image_bytes(part)
                elif isinstance(part, DocumentPart):
                    total += document_chars(part)
        for call in m.tool_calls:
            total += len(call.name) + len(call.arguments)
    return total


def images(messages: Sequence[ChatMessage]) -> int:
    return sum(
        1
        for m in messages
        if not isinstance(m.content, str)
        for part in m.content
        if type(part) is ImagePart
    )


# -- the pre stage ---------------------------------------------------------------------------


@dataclass(slots=True)
class Checked:
    messages: list[ChatMessage]  # as the provider and the store may see them (redacted)
    violations: list[Violation]
    blocked: Violation | None


def pre_check(active: ActivePolicies, messages: Sequence[ChatMessage]) -> Checked:
    """The pre stage on every text the model will read (each text part, plain-text
    document, tool result and earlier tool call), and the size limits on the whole, its
    images included. A model allowlist is reported once."""
    violations: list[Violation] = []
    seen: set[tuple[str, str]] = set()

    def check(text: str) -> str:
        if not text:
            return text
        decision = active.check_prompt(text)
        for v in decision.violations:
            if v.label in ("model", "max_length"):  # about the whole request: below, once
                if v.label == "model" and (v.policy_id, v.label) not in seen:
                    seen.add((v.policy_id, v.label))
                    violations.append(v)
                continue
            violations.append(v)
        return decision.text

    out = [_checked_message(m, check) for m in messages]
    total = size(messages)
    for p in active.pre:
        if p.length is not None and p.allowlist is None:
            reason = p.length.exceeded(total)
            if reason:
                violations.append(p.violation("pre", "max_length", detail=reason))
    blocked = next((v for v in violations if v.action == "block"), None)
    return Checked(out, violations, blocked)


def _checked_message(m: ChatMessage, check: Any) -> ChatMessage:
    content: str | list[ContentPart]
    if isinstance(m.content, str):
        content = check(m.content)
    else:
        content = [_checked_part(p, check) for p in m.content]
    calls = tuple(replace(c, arguments=check(c.arguments)) for c in m.tool_calls)
    return replace(m, content=content, tool_calls=calls)


def _checked_part(part: ContentPart, check: Any) -> ContentPart:
    if type(part) is TextPart:
        return replace(part, text=check(part.text))
    if type(part) is DocumentPart and part.text is not None:
        return replace(part, text=check(part.text))
    return part  # images, binary documents and handed-back reasoning: sized, not read


# -- what the conversation stores ------------------------------------------------------------


def new_input(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """What the client added since the last answer: the messages after the last assistant
    turn (a user's, or tool results and a user's), system turns aside."""
    start = 0
    for i, m in enumerate(messages):
        if m.role == "assistant":
            start = i + 1
    return [m for m in messages[start:] if m.role in ("user", "tool")]


def stored_input(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The new input as one stored user message: its text, and its parts when it is more
    than one plain text (tool results, images, documents)."""
    if len(messages) == 1 and isinstance(messages[0].content, str) and messages[0].role == "user":
        return messages[0].content, []
    parts: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_call_id": m.tool_call_id,
                "content": m.content if isinstance(m.content, str) else _parts(m.content),
            }
            if m.is_error:
                result["is_error"] = True
            parts.append(result)
        elif isinstance(m.content, str):
            parts.append({"type": "text", "text": m.content})
        else:
            parts += _parts(m.content)
    texts = [m.text for m in messages if m.text]
    return "\n\n".join(texts), parts


def _parts(content: Sequence[ContentPart]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in content:
        if type(part) is TextPart:
            out.append({"type": "text", "text": part.text})
        elif type(part) is ImagePart:
            image: dict[str, Any] = {"type": "image"}
            for name in ("url", "data", "media_type", "detail"):
                if getattr(part, name) is not None:
                    image[name] = getattr(part, name)
            out.append(image)
        elif type(part) is DocumentPart:
            document: dict[str, Any] = {"type": "document", "media_type": part.media_type}
            for name in ("data", "url", "text", "title", "file_id"):
                if getattr(part, name) is not None:
                    document[name] = getattr(part, name)
            out.append(document)
    return out


# -- and back: the turns a model sees --------------------------------------------------------


def history_turns(m: Message) -> list[ChatMessage]:
    """A stored message as the model's turns: a user message's tool results become tool
    turns before its own parts; an answer keeps its reasoning and tool calls."""
    if m.role == "assistant":
        parts: list[ContentPart] = [
            ReasoningPart(b.get("text", ""), b.get("signature"), b.get("redacted"))
            for b in m.reasoning
        ]
        calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in m.tool_calls)
        if not parts:
            return [ChatMessage("assistant", m.content, tool_calls=calls)]
        if m.content:
            parts.append(TextPart(m.content))
        return [ChatMessage("assistant", parts, tool_calls=calls)]
    if not m.parts:
        return [ChatMessage("user", m.content)]
    turns: list[ChatMessage] = []
    rest: list[ContentPart] = []
    for part in m.parts:
        if part.get("type") == "tool_result":
            content = part.get("content") or ""
            turns.append(
                ChatMessage(
                    "tool",
                    content if isinstance(content, str) else _content(content),
                    tool_call_id=part.get("tool_call_id"),
                    is_error=bool(part.get("is_error")),
                )
            )
        else:
            rest += _content([part])
    if rest:
        turns.append(ChatMessage("user", rest))
    return turns


def _content(parts: list[dict[str, Any]]) -> list[ContentPart]:
    out: list[ContentPart] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            out.append(TextPart(part.get("text", "")))
        elif kind == "image":
            out.append(
                ImagePart(
                    part.get("url"),
                    part.get("data"),
                    part.get("media_type"),
                    detail=part.get("detail"),
                )
            )
        elif kind == "document":
            out.append(
                DocumentPart(
                    part.get("data"),
                    part.get("url"),
                    part.get("text"),
                    media_type=part.get("media_type", "application/pdf"),
                    title=part.get("title"),
                    file_id=part.get("file_id"),
                )
            )
    return out


def consistent(turns: list[ChatMessage]) -> list[ChatMessage]:
    """Turns both APIs accept: every tool call answered by the tool turns right after it,
    every tool turn answering one (a trimmed or interrupted history can break either)."""
    out: list[ChatMessage] = []
    i = 0
    while i < len(turns):
        m = turns[i]
        if m.role == "tool":
            i += 1  # answers no call kept before it
            continue
        if m.role == "assistant" and m.tool_calls:
            results = []
            j = i + 1
            while j < len(turns) and turns[j].role == "tool":
                results.append(turns[j])
                j += 1
            asked = {c.id for c in m.tool_calls}
            if {r.tool_call_id for r in results} >= asked:
                out.append(m)
                out += [r for r in results if r.tool_call_id in asked]
            else:  # an unanswered call: the answer's text alone
                out.append(replace(m, tool_calls=()))
            i = j
            continue
        out.append(m)
        i += 1
    return out
