"""Which conversations a caller may see, and pages of them from the org's sorted-set indexes.

Each filter combination maps to one precomputed index where it can (org, user, workspace,
repository, and workspace or repository crossed with user), so a page costs
O(log N + page size); only a workspace admin's "my workspaces plus my own" is a union.
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
    """The keys whose intersection holds exactly the conversations matching the filters."""
    if repo is not None:
        keys = [org_index_key(org, "repo_u", f"{repo}:{user}") if user else org_index_key(org, "repo", repo)]
        if workspace is not None:
            keys.append(org_index_key(org, "ws", workspace))
        return keys
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

    async def create(self, conv: Conversation) -> Conversation:
        return await self.store.create_conversation(conv, index_entries(conv))

    async def page(
        self, caller: Principal, org: str, *, offset: int, limit: int,
        filters: ConversationFilter = ConversationFilter(),
    ) -> tuple[list[Conversation], int]:
        groups = self.scopes(caller, org, filters)
        if not groups:
            return [], 0
        ids, total = await self.store.page_index(
            groups, offset=offset, limit=limit,
            since_ms=filters.since_ms, until_ms=filters.until_ms,
        )
        return await self.store.get_conversations(ids), total
