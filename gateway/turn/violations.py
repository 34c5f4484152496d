"""How a turn's policy violations are told: the error event of a block, and where each
violation happened, for tracking and for the role rules of its listing."""

from __future__ import annotations

from typing import Any

from gateway.access.principal import Principal
from gateway.governance import Governance
from gateway.policy import Violation
from gateway.storage.records import Conversation
from gateway.turn.events import ErrorEvent
from gateway.turn.turn import Turn


def violation_context(
    principal: Principal, org_id: str, conv: Conversation | None, message_id: str, model_id: str
) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "user_id": principal.user_id,
        "model_id": model_id,
        "conversation_id": conv.id if conv else None,
        "message_id": message_id,
        "workspace_id": conv.workspace_id if conv else None,
        "repo_id": conv.repo_id if conv else None,
        "conversation_creator": conv.created_by if conv else principal.user_id,
    }


def blocked_event(v: Violation) -> ErrorEvent:
    return ErrorEvent("policy_blocked", f"blocked by policy {v.policy_id!r} ({v.label})")


def violation_records(governance: Governance, turn: Turn) -> list[dict[str, Any]]:
    """Every violation of the turn, as stored with its end: a prompt's belongs to the user's
    message, the others to the answer."""
    model_id = (turn.answering or turn.model).id
    records = []
    for v in turn.violations:
        target = turn.user_message.id if v.stage == "pre" and turn.user_message else turn.message_id
        context = violation_context(
            turn.principal, turn.org_id, turn.conversation, target, model_id
        )
        records += governance.records([v], context)
    return records
