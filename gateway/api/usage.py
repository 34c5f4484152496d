"""GET /usage: tokens, requests and cost for a window, as totals, a time series of UTC hours,
days or months and its groups, under the conversations' role rules
(gateway/access/usage.py): an org admin their org, a workspace admin the workspaces they
manage and their own, a user their own; the platform admin any org, or all of them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.access.usage import GRAINS, Window, parse_group_by
from gateway.api.inputs import gateway_of, ok, principal
from gateway.api.queries import UsageQuery, read_query
from gateway.api.schemas import usage as answers
from gateway.storage.records import now_ms


async def usage(request: Request) -> Response:
    caller = await principal(request)
    q = read_query(request, UsageQuery)
    group_by = parse_group_by(q.group_by)
    view = gateway_of(request).usage
    orgs = await view.orgs_for(caller, q.org_id)
    window = Window.of(GRAINS[q.bucket], q.since, q.until, now_ms())
    answer = await view.answer(caller, orgs, window, group_by)
    return ok(
        answers.Usage.model_validate(
            {
                "org_ids": orgs,
                "bucket": q.bucket,
                "group_by": list(group_by),
                # the window summed: what was asked, cut to now and to what buckets retain
                "from": window.since_ms,
                "to": window.until_ms,
                **answer,
            }
        )
    )


routes = [Route("/usage", usage, methods=["GET"])]
