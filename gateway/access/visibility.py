"""Which conversations a caller may see, and pages of them from the org's indexes.

A caller's view maps to one index (org, user, workspace, repository, workspace x repository,
each also crossed with user: see gateway/storage/conversations.py), so a page costs
O(log N + page size). A workspace admin's "my workspaces plus my own" is a union of such
indexes, paged by merging the top of each rather than building the union, so it never costs
the workspaces' size.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.access.principal import Principal
from gateway.storage.conversations import Index
from gateway.storage.records import Conversation
from gateway.storage.store import Store


@dataclass(slots=True, frozen=True)
class ConversationFilter:
    user_id: str | None = None
    workspace_id: str | None = None
    repo_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def scopes(caller: Principal, f: ConversationFilter) -> list[Index] | None:
    """The indexes whose union is exactly what the caller may see of the filter, or None
    when nothing can match."""
    if caller.role in ("admin", "org_admin"):
        return [Index(f.user_id, f.workspace_id, f.repo_id)]
    me = caller.user_id
    if caller.role == "user" or not caller.managed_workspaces:
        if f.user_id not in (None, me):
            return None
        return [Index(me, f.workspace_id, f.repo_id)]
    # workspace admin: every conversation of a managed workspace, plus their own anywhere
    managed = caller.managed_workspaces
    if f.workspace_id is not None:
        if f.workspace_id not in managed and f.user_id not in (None, me):
            return None
        user = f.user_id if f.workspace_id in managed else me
        return [Index(user, f.workspace_id, f.repo_id)]
    found = [Index(f.user_id, ws, f.repo_id) for ws in sorted(managed)]
    if f.user_id in (None, me):
        found.append(Index(me, None, f.repo_id))
    return found


def shared(caller: Principal, f: ConversationFilter) -> list[Index]:
    """The indexes of what scopes()' union has in common, for its exact total: managed
    workspaces are disjoint, and overlap the caller's own conversations only in the caller's
    conversations inside them."""
    if f.user_id not in (None, caller.user_id):
        return []  # no "own" index in the union
    return [Index(caller.user_id, ws, f.repo_id) for ws in sorted(caller.managed_workspaces)]


class Visibility:
    def __init__(self, store: Store) -> None:
        self.conversations = store.conversations

    async def page(
        self,
        caller: Principal,
        org: str,
        *,
        offset: int,
        limit: int,
        filters: ConversationFilter = ConversationFilter(),
    ) -> tuple[list[Conversation], int]:
        found = scopes(caller, filters)
        if not found:
            return [], 0
        since, until = filters.since_ms, filters.until_ms
        if len(found) == 1:
            ids, total = await self.conversations.page(
                org, found[0], offset=offset, limit=limit, since_ms=since, until_ms=until
            )
        else:
            ids, total = await self.conversations.page_merged(
                org,
                found,
                shared(caller, filters),
                offset=offset,
                limit=limit,
                since_ms=since,
                until_ms=until,
            )
        return await self.conversations.get_many(ids), total
