"""Calls that generate no chat answer but pass the same gate as a turn: embeddings (rate
limits, the pre-stage policies on every input, usage counted per org, model, user and key)
and token counts (rate limits; nothing is generated, counted or stored)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.access.principal import Principal
from gateway.access.quotas import RateLimits, key_budgets
from gateway.errors import BadRequest, PolicyBlocked
from gateway.governance import Governance
from gateway.models.connections import Connections
from gateway.models.prices import prices_of
from gateway.observability import Metrics
from gateway.policy import ActivePolicies, Violation
from gateway.settings import ModelConfig, Settings
from gateway.storage.records import Message, new_id, now_ms
from gateway.storage.store import Store
from gateway.storage.usage import Tally
from gateway.turn.prepare import NO_ORG, model_entry
from gateway.turn.upstream import http_error_for
from gateway.turn.violations import violation_context
from providers.base import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    EmbeddingRequest,
    Embeddings,
    Provider,
    ProviderError,
    TextPart,
    TokenCount,
)

MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit per request


@dataclass(slots=True, weakref_slot=True, eq=False)
class Admission:
    """A caller let through for one model: the org its usage goes to, the rate headers.
    It holds its provider client (models/clients.py) until it is gone, as a turn does."""

    principal: Principal
    model: ModelConfig
    provider: Provider
    org_id: str
    rate_headers: dict[str, str]
    id: str  # the call's id: its usage marker and its violations' message_id


class DirectCalls:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        connections: Connections,
        governance: Governance,
        limits: RateLimits,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.connections = connections
        self.governance = governance
        self.limits = limits
        self.metrics = metrics

    async def admit(self, principal: Principal, model_id: str) -> Admission:
        """The model as the registry serves it to the caller's org (404 when it does not,
        403 when the caller's API key may not use it), its client (the platform's credential:
        a direct call has no repository) and one request of the caller's rate limits, the
        API key's own budgets included."""
        org_id = principal.org_id or NO_ORG
        entry = await model_entry(self.connections, principal, model_id, org_id)
        provider = await self.connections.provider(entry, org_id, None)
        # no token reservation: an embedding's or a count's cost is its input, known up front
        admitted = await self.limits.admit(org_id, principal.user_id, key_budgets(principal))
        admission = Admission(principal, entry.config, provider, org_id, admitted.headers, new_id())
        self.connections.hold(admission, provider)
        return admission

    async def embed(self, admission: Admission, request: EmbeddingRequest) -> Embeddings:
        """The pre-stage policies see every text input (a block: 400, the provider never
        called); the upstream's vectors; the input tokens counted like a turn's."""
        if len(request.inputs) > MAX_EMBEDDING_INPUTS:
            raise BadRequest(
                f"input: at most {MAX_EMBEDDING_INPUTS} items per request",
                code="too_many_inputs",
                param=("input",),
            )
        chars = sum(len(item) for item in request.inputs)
        if chars > self.settings.max_prompt_chars:
            raise BadRequest(
                f"input: longer than {self.settings.max_prompt_chars} characters (or tokens) "
                "in all",
                code="prompt_too_long",
                param=("input",),
            )
        active = self._active(admission)
        inputs, violations = await self._pre_check(admission, active, request.inputs)
        upstream = replace(request, model=admission.model.upstream_model, inputs=inputs)
        try:
            result = await admission.provider.embed(upstream)
        except ProviderError as exc:
            self.metrics.provider_errors.labels(admission.model.id, exc.kind).inc()
            await self._record_violations(admission, violations)
            raise http_error_for(exc) from exc
        await self._account(admission, result.input_tokens, violations)
        return result

    async def count_tokens(self, admission: Admission, request: ChatRequest) -> TokenCount:
        """The upstream's count where it has one, else the estimate (TokenCount.estimated).
        The text goes upstream, so the pre-stage policies see it first: a block is 400, a
        redaction is what gets counted; nothing is generated or counted in the usage."""
        active = self._active(admission)
        messages = list(request.messages)
        if active.pre:
            texts = [_text_of(m) for m in messages]
            checked, violations = await self._pre_check(admission, active, texts, "messages")
            await self._record_violations(admission, violations)
            messages = [
                m if new == old else _with_text(m, str(new))
                for m, old, new in zip(messages, texts, checked, strict=True)
            ]
        upstream = replace(request, model=admission.model.upstream_model, messages=messages)
        try:
            return await admission.provider.count_tokens(upstream)
        except ProviderError as exc:
            self.metrics.provider_errors.labels(admission.model.id, exc.kind).inc()
            raise http_error_for(exc) from exc

    def _active(self, admission: Admission) -> ActivePolicies:
        return self.governance.active(
            org_id=admission.org_id, workspace_id=None, repo_id=None, model_id=admission.model.id
        )

    async def _pre_check(
        self,
        admission: Admission,
        active: ActivePolicies,
        inputs: Sequence[str | Sequence[int]],
        field: str = "input",
    ) -> tuple[list[str | Sequence[int]], list[Violation]]:
        """Each input as the pre stage leaves it (redacted, maybe), and the violations."""
        if not active.pre:
            return list(inputs), []
        checked: list[str | Sequence[int]] = []
        violations: list[Violation] = []
        for i, item in enumerate(inputs):
            if not isinstance(item, str):
                # the policies read text: token ids would pass every one of them unread
                raise BadRequest(
                    f"{field}.{i}: token arrays cannot be checked by this org's policies; "
                    "send text (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)",
                    code="unsupported_value",
                    param=(field, i),
                )
            decision = active.check_prompt(item)
            # a check on the model (allowlist) repeats for every input: keep it once
            found = [v for v in decision.violations if i == 0 or v.label != "model"]
            violations += found
            if decision.blocked is not None:
                await self._record_violations(admission, violations)
                raise PolicyBlocked(
                    f"{field}.{i} was blocked by policy {decision.blocked.policy_id!r} "
                    f"({decision.blocked.label})"
                )
            checked.append(decision.text)
        return checked, violations

    async def _account(
        self, admission: Admission, input_tokens: int, violations: list[Violation]
    ) -> None:
        """The tokens and their cost in the org's usage (per model, user and key, and its
        hour, day and month buckets) and in the rate limits' token windows (the API key's
        own included), counted once, with the violations: one round trip, as a direct
        turn's end (turn/record.py)."""
        principal, model = admission.principal, admission.model
        usage = Message(
            id=admission.id,
            conversation_id="",
            role="assistant",
            content="",
            status="complete",
            created_at=now_ms(),
            model_id=model.id,
            user_id=principal.user_id,
            input_tokens=input_tokens,
            cost_nusd=prices_of(model).cost_nusd(input_tokens, 0),
        )
        windows = self.limits.token_windows(
            admission.org_id, principal.user_id, key_budgets(principal)
        )
        await self.store.usage.record(
            usage,
            Tally.of(admission.org_id, principal.key_id, None),
            token_windows=windows,
            violations=self._violation_records(admission, violations),
        )
        self.metrics.tokens.labels(model.id, "in").inc(input_tokens)

    def _violation_records(
        self, admission: Admission, violations: list[Violation]
    ) -> list[dict[str, Any]]:
        if not violations:
            return []
        context = violation_context(
            admission.principal, admission.org_id, None, admission.id, admission.model.id
        )
        return self.governance.records(violations, context)

    async def _record_violations(self, admission: Admission, violations: list[Violation]) -> None:
        records = self._violation_records(admission, violations)
        if records:
            await self.store.events.record_violations(admission.org_id, records)


def _text_of(message: ChatMessage) -> str:
    """What the pre stage reads of a turn: its text, or its text parts joined by a newline
    (so a redaction maps back onto the parts)."""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(p.text for p in message.content if type(p) is TextPart)


def _with_text(message: ChatMessage, text: str) -> ChatMessage:
    """The turn with its text as the pre stage left it."""
    if isinstance(message.content, str):
        return replace(message, content=text)
    pieces = iter(text.split("\n"))
    parts: list[ContentPart] = []
    for part in message.content:
        if type(part) is TextPart:
            # a redaction never adds a newline, so the pieces still line up with the parts;
            # a part that had several lines takes as many pieces back
            lines = part.text.count("\n") + 1
            parts.append(replace(part, text="\n".join(next(pieces, "") for _ in range(lines))))
        else:
            parts.append(part)
    return replace(message, content=parts)
