"""Policies through the admin API (/admin/policies) and the violations they record
(/policy/violations).

The platform admin manages every policy; an org admin reads the global ones and manages
those scoped to their own org. A change reaches every worker within a second. Violations
are listed under the conversations' role rules.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access import ids
from gateway.access.principal import Principal
from gateway.api.admin import admin_principal, required_org
from gateway.api.inputs import check_id, gateway_of, ok, principal, read_json
from gateway.api.queries import ViolationsQuery, read_query
from gateway.api.schemas import admin as answers
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.governance import Governance
from gateway.governance.webhooks import MAX_WEBHOOKS, WebhookPolicy, WebhookRefused
from gateway.policy import PolicySpec, error_lines

POLICY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
SCOPE_IDS: tuple[tuple[str, ids.Kind], ...] = (
    ("org_id", "org"),
    ("workspace_id", "workspace"),
    ("repo_id", "repository"),
)


def policy_of(spec: PolicySpec, source: str) -> answers.Policy:
    return answers.Policy.of(spec, "file" if source == "file" else "api")


def answer(envelope: BaseModel, status: int = 200) -> Response:
    """A policy omits the fields it does not set."""
    return ok(envelope, status, exclude_none=True)


def _manages(caller: Principal, spec: PolicySpec) -> bool:
    return caller.is_admin or (spec.org_id is not None and spec.org_id == caller.org_id)


def _reads(caller: Principal, spec: PolicySpec) -> bool:
    return caller.is_admin or spec.org_id in (None, caller.org_id)


def _policy_id(request: Request) -> str:
    pid = str(request.path_params["policy_id"])
    if not POLICY_ID.match(pid):
        raise ValidationFailed("policy id: 1-200 characters of letters, digits, . _ : -")
    return pid


def policy_id_for(caller: Principal, gov: Governance, name: str) -> str:
    """The id a name stands for. Policy ids are per org: an org admin's name is a policy
    they can read by that id (their org's, or a global one), else their org's own
    `<org>:<name>`; another org's policies never change the answer (once a taken id
    answered 409 where a free one answered 201). The platform admin names ids as they are."""
    if caller.is_admin or caller.org_id is None:
        return name
    if any(spec.id == name and _reads(caller, spec) for spec, _ in gov.all_specs()):
        return name
    prefix = f"{caller.org_id}:"
    return name if name.startswith(prefix) else prefix + name


def check_webhooks(allowed: WebhookPolicy, urls: tuple[str, ...]) -> None:
    """Alert webhooks only to the hosts the operator allows, never to a literal loopback,
    private, link-local or otherwise non-public address (checked again at each delivery,
    after DNS, by gateway/governance/webhooks.py)."""
    if len(urls) > MAX_WEBHOOKS:
        raise ValidationFailed(
            f"webhooks: at most {MAX_WEBHOOKS} per policy", code="webhook_not_allowed"
        )
    for i, url in enumerate(urls):
        try:
            allowed.check(url)
        except WebhookRefused as exc:
            raise ValidationFailed(f"webhooks.{i}: {exc}", code="webhook_not_allowed") from None


async def list_policies(request: Request) -> Response:
    caller = await admin_principal(request)
    gov = gateway_of(request).governance
    rows = [policy_of(spec, source) for spec, source in gov.all_specs() if _reads(caller, spec)]
    return answer(answers.PolicyList(policies=rows, total=len(rows)))


async def get_policy(request: Request) -> Response:
    caller = await admin_principal(request)
    gov = gateway_of(request).governance
    pid = policy_id_for(caller, gov, _policy_id(request))
    for spec, source in gov.all_specs():
        if spec.id == pid and _reads(caller, spec):
            return answer(answers.PolicyEnvelope(policy=policy_of(spec, source)))
    raise NotFound(f"no policy {pid!r}", code="policy_not_found")


async def put_policy(request: Request) -> Response:
    """Create or replace. An org admin's policy is scoped to their org whatever the body
    says; a policy of the config file may be overridden (e.g. enabled = false)."""
    caller = await admin_principal(request)
    gov = gateway_of(request).governance
    pid = policy_id_for(caller, gov, _policy_id(request))
    body = await read_json(request)
    body["id"] = pid
    for field, kind in SCOPE_IDS:
        if body.get(field) is not None:
            check_id(field, kind, body[field])
    if not caller.is_admin:
        if body.get("org_id") not in (None, caller.org_id):
            raise Forbidden("an org admin manages policies of their own org only")
        body["org_id"] = caller.org_id
    try:
        spec = PolicySpec.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(error_lines(exc)[0], param=exc.errors()[0]["loc"] or None) from None
    check_webhooks(gov.webhooks, spec.webhooks)
    existing = next((s for s, _ in gov.all_specs() if s.id == pid), None)
    if existing is not None and not _manages(caller, existing):
        if _reads(caller, existing):
            raise Forbidden("this policy belongs to the platform, not to your org")
        raise Conflict(f"the policy id {pid!r} is taken", code="policy_id_taken")
    await gov.put(spec)
    envelope = answers.PolicyEnvelope(policy=policy_of(spec, "api"))
    return answer(envelope, 201 if existing is None else 200)


async def delete_policy(request: Request) -> Response:
    caller = await admin_principal(request)
    gov = gateway_of(request).governance
    pid = policy_id_for(caller, gov, _policy_id(request))
    found = next(((s, src) for s, src in gov.all_specs() if s.id == pid), None)
    if found is None or not _reads(caller, found[0]):
        raise NotFound(f"no policy {pid!r}", code="policy_not_found")
    spec, source = found
    if not _manages(caller, spec):
        raise Forbidden("this policy belongs to the platform, not to your org")
    if source == "file":
        raise Conflict(
            "this policy comes from the config file: edit the file, or PUT it with enabled = false",
            code="policy_in_config",
        )
    await gov.delete(pid)
    return ok(answers.PolicyDeleted(deleted=pid))


def _visible(caller: Principal, v: dict[str, Any]) -> bool:
    """The conversations' rules: org admins everything of their org, workspace admins
    their workspaces' and their own, users their own."""
    if caller.role in ("admin", "org_admin"):
        return True
    if caller.user_id in (v.get("user_id"), v.get("conversation_creator")):
        return True
    return caller.role == "workspace_admin" and v.get("workspace_id") in caller.managed_workspaces


async def violations(request: Request) -> Response:
    caller = await principal(request)
    q = read_query(request, ViolationsQuery)
    org = required_org(q.org_id, caller)
    wanted = {
        key: value
        for key, value in (
            ("policy_id", q.policyId),
            ("user_id", q.userId),
            ("conversation_id", q.conversationId),
        )
        if value
    }
    rows = await gateway_of(request).store.events.violations(
        org, since_ms=q.since, until_ms=q.until
    )
    matching = [
        v
        for v in rows
        if _visible(caller, v) and all(v.get(k) == value for k, value in wanted.items())
    ]
    page = [
        answers.PolicyViolation.model_validate(row) for row in matching[q.skip : q.skip + q.take]
    ]
    counts = None
    if caller.role in ("admin", "org_admin"):
        counts = await gateway_of(request).store.events.violation_counts(org)
    return ok(answers.ViolationPage(violations=page, total=len(matching), counts=counts))


routes = [
    Route("/admin/policies", list_policies, methods=["GET"]),
    Route("/admin/policies/{policy_id}", get_policy, methods=["GET"]),
    Route("/admin/policies/{policy_id}", put_policy, methods=["PUT"]),
    Route("/admin/policies/{policy_id}", delete_policy, methods=["DELETE"]),
    Route("/policy/violations", violations, methods=["GET"]),
]
