"""The authorization matrix: every route of the app x every kind of caller x a resource of
the caller's own org and of another, through real HTTP (55 routes x 14 callers x 2 orgs:
1,540 cells today). The routes are walked from the app's route table, so a new route fails
this test, by name, until CASES holds one line for it.

What every cell must show (the contract):
- without a valid token (none, garbage, an expired JWT, a revoked key): 401, except on the
  public routes (health, pages, the OpenAPI document);
- another org's resource: 404 (never revealed), an org_id of another org: 403; never a 2xx;
- the role rules of the seeds inside one org (tests/access/test_roles_matrix.py has them in
  depth: here each route names the rule it obeys);
- no answer to a caller of one org ever carries another org's data (every piece of each
  org's data holds the marker c4n4ry-<org>); no cell answers 5xx.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.routing import Mount, Route

from gateway.access.auth import digest, new_api_key
from gateway.api.compat.unknown import UnknownV1
from tests.repo_fixtures import RepoClient
from tests.support import ADMIN_TOKEN, bearer, make_jwt, parse_sse

ORGS = ("org-1", "org-2")
WORKSPACE = {"org-1": "ws-1", "org-2": "ws-9"}  # the resources' workspace in each org
CONFIG_REPO = {"org-1": "demo-1", "org-2": "demo-9"}  # tests/repo_fixtures.py REPOSITORIES


def marker(org: str) -> str:
    return f"c4n4ry-{org}"


# -- the callers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    role: str  # unauthenticated | admin | org_admin | ws_admin | ws_admin_other | owner | user
    org: str | None = None
    token: str | None = None  # None: no Authorization header at all


def _jwt(sub: str, org: str, role: str, ws: list[str], managed: list[str], **extra: Any) -> str:
    return make_jwt(sub, org, role, workspaces=ws, managed=managed, **extra)


def owner_profile(org: str) -> dict[str, str]:
    return {"name": f"Owner {marker(org)}", "email": f"owner.{marker(org)}@example.com"}


def callers(owner_key: str, revoked_key: str) -> list[Caller]:
    expired = make_jwt("owner-1", "org-1", "user", workspaces=["ws-1"], exp=int(time.time()) - 60)
    found = [
        Caller("anonymous", "unauthenticated"),
        Caller("garbage token", "unauthenticated", token="not-a-token"),
        Caller("expired JWT", "unauthenticated", token=expired),
        Caller("revoked key", "unauthenticated", token=revoked_key),
        Caller("platform admin", "admin", token=ADMIN_TOKEN),
    ]
    for org, n in (("org-1", 1), ("org-2", 2)):
        ws = WORKSPACE[org]
        found += [
            Caller(f"org admin {n}", "org_admin", org, _jwt(f"oa-{n}", org, "org_admin", [], [])),
            Caller(
                f"ws admin {n}",
                "ws_admin",
                org,
                _jwt(f"wa-{n}", org, "workspace_admin", [ws], [ws]),
            ),
            Caller(
                f"owner {n}",
                "owner",
                org,
                owner_key
                if n == 1
                else _jwt("owner-2", org, "user", [ws], [], **owner_profile(org)),
            ),
            Caller(f"user {n}", "user", org, _jwt(f"user-{n}", org, "user", [ws], [])),
        ]
    found.append(
        Caller(
            "ws admin of ws-2 (1)",
            "ws_admin_other",
            "org-1",
            _jwt("wa-2b", "org-1", "workspace_admin", ["ws-2"], ["ws-2"]),
        )
    )
    return found


# -- what each route's rule expects --------------------------------------------------------

ROLES = ("admin", "org_admin", "ws_admin", "ws_admin_other", "owner", "user")


@dataclass(frozen=True)
class Rule:
    """Statuses inside one org, by role, and across orgs (`cross`, or `cross_admin` for the
    other org's org admin on admin routes). `public`: no token needed at all."""

    own: dict[str, set[int]]
    cross: set[int] = field(default_factory=lambda: {404})
    cross_admin: set[int] | None = None
    public: bool = False
    names_target_org: bool = False  # org_id names the target org (else the caller's own)


def by_role(*statuses: int | set[int]) -> dict[str, set[int]]:
    return {r: s if isinstance(s, set) else {s} for r, s in zip(ROLES, statuses, strict=True)}


#                          admin org_admin ws_admin ws_admin_other owner user
READ = Rule(by_role(200, 200, 200, 404, 200, 404))
PROMPT = Rule(by_role(200, 200, 403, 404, 200, 404))
SESSION = Rule(by_role(201, 201, 403, 404, 201, 404))
STOP_BY_MESSAGE = Rule(by_role(409, 409, 403, 404, 409, 404))  # finished: 409 not_running
STOP_BY_CONVERSATION = Rule(by_role(409, 409, 409, 404, 409, 404))  # nothing runs: 409
DELETE = Rule(by_role(200, 200, 200, 404, 200, 404))
CREATE_IN_REPOSITORY = Rule(by_role(200, 200, 200, 403, 200, 200))
CREATE_IN_ORG = Rule(by_role(201, 201, 201, 403, 201, 201), cross={403}, names_target_org=True)
ORG_LIST = Rule(by_role(200, 200, 200, 200, 200, 200), cross={403}, names_target_org=True)
ADMIN_LIST = Rule(by_role(200, 200, 403, 403, 403, 403), cross={403}, names_target_org=True)
ADMIN_ITEM = Rule(by_role(200, 200, 403, 403, 403, 403), cross={403}, cross_admin={404})
# ids are per org (issue 12): another org's repository or policy id names a new object of the
# caller's own org, 201, never the other org's (whose marker the answer must not carry)
ADMIN_PUT = Rule(by_role(200, 200, 403, 403, 403, 403), cross={403}, cross_admin={201})
# no org in the request: an org admin sees their org's and the global ones, whatever we aim at
ADMIN_ANY = Rule(by_role(200, 200, 403, 403, 403, 403), cross={403}, cross_admin={200})
# made anew in the caller's scope: another org's id is not there for an org admin (404)
ADMIN_MAKE = Rule(by_role(201, 201, 403, 403, 403, 403), cross={403}, cross_admin={404})
# an org_id of another org in the body: 403, whoever the caller
ADMIN_MINT = Rule(by_role(201, 201, 403, 403, 403, 403), cross={403}, names_target_org=True)
PLATFORM = Rule(by_role(200, 403, 403, 403, 403, 403), cross={403})
ANY_CALLER = Rule(by_role(200, 200, 200, 200, 200, 200), cross={200})  # nothing of an org
PUBLIC = Rule(by_role(200, 200, 200, 200, 200, 200), cross={200}, public=True)


def expected(rule: Rule, caller: Caller, target: str) -> set[int]:
    if caller.role == "unauthenticated":
        return {200} if rule.public else {401}
    if caller.role == "admin" or caller.org == target:
        return rule.own[caller.role]
    if caller.role == "org_admin" and rule.cross_admin is not None:
        return rule.cross_admin
    return rule.cross


# -- the world: one org's resources --------------------------------------------------------


@dataclass
class World:
    """Each org's resources, made by its owner (and the platform admin) through HTTP."""

    http: httpx.AsyncClient
    owners: dict[str, str] = field(default_factory=dict)  # org -> the owner's token
    things: dict[str, dict[str, str]] = field(default_factory=dict)  # org -> name -> id
    serial: int = 0

    async def build(self, org: str, owner: str) -> None:
        self.owners[org] = owner
        mark = marker(org)
        conv = await self.call(
            "POST",
            f"/api/conversation/create?org_id={org}",
            owner,
            {"title": f"title {mark}", "workspace_id": WORKSPACE[org]},
        )
        session = await self.call(
            "POST",
            f"/api/conversation/create_session?org_id={org}",
            owner,
            {"conversation_id": conv["id"], "model_id": "demo"},
        )
        r = await self.http.post(
            f"/api/conversation/stream_chat?org_id={org}",
            json={"chat_session_id": session["id"], "message": f"secret zebra{org} {mark}"},
            headers=bearer(owner),
        )
        assert r.status_code == 200, r.text
        start = parse_sse(r.content).of("start")[0].json
        self.things[org] = {
            "conv": conv["id"],
            "session": session["id"],
            "message": start["message_id"],
            "repo": CONFIG_REPO[org],
            "api_repo": await self.fresh_repo(org),
            "policy": await self.fresh_policy(org),
            "response": await self.stored_response(owner, mark),
            "org_model": await self.fresh_model(org),
            "api_key": await self.fresh_api_key(org),
        }

    async def stored_response(self, owner: str, mark: str) -> str:
        """A Responses API answer the owner stored (its conversation, in the owner's org)."""
        made = await self.call("POST", "/v1/responses", owner, {"model": "demo", "input": mark})
        return str(made["id"])

    async def call(self, method: str, url: str, token: str, body: Any = None) -> Any:
        r = await self.http.request(method, url, json=body, headers=bearer(token))
        assert r.status_code in (200, 201), (method, url, r.status_code, r.text)
        return r.json()

    def next_id(self, kind: str, org: str) -> str:
        self.serial += 1
        return f"{kind}-{org}-{self.serial}"

    async def fresh_conversation(self, org: str) -> str:
        conv = await self.call(
            "POST",
            f"/api/conversation/create?org_id={org}",
            self.owners[org],
            {"title": f"doomed {marker(org)}", "workspace_id": WORKSPACE[org]},
        )
        return str(conv["id"])

    async def fresh_repo(self, org: str) -> str:
        rid = self.next_id("repo", org)
        await self.call(
            "PUT",
            f"/admin/repositories/{rid}",
            ADMIN_TOKEN,
            {"org_id": org, "workspace_id": WORKSPACE[org], "model": "demo"},
        )
        return rid

    async def fresh_policy(self, org: str) -> str:
        pid = self.next_id("policy", org)
        await self.call(
            "PUT",
            f"/admin/policies/{pid}",
            ADMIN_TOKEN,
            {
                "kind": "keywords",
                "keywords": [f"zebra{org}", marker(org)],
                "stages": ["pre"],
                "action": "log",
                "org_id": org,
            },
        )
        return pid

    async def fresh_model(self, org: str) -> str:
        """An org's own model entry (its upstream name carries the org's marker)."""
        mid = self.next_id("model", org)
        await self.call(
            "PUT",
            f"/admin/models/{mid}",
            ADMIN_TOKEN,
            {"provider": "demo", "model": f"up-{marker(org)}", "org_id": org},
        )
        return mid

    async def fresh_keyed_repo(self, org: str) -> str:
        """A repository of the org with its own OpenAI key."""
        rid = await self.fresh_repo(org)
        await self.call(
            "PUT",
            f"/admin/repositories/{rid}/provider-keys/openai?org_id={org}",
            ADMIN_TOKEN,
            {"api_key": f"sk-{marker(org)}-0123456789"},
        )
        return rid

    async def fresh_api_key(self, org: str) -> str:
        made = await self.call(
            "POST",
            "/admin/api-keys",
            ADMIN_TOKEN,
            {"org_id": org, "user": "keyholder", "role": "user", "name": f"key {marker(org)}"},
        )
        return str(made["id"])


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Build = Callable[[World, Caller, str, bool], Awaitable[Call]]
FRESH = {
    "fresh_conv": "fresh_conversation",
    "fresh_repo": "fresh_repo",
    "fresh_policy": "fresh_policy",
    "fresh_model": "fresh_model",
    "fresh_keyed_repo": "fresh_keyed_repo",
    "fresh_api_key": "fresh_api_key",
}


def request(method: str, path: str, body: Any = None, **headers: str) -> Build:
    """A request to `path` whose {placeholders} are the target org's resources ({conv},
    {message}, {repo}, ...; {fresh_conv} etc. are made for this one cell), {org} the org it
    names: the target's when the rule names_target_org or the caller is the admin, else the
    caller's own (so another org's resource is asked for from the caller's own org)."""

    async def build(world: World, caller: Caller, target: str, names_target: bool) -> Call:
        values = dict(world.things[target])
        values["org"] = target if names_target or caller.org is None else caller.org
        values["ws"] = WORKSPACE[target]
        values["model"] = "demo"
        for placeholder, maker in FRESH.items():
            if "{" + placeholder + "}" in path + repr(body) + repr(headers):
                values[placeholder] = await getattr(world, maker)(target)

        def fill(v: Any) -> Any:
            if isinstance(v, str):
                return v.format(**values)
            if isinstance(v, dict):
                return {k: fill(x) for k, x in v.items()}
            if isinstance(v, list):
                return [fill(x) for x in v]
            return v

        return Call(method, fill(path), fill(body), {k: fill(v) for k, v in headers.items()})

    return build


@dataclass(frozen=True)
class Case:
    rule: Rule
    build: Build


HI = [{"role": "user", "content": "hi"}]
# One line per route of the app: (method, path as the route table names it) -> its case.
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/healthz"): Case(PUBLIC, request("GET", "/healthz")),
    ("GET", "/readyz"): Case(PUBLIC, request("GET", "/readyz")),
    ("GET", "/"): Case(PUBLIC, request("GET", "/")),
    ("GET", "/docs"): Case(PUBLIC, request("GET", "/docs")),
    ("GET", "/openapi.json"): Case(PUBLIC, request("GET", "/openapi.json")),
    ("GET", "/static"): Case(PUBLIC, request("GET", "/static/sse.js")),
    ("GET", "/metrics"): Case(PLATFORM, request("GET", "/metrics")),
    ("POST", "/api/conversation/create"): Case(
        CREATE_IN_ORG,
        request(
            "POST",
            "/api/conversation/create?org_id={org}",
            {"title": "mine", "workspace_id": "{ws}"},
        ),
    ),
    ("POST", "/api/conversation/create_session"): Case(
        SESSION,
        request(
            "POST",
            "/api/conversation/create_session?org_id={org}",
            {"conversation_id": "{conv}", "model_id": "demo"},
        ),
    ),
    ("POST", "/api/conversation/stream_chat"): Case(
        PROMPT,
        request(
            "POST",
            "/api/conversation/stream_chat?org_id={org}",
            {"chat_session_id": "{session}", "message": "hello"},
        ),
    ),
    ("GET", "/api/conversation/list"): Case(
        ORG_LIST, request("GET", "/api/conversation/list?org_id={org}")
    ),
    ("GET", "/api/conversation/get_with_sessions"): Case(
        READ,
        request("GET", "/api/conversation/get_with_sessions?org_id={org}&conversation_id={conv}"),
    ),
    ("GET", "/api/conversation/messages"): Case(
        READ, request("GET", "/api/conversation/messages?org_id={org}&conversation_id={conv}")
    ),
    ("GET", "/api/conversation/stream"): Case(
        READ, request("GET", "/api/conversation/stream?org_id={org}&message_id={message}")
    ),
    ("POST", "/api/conversation/stop"): Case(
        STOP_BY_MESSAGE,
        request("POST", "/api/conversation/stop?org_id={org}", {"message_id": "{message}"}),
    ),
    ("GET", "/conversation/{conversation_id}/messages/{message_id}/stream"): Case(
        READ, request("GET", "/conversation/{conv}/messages/{message}/stream")
    ),
    ("POST", "/conversation/{conversation_id}/stop"): Case(
        STOP_BY_CONVERSATION, request("POST", "/conversation/{conv}/stop")
    ),
    ("POST", "/conversation"): Case(
        CREATE_IN_REPOSITORY, request("POST", "/conversation", {"repoId": "{repo}"})
    ),
    ("GET", "/conversation"): Case(ORG_LIST, request("GET", "/conversation?org_id={org}")),
    ("POST", "/conversation/{conversation_id}/prompt"): Case(
        PROMPT, request("POST", "/conversation/{conv}/prompt", {"prompt": "hello"})
    ),
    ("GET", "/conversation/{conversation_id}/messages"): Case(
        READ, request("GET", "/conversation/{conv}/messages")
    ),
    ("DELETE", "/conversation/{conversation_id}"): Case(
        DELETE, request("DELETE", "/conversation/{fresh_conv}")
    ),
    ("GET", "/admin/repositories"): Case(
        ADMIN_LIST, request("GET", "/admin/repositories?org_id={org}")
    ),
    ("GET", "/admin/repositories/{repo_id}"): Case(
        ADMIN_ITEM, request("GET", "/admin/repositories/{api_repo}")
    ),
    ("PUT", "/admin/repositories/{repo_id}"): Case(
        ADMIN_PUT,
        request(
            "PUT", "/admin/repositories/{fresh_repo}", {"workspace_id": "{ws}", "model": "demo"}
        ),
    ),
    ("DELETE", "/admin/repositories/{repo_id}"): Case(
        ADMIN_ITEM, request("DELETE", "/admin/repositories/{fresh_repo}")
    ),
    ("GET", "/admin/events"): Case(ADMIN_LIST, request("GET", "/admin/events?org_id={org}")),
    ("GET", "/admin/policies"): Case(ADMIN_ANY, request("GET", "/admin/policies")),
    ("GET", "/admin/policies/{policy_id}"): Case(
        ADMIN_ITEM, request("GET", "/admin/policies/{policy}")
    ),
    ("PUT", "/admin/policies/{policy_id}"): Case(
        ADMIN_PUT,
        request(
            "PUT",
            "/admin/policies/{fresh_policy}",
            {"kind": "keywords", "keywords": ["x"], "stages": ["pre"], "action": "log"},
        ),
    ),
    ("DELETE", "/admin/policies/{policy_id}"): Case(
        ADMIN_ITEM, request("DELETE", "/admin/policies/{fresh_policy}")
    ),
    ("GET", "/policy/violations"): Case(
        ORG_LIST, request("GET", "/policy/violations?org_id={org}")
    ),
    ("POST", "/v1/chat/completions"): Case(
        PROMPT,
        request(
            "POST",
            "/v1/chat/completions",
            {"model": "demo", "messages": HI},
            **{"X-Conversation-Id": "{conv}"},
        ),
    ),
    ("POST", "/v1/messages"): Case(
        PROMPT,
        request(
            "POST",
            "/v1/messages",
            {"model": "demo", "max_tokens": 64, "messages": HI},
            **{"X-Conversation-Id": "{conv}"},
        ),
    ),
    # a new answer of one's own: nothing of an org is named, so the target org does not matter
    ("POST", "/v1/responses"): Case(
        ANY_CALLER, request("POST", "/v1/responses", {"model": "demo", "input": "hi"})
    ),
    ("GET", "/v1/responses/{response_id}"): Case(READ, request("GET", "/v1/responses/{response}")),
    ("POST", "/v1/embeddings"): Case(
        ANY_CALLER, request("POST", "/v1/embeddings", {"model": "gpt", "input": "hi"})
    ),
    ("POST", "/v1/completions"): Case(
        ANY_CALLER,
        request("POST", "/v1/completions", {"model": "gpt", "prompt": "hi", "max_tokens": 4}),
    ),
    ("POST", "/v1/messages/count_tokens"): Case(
        ANY_CALLER,
        request("POST", "/v1/messages/count_tokens", {"model": "demo", "messages": HI}),
    ),
    ("GET", "/admin"): Case(PUBLIC, request("GET", "/admin")),
    ("GET", "/admin/models"): Case(ADMIN_LIST, request("GET", "/admin/models?org_id={org}")),
    ("GET", "/admin/models/{model_id}"): Case(
        ADMIN_ITEM, request("GET", "/admin/models/{org_model}?org_id={org}")
    ),
    ("PUT", "/admin/models/{model_id}"): Case(
        ADMIN_PUT,
        request(
            "PUT",
            "/admin/models/{fresh_model}",
            {"provider": "demo", "model": "echo", "org_id": "{org}"},
        ),
    ),
    ("DELETE", "/admin/models/{model_id}"): Case(
        ADMIN_ITEM, request("DELETE", "/admin/models/{fresh_model}?org_id={org}")
    ),
    ("POST", "/admin/models/{model_id}/test"): Case(
        ADMIN_ITEM, request("POST", "/admin/models/{org_model}/test?org_id={org}")
    ),
    ("GET", "/admin/repositories/{repo_id}/provider-keys"): Case(
        ADMIN_ITEM, request("GET", "/admin/repositories/{api_repo}/provider-keys?org_id={org}")
    ),
    ("PUT", "/admin/repositories/{repo_id}/provider-keys/{provider}"): Case(
        ADMIN_MAKE,
        request(
            "PUT",
            "/admin/repositories/{fresh_repo}/provider-keys/openai?org_id={org}",
            {"api_key": "sk-test-0123456789"},
        ),
    ),
    ("DELETE", "/admin/repositories/{repo_id}/provider-keys/{provider}"): Case(
        ADMIN_ITEM,
        request(
            "DELETE", "/admin/repositories/{fresh_keyed_repo}/provider-keys/openai?org_id={org}"
        ),
    ),
    ("POST", "/admin/api-keys"): Case(
        ADMIN_MINT,
        request("POST", "/admin/api-keys", {"org_id": "{org}", "user": "minted", "role": "user"}),
    ),
    ("GET", "/admin/api-keys"): Case(ADMIN_LIST, request("GET", "/admin/api-keys?org_id={org}")),
    ("GET", "/admin/api-keys/{key_id}"): Case(
        ADMIN_ITEM, request("GET", "/admin/api-keys/{api_key}")
    ),
    ("DELETE", "/admin/api-keys/{key_id}"): Case(
        ADMIN_ITEM, request("DELETE", "/admin/api-keys/{fresh_api_key}")
    ),
    ("GET", "/usage"): Case(
        ORG_LIST, request("GET", "/usage?org_id={org}&group_by=user,repository,model")
    ),
    ("GET", "/v1/models"): Case(ANY_CALLER, request("GET", "/v1/models")),
    ("GET", "/v1/models/{model_id:path}"): Case(ANY_CALLER, request("GET", "/v1/models/{model}")),
}


def routes_of(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path))
        elif isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
        elif isinstance(route, UnknownV1):
            # no route of its own: any other /v1/ path answers 404 in its API's shape
            # (tests/api/compat/test_unknown_routes.py)
            continue
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return found


def test_every_route_of_the_app_has_an_expectation(repo_gateway):
    missing = [f"{m} {p}" for m, p in routes_of(repo_gateway.app) if (m, p) not in CASES]
    assert not missing, (
        f"routes with no line in CASES (tests/access/test_route_matrix.py): {missing}"
    )
    stale = [f"{m} {p}" for m, p in CASES if (m, p) not in routes_of(repo_gateway.app)]
    assert not stale, f"CASES names routes the app no longer has: {stale}"


OTHER_DATA = re.compile(r"c4n4ry-org-\d")


async def test_the_route_matrix(api: RepoClient, store, repo_gateway):
    owner_id, owner_key = new_api_key()
    await store.credentials.save_api_key(
        digest(owner_key),
        {
            "key_id": owner_id,
            "org_id": "org-1",
            "user_id": "owner-1",
            "role": "user",
            "workspaces": ["ws-1"],
            **owner_profile("org-1"),
        },
    )
    gone_id, gone_key = new_api_key()
    await store.credentials.save_api_key(
        digest(gone_key),
        {
            "key_id": gone_id,
            "org_id": "org-1",
            "user_id": "owner-1",
            "role": "user",
            "workspaces": ["ws-1"],
        },
    )
    assert (await api.http.get("/conversation", headers=bearer(gone_key))).status_code == 200
    await store.credentials.revoke_api_key(gone_id)
    everyone = callers(owner_key, gone_key)
    world = World(api.http)
    await world.build("org-1", owner_key)
    await world.build("org-2", next(c.token for c in everyone if c.name == "owner 2"))

    failures: list[str] = []
    cells = 0
    for (method, path), case in CASES.items():
        for caller in everyone:
            for target in ORGS:
                call = await case.build(world, caller, target, case.rule.names_target_org)
                headers = {**call.headers, **(bearer(caller.token) if caller.token else {})}
                r = await api.http.request(call.method, call.url, json=call.body, headers=headers)
                cells += 1
                want = expected(case.rule, caller, target)
                where = f"{method} {path} | {caller.name} | {target}'s resource: {r.status_code}"
                if r.status_code not in want:
                    failures.append(f"{where}, expected {sorted(want)}: {r.text[:160]}")
                seen = set(OTHER_DATA.findall(r.text)) - {marker(caller.org or "")}
                if caller.role != "admin" and seen:
                    failures.append(f"{where} carries {sorted(seen)}: {r.text[:160]}")
    assert cells >= 50 * 14 * 2
    assert not failures, f"{len(failures)} of {cells} cells:\n" + "\n".join(failures)
