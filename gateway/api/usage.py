"""GET /usage: tokens, requests and cost for a window, as totals, a time series of UTC hours,
days or months and its groups, under the conversations' role rules
(gateway/access/usage.py): an org admin their org, a workspace admin the workspaces they
manage and their own, a user their own; the platform admin any org, or all of them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access.usage import Window, parse_bucket, parse_group_by
from gateway.api.inputs import gateway_of, iso_param, ok, principal
from gateway.errors import ValidationFailed
from gateway.storage.records import iso, now_ms

BUCKET_NAMES = {"h": "hour", "d": "day", "m": "month"}


async def usage(request: Request) -> Response:
    caller = await principal(request)
    q = request.query_params
    org = q.get("org_id") or None
    grain = parse_bucket(q.get("bucket"))
    group_by = parse_group_by(q.get("group_by"))
    since = iso_param(request, "from")
    until = iso_param(request, "to", end_of_day=True)
    if since is not None and until is not None and since > until:
        raise ValidationFailed("from: must not be after to")
    view = gateway_of(request).usage
    orgs = await view.orgs_for(caller, org)
    window = Window.of(grain, since, until, now_ms())
    answer = await view.answer(caller, orgs, window, group_by)
    return ok(
        {
            "success": True,
            "org_ids": orgs,
            "bucket": BUCKET_NAMES[grain],
            "group_by": list(group_by),
            # the window summed: what was asked, cut to now and to what buckets retain
            "from": iso(window.since_ms),
            "to": iso(window.until_ms),
            **answer,
        }
    )


routes = [Route("/usage", usage, methods=["GET"])]
