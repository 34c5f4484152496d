"""Policies at run time: where they come from (config file, defaults, the admin API in
Redis), how a change reaches every worker within a second, and what a violation leaves
behind (a tracked record, counters, alerts). gateway/policy/ stays pure; the I/O is here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from gateway.governance.alerts import Alerts
from gateway.governance.webhooks import WebhookPolicy
from gateway.observability import Metrics
from gateway.policy import ActivePolicies, PolicySet, PolicySpec, Violation, default_policies
from gateway.settings import Settings
from gateway.storage import keys
from gateway.storage.records import now_ms
from gateway.storage.store import Store

log = logging.getLogger("gateway.policy")

POLL_INTERVAL = 1.0  # a missed pub/sub message still reaches the worker within this


def violation_record(v: Violation, context: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a violation: who, where, which policy, and a masked excerpt
    (never the raw secret or PII)."""
    return {
        "policy_id": v.policy_id,
        "policy_name": v.policy_name,
        "stage": v.stage,
        "action": v.action,
        "kind": v.kind,
        "label": v.label,
        "excerpt": v.excerpt,
        "detail": v.detail,
        "at": now_ms(),
        **context,
    }


def fired(violations: Iterable[Violation]) -> list[dict[str, str]]:
    """The `end` event's `policy` list: each policy once, with its action."""
    seen: dict[str, dict[str, str]] = {}
    for v in violations:
        seen.setdefault(v.policy_id, {"id": v.policy_id, "action": v.action})
    return list(seen.values())


class Governance:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        base = default_policies() if settings.default_policies else []
        configured = [PolicySpec.model_validate(p) for p in settings.policies]
        ids = {p.id for p in configured}
        self._file_specs = [p for p in base if p.id not in ids] + configured
        self.policies = PolicySet(self._file_specs)
        self.version: str | None = None
        self._api_ids: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.webhooks = WebhookPolicy(
            settings.webhook_allowed_hosts, settings.webhook_allowed_networks
        )
        self.alerts = Alerts(store.pubsub, self.webhooks)

    # -- sources and reloads -----------------------------------------------------------

    async def start(self) -> None:
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._listen(), name="gateway-policy-listener"),
            asyncio.create_task(self._poll(), name="gateway-policy-poll"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.alerts.close()

    def specs_from_api(self, raw: dict[str, str]) -> list[PolicySpec]:
        specs = []
        for pid, text in raw.items():
            try:
                specs.append(PolicySpec.model_validate_json(text))
            except ValidationError as exc:  # stored by an older version, say: skip it loudly
                log.error(
                    "policy %s in Redis is invalid and ignored: %s", pid, exc.errors()[0]["msg"]
                )
        return specs

    async def reload(self) -> None:
        """The file's policies, overridden by id by those of the admin API."""
        version, raw = await self.store.policies.load()
        api = self.specs_from_api(raw)
        api_ids = {p.id for p in api}
        self.policies = PolicySet([p for p in self._file_specs if p.id not in api_ids] + api)
        self.version, self._api_ids = version, api_ids

    async def _listen(self) -> None:
        async def changed(_: str) -> None:
            await self.reload()

        # on each subscription: catch up on what was missed, then follow
        await self.store.pubsub.listen(
            keys.POLICY_CHANNEL, changed, what="policy listener", on_ready=self.reload
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                if await self.store.policies.version() != self.version:
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("policy poll failed: %s", type(exc).__name__)

    async def put(self, spec: PolicySpec) -> None:
        await self.store.policies.put(spec.id, spec.model_dump_json())
        await self._changed()

    async def delete(self, policy_id: str) -> bool:
        deleted = await self.store.policies.delete(policy_id)
        await self._changed()
        return deleted

    async def _changed(self) -> None:
        await self.reload()  # this worker at once; the others on the message, or within a poll
        await self.store.pubsub.publish(keys.POLICY_CHANNEL, self.version or "")

    def all_specs(self) -> list[tuple[PolicySpec, str]]:
        """Every policy in force, with its source ("file" or "api")."""
        return [(p, "api" if p.id in self._api_ids else "file") for p in self.policies.specs]

    def active(
        self, *, org_id: str, workspace_id: str | None, repo_id: str | None, model_id: str
    ) -> ActivePolicies:
        return self.policies.for_context(
            org_id=org_id, workspace_id=workspace_id, repo_id=repo_id, model_id=model_id
        )

    # -- violations --------------------------------------------------------------------

    def records(
        self, violations: Iterable[Violation], context: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Violation records to store with the turn's own write; alerts leave now, in the
        background, so a stream is never delayed by a webhook."""
        out = []
        for v in violations:
            self.metrics.violations.labels(v.policy_id, v.action).inc()
            record = violation_record(v, context)
            out.append(record)
            if v.action == "alert":
                self._alert(record)
        return out

    def _alert(self, record: dict[str, Any]) -> None:
        spec = self.policies.get(record["policy_id"])
        self.alerts.send(record, tuple(spec.webhooks) if spec else ())
