"""Governance policies: pure functions over text and metadata, no I/O.

policies = PolicySet(specs)                      # once, at start
active = policies.for_context(org_id=..., workspace_id=..., repo_id=..., model_id=...)
decision = active.check_prompt(prompt)           # pre: blocked? send decision.text
guard = active.stream_guard()                    # during: None when nothing to check
step = guard.feed(delta); ...; step = guard.finish()
decision = active.check_answer(answer, output_tokens=n)   # post
"""

from gateway.policy.decision import Decision, Violation, redaction
from gateway.policy.defaults import default_policies
from gateway.policy.engine import ActivePolicies, PolicySet
from gateway.policy.model import PolicySpec, error_lines
from gateway.policy.stream import GuardStep, StreamGuard

__all__ = [
    "ActivePolicies",
    "Decision",
    "GuardStep",
    "PolicySet",
    "PolicySpec",
    "StreamGuard",
    "Violation",
    "default_policies",
    "error_lines",
    "redaction",
]
