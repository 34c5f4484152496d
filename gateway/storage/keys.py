"""The Redis key layout: every key and channel name the gateway uses, in one place.

Every key of one conversation shares the hash tag {c:<id>}, every org-wide index and counter
the tag {o:<org>}, so a Redis Cluster needs no data migration and no atomic operation spans
two slots. Keys without a tag (gw:sess:, gw:msg:, gw:key:, gw:worker:, gw:stop:, ...) are
only ever used by single-key commands. Tests read Redis through these functions, never
through names of their own.

Every id that goes into a name goes through part(): `%`, `:`, `{` and `}` are
percent-escaped, so no id can run into the next component (workspace `ws-1:secret` with user
`bob` and workspace `ws-1` with user `secret:bob` once shared an index) or move a key to
another hash tag (an org id with `}`). Ids of the documented alphabet (gateway/access/ids.py)
hold none of the four and are kept as they are: their keys are the ones they always had.
"""

from __future__ import annotations

from urllib.parse import unquote

P = "gw:"
_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def part(value: str) -> str:
    """One id as a component of a key name (reversible: `%` is escaped too)."""
    if "%" in value or ":" in value or "{" in value or "}" in value:
        return value.translate(_ESCAPES)
    return value


def unpart(component: str) -> str:
    """The id part() made `component` from (for names read back from a SCAN)."""
    return unquote(component) if "%" in component else component


# -- one conversation: {c:<id>} -------------------------------------------------------------


def conversation(cid: str) -> str:
    return f"{P}{{c:{part(cid)}}}"


def sessions(cid: str) -> str:
    return f"{P}{{c:{part(cid)}}}:s"


def messages(cid: str) -> str:
    return f"{P}{{c:{part(cid)}}}:m"


def turn_lock(cid: str) -> str:
    return f"{P}{{c:{part(cid)}}}:lock"


def resume_log(cid: str, message_id: str) -> str:
    return f"{P}{{c:{part(cid)}}}:r:{part(message_id)}"


# -- lookups by id (single-key commands only) -------------------------------------------------


def session_lookup(sid: str) -> str:
    return f"{P}sess:{part(sid)}"


def message_lookup(message_id: str) -> str:
    return f"{P}msg:{part(message_id)}"


def api_key(digest: str) -> str:
    return f"{P}key:{part(digest)}"


def worker(worker_id: str) -> str:
    return f"{P}worker:{part(worker_id)}"


def stop_request(message_id: str) -> str:
    """A stop request that outlives a missed pub/sub message (see PubSub.request_stop)."""
    return f"{P}stop:{part(message_id)}"


def shared_secret(name: str) -> str:
    return f"{P}secret:{part(name)}"


# -- one org: {o:<org>} -----------------------------------------------------------------------


def _org(org: str) -> str:
    return f"{P}{{o:{part(org)}}}"


def org_index(org: str, dimension: str = "", *values: str) -> str:
    """The org's conversations, or those of one `dimension` ("u", "ws", "repo_u", ...)
    and its ids (user, workspace, repository), each escaped on its own."""
    if not dimension:
        return f"{_org(org)}:convs"
    return f"{_org(org)}:convs:{dimension}:{':'.join([part(v) for v in values])}"


def org_usage(org: str) -> str:
    return f"{_org(org)}:usage"


def counted_once(org: str, message_id: str) -> str:
    """The marker that a message's usage was counted (a retried write counts it once)."""
    return f"{_org(org)}:counted:{part(message_id)}"


def violations(org: str) -> str:
    return f"{_org(org)}:violations"


def violation_counts(org: str) -> str:
    return f"{_org(org)}:violation_counts"


def events(org: str) -> str:
    return f"{_org(org)}:events"


def rate_window(org: str, kind: str, window_id: str, scope: str, user_id: str) -> str:
    """A rate-limit window: kind "requests" or "tokens", scope "org", "user" or "key" (then
    user_id is the key's id), window_id "min:<epoch minute>", "day:YYYYMMDD" or "mon:YYYYMM"."""
    who = {"org": "o", "key": f"k:{part(user_id)}"}.get(scope) or f"u:{part(user_id)}"
    return f"{_org(org)}:rl:{'req' if kind == 'requests' else 'tok'}:{window_id}:{who}"


def org_models(org: str) -> str:
    """The org's own model entries (admin API): model id -> JSON."""
    return f"{_org(org)}:models"


def org_model_health(org: str) -> str:
    return f"{_org(org)}:models:health"


def provider_keys(org: str) -> str:
    """Repositories' own provider keys, sealed: "<provider>:<repo id>" -> envelope JSON."""
    return f"{_org(org)}:provider_keys"


def org_api_keys(org: str) -> str:
    """The ids of the org's API keys (a set: counts and lists them without a scan)."""
    return f"{_org(org)}:api_keys"


def usage_bucket(org: str, grain: str, bucket: str) -> str:
    """Usage of one hour, day or month (grain h, d, m; bucket YYYYMMDDHH, YYYYMMDD, YYYYMM):
    a hash of JSON [user, workspace, repository, key, model] -> "in,out,cost,requests"."""
    return f"{_org(org)}:usage:{grain}:{bucket}"


# -- the platform ---------------------------------------------------------------------------

POLICIES = f"{P}{{policies}}"
POLICIES_VERSION = f"{P}{{policies}}:version"
REPOSITORIES = f"{P}repos"  # fields: repository_field(org, id)
API_KEYS = f"{P}keys"  # key id -> the key's record (with its digest)
ADMIN_TOKEN = f"{P}admin_token_sha256"
MODELS = f"{P}{{models}}"  # model entries every org may use (admin API): model id -> JSON
MODELS_VERSION = f"{P}{{models}}:version"  # bumped by every change of a model or provider key
MODEL_HEALTH = f"{P}{{models}}:health"  # the connection tests' last results
KEKS = f"{P}{{models}}:keks"  # KEK id -> a check value sealed with it (see models/vault.py)
USAGE_ORGS = f"{P}usage:orgs"  # every org with recorded usage (a set)


def model_test_lock(scope: str, model_id: str) -> str:
    """Held while a connection test of the model runs (one at a time, every worker)."""
    return f"{P}{{models}}:testing:{part(scope)}:{part(model_id)}"


def repository_field(org: str, rid: str) -> str:
    """An admin-managed repository's field in REPOSITORIES: ids are per org."""
    return f"{part(org)}/{part(rid)}"


# pub/sub channels
KEYS_REVOKED_CHANNEL = f"{P}keys-revoked"
STOP_CHANNEL = f"{P}stop"
POLICY_CHANNEL = f"{P}policies"
ALERT_CHANNEL = f"{P}alerts"
MODELS_CHANNEL = f"{P}models"  # "models:<org>" / "models:" (every org) / "keys:<org>"


# -- glob patterns, for scans (tests and tools) --------------------------------------------

CONVERSATION_KEYS = f"{P}{{c:*"  # every key of every conversation


def org_index_pattern(org: str = "*") -> str:
    return f"{_org(org)}:convs*"


def rate_window_pattern(org: str = "*") -> str:
    return f"{_org(org)}:rl:*"


def provider_keys_pattern() -> str:
    return f"{_org('*')}:provider_keys"


def usage_bucket_pattern(org: str = "*") -> str:
    return f"{_org(org)}:usage:*"
