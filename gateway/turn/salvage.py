"""An answer whose producer died mid-stream (a crash, kill -9: its heartbeat is gone). The
worker that finds out, a resume follower's reader or the next prompt of the conversation,
stores the partial answer in its place from the resume log, through the idempotent
end-of-turn script (gateway/storage/turns.py), which also releases the dead worker's lock
and settles its token reservation. Two workers finding out at once store it once."""

from __future__ import annotations

import json
import logging

from gateway.access.quotas import RateLimits
from gateway.models.connections import Connections
from gateway.models.prices import prices_of
from gateway.settings import ModelConfig, Settings
from gateway.storage.quotas import Reservation
from gateway.storage.records import Message, now_ms
from gateway.storage.store import Store
from gateway.storage.usage import Tally
from gateway.turn.context import HISTORY_LIMIT
from gateway.turn.events import End, ErrorEvent
from gateway.turn.resume_log import Entry, Producer, end_data, error_entry, is_ended, text_of
from providers.base import MESSAGE_OVERHEAD_TOKENS, estimate_tokens

log = logging.getLogger("gateway.chat")

LOST = ErrorEvent(
    "producer_lost", "the worker producing this answer is gone; its text so far is kept"
)


class Salvage:
    def __init__(
        self, settings: Settings, store: Store, limits: RateLimits, connections: Connections
    ) -> None:
        self.settings = settings
        self.store = store
        self.limits = limits
        self.connections = connections

    async def lost_answer(self, cid: str, entries: list[Entry]) -> End | None:
        """Store the answer the log `entries` (from its start, no end yet) hold, as an
        error with estimated usage. The End as written, or None for a log with no start."""
        start = next((json.loads(f["d"]) for _, f in entries if f["t"] == "start"), None)
        if start is None:
            return None
        mid = str(start["message_id"])
        session = str(start.get("chat_session_id") or "")
        conv, _, history = await self.store.turns.load_context(cid, session, HISTORY_LIMIT)
        producer = Producer.from_start(start) or Producer(
            worker=str(start.get("worker") or ""),
            org_id=conv.org_id if conv else "",
            user_id=conv.created_by if conv else "",
        )
        text = text_of(entries)
        model_id = start.get("model")
        entry = await self.connections.model(model_id, producer.org_id) if model_id else None
        model = entry.config if entry is not None else None
        input_tokens = self._input_estimate(history, model)
        output_tokens = estimate_tokens(text)
        message = Message(
            id=mid,
            conversation_id=cid,
            chat_session_id=start.get("chat_session_id"),
            role="assistant",
            content=text,
            status="error",
            created_at=now_ms(),
            model_id=model_id,
            user_id=producer.user_id,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason="error",
            usage_estimated=True,
            # priced as the turn's end would have (an entry deleted since: not priced)
            cost_nusd=prices_of(model).cost_nusd(input_tokens, output_tokens) if model else 0,
            error={"code": LOST.code, "message": LOST.message},
        )
        end = End(mid, "error", message.input_tokens, message.output_tokens, usage_estimated=True)
        held = producer.reserved_keys
        end.totals = await self.store.turns.end(
            message,
            Tally.of(producer.org_id, producer.key_id, conv),
            lock_value=f"{producer.worker}:{mid}",
            log=True,
            log_entries=[error_entry(LOST)],
            end_data=end_data(end),
            log_ttl_s=self.settings.resume_ttl,
            token_windows=self.limits.token_windows(producer.org_id, producer.user_id),
            reservation=Reservation(held, producer.reserved_tokens) if held else None,
        )
        log.warning(
            "message %s of conversation %s: its producer died; stored %d characters",
            mid,
            cid,
            len(text),
        )
        return end

    async def dead_lock(self, cid: str, holder: str) -> None:
        """A lock whose worker is dead: its answer is stored first (if its log never
        ended), which releases the lock; else the lock is simply broken."""
        _, _, mid = holder.partition(":")
        entries = await self.store.resume_logs.read(cid, mid) if mid else []
        if entries and not is_ended(entries[-1][1]):
            await self.lost_answer(cid, entries)
        await self.store.turns.break_lock(cid, holder)  # compare-and-delete: a no-op if gone

    def _input_estimate(self, history: list[Message], model: ModelConfig | None) -> int:
        """What the turn sent, as well as it can be told: the conversation's text up to the
        lost answer (its user message included), at most the model's context window."""
        estimate = sum(
            estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in history if m.content
        )
        window = model.context_window if model is not None else None
        return min(estimate, window) if window else estimate
