"""The decision: which policies apply to a turn, and what they make of its text.

`PolicySet` compiles the configured policies once. For each turn, `for_context` picks the
enabled ones whose scope covers it, and the returned `ActivePolicies` checks the prompt
(pre), guards the streamed answer (during, see stream.py) and checks the whole answer (post).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.policy.credentials import secrets_detector
from gateway.policy.decision import (
    CompiledPolicy,
    Decision,
    DetectorGroups,
    Violation,
    apply,
    detector_groups,
    find_all,
)
from gateway.policy.detectors import Detector, KeywordDetector
from gateway.policy.injection import injection_detector
from gateway.policy.limits import LengthLimit, ModelAllowlist, estimate_tokens
from gateway.policy.model import PolicySpec, Stage
from gateway.policy.patterns import RegexDetector
from gateway.policy.phones import DEFAULT_REGIONS
from gateway.policy.pii import pii_detector
from gateway.policy.stream import StreamGuard, quiet_test

# What makes two policies' detectors the same one: the kind and its parameters.
DetectorKey = tuple[object, ...]


def compile_policy(
    spec: PolicySpec, detectors: dict[DetectorKey, Detector] | None = None
) -> CompiledPolicy:
    """Build what a policy needs to run; `detectors` shares equal detectors between policies."""
    cache = detectors if detectors is not None else {}
    if spec.kind == "max_length":
        return CompiledPolicy(
            spec, length=LengthLimit(max_chars=spec.max_chars, max_tokens=spec.max_tokens)
        )
    if spec.kind == "max_output_tokens":
        return CompiledPolicy(spec, length=LengthLimit(max_tokens=spec.limit))
    if spec.kind == "model_allowlist":
        return CompiledPolicy(spec, allowlist=ModelAllowlist(spec.models))
    key: DetectorKey
    if spec.kind == "regex":
        patterns = ((spec.pattern,) if spec.pattern else ()) + spec.patterns
        key = ("regex", patterns, spec.label)
    elif spec.kind == "keywords":
        key = ("keywords", spec.keywords, spec.label)
    elif spec.kind == "pii":
        key = ("pii", spec.entities, spec.regions)
    else:
        key = (spec.kind,)
    if key not in cache:
        cache[key] = _build_detector(spec, key)
    return CompiledPolicy(spec, detector=cache[key])


def _build_detector(spec: PolicySpec, key: DetectorKey) -> Detector:
    if spec.kind == "regex":
        patterns = ((spec.pattern,) if spec.pattern else ()) + spec.patterns
        return RegexDetector(patterns, label=spec.label or "regex")
    if spec.kind == "keywords":
        return KeywordDetector(spec.keywords, label=spec.label or "keyword")
    if spec.kind == "pii":
        return pii_detector(spec.entities or (), regions=spec.regions or DEFAULT_REGIONS)
    if spec.kind == "secrets":
        return secrets_detector()
    return injection_detector()


class PolicySet:
    """The configured policies, compiled once; cheap to query per turn."""

    def __init__(self, specs: Iterable[PolicySpec]) -> None:
        self.specs = tuple(specs)
        seen: set[str] = set()
        for spec in self.specs:
            if spec.id in seen:
                raise ValueError(f"policies: two policies have the id {spec.id!r}")
            seen.add(spec.id)
        detectors: dict[DetectorKey, Detector] = {}
        self._compiled = tuple(compile_policy(s, detectors) for s in self.specs if s.enabled)
        for p in self._compiled:
            if p.detector is not None and "during" in p.spec.stages:
                quiet_test(p.detector)  # compiled now rather than on the first streamed answer
        self._by_id = {s.id: s for s in self.specs}
        self._contexts: dict[tuple[str | None, ...], ActivePolicies] = {}

    def get(self, policy_id: str) -> PolicySpec | None:
        """The policy behind a violation (for its webhooks, name, description)."""
        return self._by_id.get(policy_id)

    def for_context(
        self,
        *,
        org_id: str | None = None,
        workspace_id: str | None = None,
        repo_id: str | None = None,
        model_id: str | None = None,
    ) -> ActivePolicies:
        key = (org_id, workspace_id, repo_id, model_id)
        active = self._contexts.get(key)
        if active is None:
            chosen = [
                p
                for p in self._compiled
                if p.spec.org_id in (None, org_id)
                and p.spec.workspace_id in (None, workspace_id)
                and p.spec.repo_id in (None, repo_id)
            ]
            active = ActivePolicies(chosen, model_id=model_id)
            if len(self._contexts) >= 4096:  # contexts are few; this only bounds a flood
                self._contexts.clear()
            self._contexts[key] = active
        return active


class ActivePolicies:
    """The policies of one turn's context, by stage."""

    def __init__(self, policies: Sequence[CompiledPolicy], *, model_id: str | None) -> None:
        self.model_id = model_id
        self.pre = tuple(p for p in policies if "pre" in p.spec.stages)
        self.during = tuple(p for p in policies if "during" in p.spec.stages)
        self.post = tuple(p for p in policies if "post" in p.spec.stages)
        self._pre_groups = detector_groups(self.pre)
        self._post_groups = detector_groups(self.post)

    @property
    def specs(self) -> tuple[PolicySpec, ...]:
        return tuple(dict.fromkeys(p.spec for p in (*self.pre, *self.during, *self.post)))

    def check_prompt(self, text: str) -> Decision:
        """Pre stage. Blocked: answer 400 policy_blocked and never call the provider;
        otherwise send `decision.text` to the provider and the store."""
        violations = []
        for p in self.pre:
            if p.allowlist is not None:
                reason = p.allowlist.refused(self.model_id)
                if reason:
                    violations.append(p.violation("pre", "model", detail=reason))
            elif p.length is not None:
                reason = p.length.exceeded(len(text))
                if reason:
                    violations.append(p.violation("pre", "max_length", detail=reason))
        return _check_text("pre", self._pre_groups, text, violations)

    def stream_guard(self) -> StreamGuard | None:
        """A fresh guard for one streamed answer, or None when no policy runs during it."""
        return StreamGuard(self.during) if self.during else None

    def check_answer(self, text: str, *, output_tokens: int | None = None) -> Decision:
        """Post stage, on the assembled answer (pass what the client was sent). Blocked:
        store the message marked blocked, with `decision.text`."""
        violations = []
        for p in self.post:
            if p.length is None:
                continue
            if p.spec.kind == "max_output_tokens":
                counted = output_tokens if output_tokens is not None else estimate_tokens(text)
                reason = p.length.exceeded(0, tokens=counted)
                label = "max_output_tokens"
            else:
                reason, label = p.length.exceeded(len(text)), "max_length"
            if reason:
                violations.append(p.violation("post", label, detail=reason))
        return _check_text("post", self._post_groups, text, violations)


def _check_text(
    stage: Stage, groups: DetectorGroups, text: str, violations: list[Violation]
) -> Decision:
    found = find_all(groups, text, 0)
    out, span_violations, _ = apply(stage, text, 0, len(text), found, offset=0, stop=False)
    violations.extend(span_violations)
    blocked = next((v for v in violations if v.action == "block"), None)
    return Decision(out, tuple(violations), blocked, changed=out != text)
