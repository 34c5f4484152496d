"""Which conversations a caller may see, and pages of them from the org's sorted-set indexes.

Each filter combination maps to one precomputed index (org, user, workspace, repository,
workspace x repository, each also crossed with user), so a page costs O(log N + page size).
A workspace admin's "my workspaces plus my own" is a union of such indexes, paged by merging
the top of each rather than building the union, so it never costs the workspaces' size.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Principal
from gateway.store import Conversation, Store, org_index_key


@dataclass(slots=True, frozen=True)
class ConversationFilter:
    user_id: str | None = None
    workspace_id: str | None = None
    repo_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def index_for(org: str, user: str | None, workspace: str | None, repo: str | None) -> list[str]:
    """The keys whose intersection holds exactly the conversations matching the filters
    (always one key now; a list so that a filter without its own index can intersect)."""
    if repo is not None and workspace is not None:
        if user:
            return [org_index_key(org, "ws_repo_u", f"{workspace}:{repo}:{user}")]
        return [org_index_key(org, "ws_repo", f"{workspace}:{repo}")]
    if repo is not None:
        return [org_index_key(org, "repo_u", f"{repo}:{user}") if user else org_index_key(org, "repo", repo)]
    if workspace is not None:
        return [org_index_key(org, "ws_u", f"{workspace}:{user}") if user else org_index_key(org, "ws", workspace)]
    if user is not None:
        return [org_index_key(org, "u", user)]
    return [org_index_key(org)]


def index_entries(conv: Conversation) -> list[str]:
    """Every index one conversation belongs to (written at creation, removed at deletion)."""
    org, user = conv.org_id, conv.created_by
    keys = [org_index_key(org), org_index_key(org, "u", user)]
    if conv.workspace_id:
        keys += [
            org_index_key(org, "ws", conv.workspace_id),
            org_index_key(org, "ws_u", f"{conv.workspace_id}:{user}"),
        ]
    if conv.repo_id:
        keys += [
            org_index_key(org, "repo", conv.repo_id),
            org_index_key(org, "repo_u", f"{conv.repo_id}:{user}"),
        ]
    if conv.repo_id and conv.workspace_id:
        pair = f"{conv.workspace_id}:{conv.repo_id}"
        keys += [org_index_key(org, "ws_repo", pair), org_index_key(org, "ws_repo_u", f"{pair}:{user}")]
    return keys


class Conversations:
    def __init__(self, store: Store) -> None:
        self.store = store

    def scopes(self, caller: Principal, org: str, f: ConversationFilter) -> list[list[str]] | None:
        """A union of intersections of index keys, or None when nothing can match."""
        if caller.role in ("admin", "org_admin"):
            return [index_for(org, f.user_id, f.workspace_id, f.repo_id)]
        me = caller.user_id
        if caller.role == "user" or not caller.managed_workspaces:
            if f.user_id not in (None, me):
                return None
            return [index_for(org, me, f.workspace_id, f.repo_id)]
        # workspace admin: every conversation of a managed workspace, plus their own anywhere
        managed = caller.managed_workspaces
        if f.workspace_id is not None:
            user = f.user_id if f.workspace_id in managed else me
            if f.workspace_id not in managed and f.user_id not in (None, me):
                return None
            return [index_for(org, user, f.workspace_id, f.repo_id)]
        groups = [index_for(org, f.user_id, ws, f.repo_id) for ws in sorted(managed)]
        if f.user_id in (None, me):
            groups.append(index_for(org, me, None, f.repo_id))
        return groups

    @staticmethod
    def shared(caller: Principal, org: str, f: ConversationFilter) -> list[str]:
        """The indexes of what the groups of scopes()' one union have in common, for its exact
        total: managed workspaces are disjoint, and overlap the caller's own conversations
        only in the caller's conversations inside them."""
        if f.user_id not in (None, caller.user_id):
            return []  # no "own" group in the union
        return [
            index_for(org, caller.user_id, ws, f.repo_id)[0] for ws in sorted(caller.managed_workspaces)
        ]

    async def create(self, conv: Conversation) -> Conversation:
        return await self.store.create_conversation(conv, index_entries(conv))

    async def page(
        self, caller: Principal, org: str, *, offset: int, limit: int,
        filters: ConversationFilter = ConversationFilter(),
    ) -> tuple[list[Conversation], int]:
        groups = self.scopes(caller, org, filters)
        if not groups:
            return [], 0
        if len(groups) > 1 and all(len(g) == 1 for g in groups):
            # a workspace admin's union: merged from the top of each index, never built
            ids, total = await self.store.page_merged(
                [g[0] for g in groups], self.shared(caller, org, filters), offset=offset,
                limit=limit, since_ms=filters.since_ms, until_ms=filters.until_ms,
            )
        else:
            ids, total = await self.store.page_index(
                groups, offset=offset, limit=limit,
                since_ms=filters.since_ms, until_ms=filters.until_ms,
            )
        return await self.store.get_conversations(ids), total
