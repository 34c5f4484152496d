"""System events for audit trails: one capped Redis stream per org, `gw:{o:<org>}:events`.

Recording never slows a request: an event either rides in a pipeline of writes that happen
anyway (`Audit.event()` -> a storage write) or is written by a background task whose failure
is only logged (`Audit.record()`). The stream id carries the event's time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from gateway import errors
from gateway.storage.events import QueuedEvent

if TYPE_CHECKING:
    from gateway.access.principal import Principal
    from gateway.storage.events import Events

log = logging.getLogger("gateway.audit")

CONVERSATION_CREATED = "conversation_created"
CONVERSATION_DELETED = "conversation_deleted"
PROMPT_SENT = "prompt_sent"
ACCESS_DENIED = "access_denied"
KEY_CREATED = "api_key_created"
KEY_REVOKED = "api_key_revoked"
REPOSITORY_SAVED = "repository_saved"
REPOSITORY_DELETED = "repository_deleted"
MODEL_SAVED = "model_saved"
MODEL_DELETED = "model_deleted"
PROVIDER_KEY_SET = "provider_key_set"
PROVIDER_KEY_ROTATED = "provider_key_rotated"  # a repository's key replaced by another
PROVIDER_KEY_DELETED = "provider_key_deleted"
PROVIDER_KEYS_REWRAPPED = "provider_keys_rewrapped"  # `keys rotate-kek`: the org's keys

DEFAULT_MAXLEN = 100_000  # per org; XADD MAXLEN ~ trims whole macro nodes, so roughly this
NO_ORG = "_platform"  # where events of callers without an org (the admin) go


@dataclass(slots=True, frozen=True)
class Event:
    id: str
    type: str
    at_ms: int
    fields: dict[str, str]


def fields_of(type_: str, actor: Principal | None, **details: str | int | None) -> dict[str, str]:
    fields = {"type": type_}
    if actor is not None:
        fields.update(actor=actor.user_id, actor_role=actor.role)
        if actor.key_id:
            fields["actor_key_id"] = actor.key_id
    fields.update({k: str(v) for k, v in details.items() if v is not None})
    return fields


def queued(
    org: str | None, type_: str, actor: Principal | None, **details: str | int | None
) -> QueuedEvent:
    """An event for a storage write to pipeline with its own commands (the CLI's too)."""
    return (org or NO_ORG, fields_of(type_, actor, **details), DEFAULT_MAXLEN)


class Audit:
    """Events recorded with `record()` are written by one writer task, all that are waiting
    in one pipeline: the next batch gathers while a write is in flight, so under load the
    audit costs one round trip per batch rather than per request, and adds no delay alone."""

    def __init__(self, events: Events, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.events = events
        self.maxlen = maxlen
        self._queue: list[QueuedEvent] = []
        self._writer: asyncio.Task[None] | None = None

    def event(
        self, org: str | None, type_: str, actor: Principal | None, **details: str | int | None
    ) -> QueuedEvent:
        """An event for a storage write to pipeline with its own commands."""
        return (org or NO_ORG, fields_of(type_, actor, **details), self.maxlen)

    def record(
        self, org: str | None, type_: str, actor: Principal | None, **details: str | int | None
    ) -> None:
        """Fire and forget: the caller never waits for, nor fails because of, the audit."""
        self._queue.append(self.event(org, type_, actor, **details))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self.events.append_many(batch)
                except Exception:
                    for i, (org, fields, _) in enumerate(batch):
                        log.error(
                            "audit event %s for org %s was not recorded",
                            fields.get("type"),
                            org,
                            exc_info=i == 0,
                        )
        finally:
            self._writer = None

    async def read(
        self,
        org: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        before: str | None = None,
        take: int = 50,
    ) -> list[Event]:
        """Newest first; `before` (an event id, excluded) pages past the last one seen."""
        newest = "+" if until_ms is None else str(until_ms)
        if before is not None:
            newest = f"({before}"
        oldest = "-" if since_ms is None else str(since_ms)
        rows = await self.events.read(org, newest=newest, oldest=oldest, count=take)
        events = []
        for sid, fields in rows:
            fields = dict(fields)
            events.append(Event(sid, fields.pop("type", ""), int(sid.split("-", 1)[0]), fields))
        return events

    async def aclose(self, timeout: float = 2.0) -> None:
        """Let events still being written land before Redis closes."""
        if self._writer is not None:
            await asyncio.wait({self._writer}, timeout=timeout)


async def audited_gateway_error(request: Request, exc: Exception) -> Response:
    """The contract's error answer, plus an `access_denied` event for every 403 whose caller
    is known (routes.common.principal leaves it on request.state)."""
    assert isinstance(exc, errors.GatewayError)
    if exc.status == 403:
        caller = getattr(request.state, "principal", None)
        gateway = getattr(request.app.state, "gateway", None)
        if caller is not None and gateway is not None:
            gateway.audit.record(
                caller.org_id,
                ACCESS_DENIED,
                caller,
                method=request.method,
                path=request.url.path,
                code=exc.code,
                reason=exc.message,
            )
    return await errors.handle_gateway_error(request, exc)
