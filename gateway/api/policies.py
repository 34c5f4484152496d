"""Policies through the admin API (/admin/policies) and the violations they record
(/policy/violations).

The platform admin manages every policy; an org admin reads the global ones and manages
those scoped to their own org. A change reaches every worker within a second. Violations
are listed under the conversations' role rules.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access.principal import Principal
from gateway.api.admin import admin_principal, required_org
from gateway.api.inputs import gateway_of, int_param, iso_param, ok, principal, read_json
from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateway.policy import PolicySpec, error_lines

POLICY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def policy_json(spec: PolicySpec, source: str) -> dict[str, Any]:
    return {**spec.model_dump(mode="json", exclude_none=True), "source": source}


def _manages(caller: Principal, spec: PolicySpec) -> bool:
    return caller.is_admin or (spec.org_id is not None and spec.org_id == caller.org_id)


def _reads(caller: Principal, spec: PolicySpec) -> bool:
    return caller.is_admin or spec.org_id in (None, caller.org_id)


def _policy_id(request: Request) -> str:
    pid = str(request.path_params["policy_id"])
    if not POLICY_ID.match(pid):
        raise ValidationFailed("policy id: 1-200 characters of letters, digits, . _ : -")
    return pid


async def list_policies(request: Request) -> Response:
    caller = await admin_principal(request)
    gov = gateway_of(request).governance
    rows = [policy_json(spec, source) for spec, source in gov.all_specs() if _reads(caller, spec)]
    return ok({"success": True, "policies": rows, "total": len(rows)})


async def get_policy(request: Request) -> Response:
    caller = await admin_principal(request)
    pid = _policy_id(request)
    for spec, source in gateway_of(request).governance.all_specs():
        if spec.id == pid and _reads(caller, spec):
            return ok({"success": True, "policy": policy_json(spec, source)})
    raise NotFound(f"no policy {pid!r}", code="policy_not_found")


async def put_policy(request: Request) -> Response:
    """Create or replace. An org admin's policy is scoped to their org whatever the body
    says; a policy of the config file may be overridden (e.g. enabled = false)."""
    caller = await admin_principal(request)
    pid = _policy_id(request)
    body = await read_json(request)
    body["id"] = pid
    if not caller.is_admin:
        if body.get("org_id") not in (None, caller.org_id):
            raise Forbidden("an org admin manages policies of their own org only")
        body["org_id"] = caller.org_id
    try:
        spec = PolicySpec.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(error_lines(exc)[0]) from None
    gov = gateway_of(request).governance
    existing = next((s for s, _ in gov.all_specs() if s.id == pid), None)
    if existing is not None and not _manages(caller, existing):
        if _reads(caller, existing):
            raise Forbidden("this policy belongs to the platform, not to your org")
        raise Conflict(f"the policy id {pid!r} is taken", code="policy_id_taken")
    await gov.put(spec)
    return ok(
        {"success": True, "policy": policy_json(spec, "api")}, 201 if existing is None else 200
    )


async def delete_policy(request: Request) -> Response:
    caller = await admin_principal(request)
    pid = _policy_id(request)
    gov = gateway_of(request).governance
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
    return ok({"success": True, "deleted": pid})


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
    org = required_org(request, caller)
    since, until = iso_param(request, "from"), iso_param(request, "to", end_of_day=True)
    if since is not None and until is not None and since > until:
        raise ValidationFailed("from: must not be after to")
    take = int_param(request, "take", 50, lo=1, hi=100)
    skip = int_param(request, "skip", 0, lo=0, hi=100_000)
    wanted = {
        key: request.query_params.get(param)
        for key, param in (
            ("policy_id", "policyId"),
            ("user_id", "userId"),
            ("conversation_id", "conversationId"),
        )
        if request.query_params.get(param)
    }
    rows = await gateway_of(request).store.events.violations(org, since_ms=since, until_ms=until)
    matching = [
        v
        for v in rows
        if _visible(caller, v) and all(v.get(k) == value for k, value in wanted.items())
    ]
    page = [
        {k: v for k, v in row.items() if k != "conversation_creator"}
        for row in matching[skip : skip + take]
    ]
    counts = None
    if caller.role in ("admin", "org_admin"):
        counts = await gateway_of(request).store.events.violation_counts(org)
    return ok(
        {
            "success": True,
            "violations": page,
            "total": len(matching),
            **({"counts": counts} if counts is not None else {}),
        }
    )


routes = [
    Route("/admin/policies", list_policies, methods=["GET"]),
    Route("/admin/policies/{policy_id}", get_policy, methods=["GET"]),
    Route("/admin/policies/{policy_id}", put_policy, methods=["PUT"]),
    Route("/admin/policies/{policy_id}", delete_policy, methods=["DELETE"]),
    Route("/policy/violations", violations, methods=["GET"]),
]
