"""The records the gateway keeps in Redis, and how each is encoded there."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def new_id() -> str:
    return str(uuid.uuid4())


NANO = 1_000_000_000  # nano-USD per USD: costs are stored as integers, summed exactly


def usd(nano: int) -> float:
    """A cost as the APIs show it: USD (a float; the stored integer is exact)."""
    return nano / NANO


def decimal_usd(nano: int) -> str:
    """A cost as an exact decimal string of USD ("0.000006"), as the repository-style API
    gives its token counts."""
    whole, frac = divmod(nano, NANO)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(whole)


@dataclass(slots=True)
class Creator:
    id: str
    name: str | None = None
    last_name: str | None = None
    email: str | None = None


@dataclass(slots=True)
class Conversation:
    id: str
    org_id: str
    title: str
    created_by: str
    creator: Creator
    workspace_id: str | None = None
    repo_id: str | None = None
    is_archived: bool = False
    created_at: int = 0
    updated_at: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_nusd: int = 0  # the answers' cost in nano-USD (1e-9), priced when each was recorded
    deleted_at: int | None = None

    @property
    def cost(self) -> float:
        """USD (the APIs' view of cost_nusd)."""
        return usd(self.cost_nusd)

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "org_id": self.org_id,
            "title": self.title,
            "created_by": self.created_by,
            "creator": json.dumps(asdict(self.creator)),
            "workspace_id": self.workspace_id or "",
            "repo_id": self.repo_id or "",
            "is_archived": "1" if self.is_archived else "0",
            "created_at": str(self.created_at),
            "updated_at": str(self.updated_at),
            "tokens_in": str(self.tokens_in),
            "tokens_out": str(self.tokens_out),
            "cost_nusd": str(self.cost_nusd),
        }

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Conversation:
        return cls(
            id=h["id"],
            org_id=h["org_id"],
            title=h.get("title", ""),
            created_by=h["created_by"],
            creator=Creator(**json.loads(h.get("creator") or '{"id": ""}')),
            workspace_id=h.get("workspace_id") or None,
            repo_id=h.get("repo_id") or None,
            is_archived=h.get("is_archived") == "1",
            created_at=int(h.get("created_at", 0)),
            updated_at=int(h.get("updated_at", 0)),
            tokens_in=int(h.get("tokens_in", 0)),
            tokens_out=int(h.get("tokens_out", 0)),
            cost_nusd=int(h.get("cost_nusd", 0)),
            deleted_at=int(h["deleted_at"]) if h.get("deleted_at") else None,
        )


@dataclass(slots=True)
class ChatSession:
    id: str
    conversation_id: str
    model_id: str
    status: str = "active"
    created_at: int = 0
    updated_at: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> ChatSession:
        return cls(**json.loads(raw))


@dataclass(slots=True)
class Message:
    """One stored message. content is its text; what a structured exchange adds (content
    parts, tool calls and results, reasoning, a refusal, the other choices of n > 1) is
    kept beside it, and left out of the JSON while empty, so a record without any of it
    reads and writes as before."""

    id: str
    conversation_id: str
    role: str  # user | assistant
    content: str
    status: str  # complete | error | cancelled | blocked
    created_at: int
    chat_session_id: str | None = None
    model_id: str | None = None
    user_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    usage_estimated: bool = False
    cost_nusd: int = 0  # nano-USD, at the prices in force when it was recorded
    policy: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None
    # a user message's parts beyond plain text, in order: {"type": "text", "text"},
    # {"type": "image", "url" | "data" + "media_type", "detail"?}, {"type": "document", ...},
    # {"type": "tool_result", "tool_call_id", "content": text or parts, "is_error"?};
    # content is then their text joined
    parts: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # {id, name, arguments}
    reasoning: list[dict[str, str]] = field(default_factory=list)  # {text, signature}|{redacted}
    refusal: str | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)  # choices 1.. of n > 1
    native_finish: str | None = None  # the provider's own word for the end
    stop_sequence: str | None = None
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def cost(self) -> float:
        return usd(self.cost_nusd)

    def to_json(self) -> str:
        """orjson writes the fields' dict: ~10x faster than asdict + json.dumps
        (bench/levers.py), non-ASCII kept as UTF-8. Text it refuses (a lone surrogate) is
        escaped by json.dumps, as before."""
        data = {name: getattr(self, name) for name in _ALWAYS}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value:
                data[name] = value
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Message:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:  # a lone surrogate escape, which json.dumps wrote
            data = json.loads(raw)
        # a field a newer gateway added is skipped, so a rolling upgrade reads both ways
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


class ParsedMessages:
    """Stored messages parsed once per worker. A turn reads its conversation's history (up
    to HISTORY_LIMIT messages) and all but the last two were read by the turn before, so
    their parse (about 7 us each) is looked up instead (under 1 us). The key is the stored
    JSON itself: a message that changed is another key, never a stale one. Bounded by the
    characters it keeps (`budget`); a message longer than `largest` is parsed every time.
    What it returns is shared between turns: read it, never change it."""

    def __init__(self, budget: int = 4_000_000, largest: int = 16_384) -> None:
        self.budget = budget
        self.largest = largest
        self.kept = 0  # characters of the keys held
        self._parsed: dict[str, Message] = {}

    def __len__(self) -> int:
        return len(self._parsed)

    def __call__(self, raw: str) -> Message:
        message = self._parsed.get(raw)
        if message is not None:
            return message
        message = Message.from_json(raw)
        if len(raw) <= self.largest:
            self.kept += len(raw)
            self._parsed[raw] = message
            while self.kept > self.budget:  # the oldest first
                oldest = next(iter(self._parsed))
                del self._parsed[oldest]
                self.kept -= len(oldest)
        return message


_FIELDS = frozenset(Message.__dataclass_fields__)
# left out of the JSON while empty: records written before they existed look the same
_OPTIONAL = (
    "parts",
    "tool_calls",
    "reasoning",
    "refusal",
    "alternatives",
    "native_finish",
    "stop_sequence",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
)
_ALWAYS = tuple(name for name in Message.__dataclass_fields__ if name not in _OPTIONAL)


@dataclass(slots=True)
class Totals:
    """A conversation's running token counts after a turn's write."""

    tokens_in: int
    tokens_out: int
    cost_nusd: int = 0
    replicated: bool = True  # False: the replicas WAIT asked for did not acknowledge in time
