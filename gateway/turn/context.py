"""What the model sees of a conversation: its earlier messages plus the new prompt, trimmed
oldest-first to the model's context window, and the token estimate that trimming uses."""

from __future__ import annotations

from gateway.errors import BadRequest
from gateway.storage.records import Message
from gateway.turn.parts import consistent, history_turns
from providers.base import MESSAGE_OVERHEAD_TOKENS, ChatMessage, estimate_tokens

HISTORY_LIMIT = 1000  # messages loaded per turn before trimming to the context window


def estimated_input_tokens(messages: list[ChatMessage]) -> int:
    """What a turn records when the provider never reports its count."""
    return sum(estimate_tokens(m.text) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def build_context(
    history: list[Message], prompt: str, *, context_window: int | None, max_output: int | None
) -> list[ChatMessage]:
    """Earlier messages of the conversation (all sessions, oldest first) plus the new
    prompt, trimmed oldest-first so the estimate fits the model's context window."""
    usable = [
        m
        for m in history
        if (m.content or m.parts or m.tool_calls)
        and (
            (m.role == "user" and m.status == "complete")
            or (m.role == "assistant" and m.status in ("complete", "cancelled"))
        )
    ]
    messages = [turn for m in usable for turn in history_turns(m)]
    messages.append(ChatMessage("user", prompt))
    if context_window is None:
        return consistent(messages)
    budget = context_window - (max_output or 0)
    cost = [_cost(m) for m in messages]
    if cost[-1] > budget:
        raise BadRequest(
            f"prompt needs about {cost[-1]} tokens; the model's context window leaves {budget}",
            code="prompt_too_long",
        )
    keep, used = 0, 0
    for c in reversed(cost):
        if used + c > budget:
            break
        used += c
        keep += 1
    return consistent(messages[-keep:])


def _cost(m: ChatMessage) -> int:
    calls = sum(estimate_tokens(c.name) + estimate_tokens(c.arguments) for c in m.tool_calls)
    return estimate_tokens(m.text) + calls + MESSAGE_OVERHEAD_TOKENS
