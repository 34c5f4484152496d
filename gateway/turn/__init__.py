"""One prompt and its answer: prepare (lookup, access, quotas, pre-policies, the lock and the
user's message), open the upstream, run the stream through the during/post policies, record
the answer; the live registry of running turns and the resume log any worker can replay."""

from gateway.turn.events import (
    ChatEvent,
    Collected,
    Delta,
    End,
    ErrorEvent,
    Start,
    TextRun,
    collect,
)
from gateway.turn.prepare import Prompt
from gateway.turn.service import ChatService
from gateway.turn.turn import Turn

__all__ = [
    "ChatEvent",
    "ChatService",
    "Collected",
    "Delta",
    "End",
    "ErrorEvent",
    "Prompt",
    "Start",
    "TextRun",
    "Turn",
    "collect",
]
