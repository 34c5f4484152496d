"""The caller as the gateway sees it, and the role rules the seeds set.

Org admins see everything in their org; workspace admins see every conversation in the
workspaces they manage plus their own; users see and prompt only their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.errors import Forbidden
from gateway.storage.records import Conversation

ROLES = ("admin", "org_admin", "workspace_admin", "user")
RANK = {role: len(ROLES) - i for i, role in enumerate(ROLES)}  # admin highest


@dataclass(slots=True, frozen=True)
class Principal:
    user_id: str
    role: str
    org_id: str | None = None
    workspaces: frozenset[str] = field(default_factory=frozenset)
    managed_workspaces: frozenset[str] = field(default_factory=frozenset)
    name: str | None = None
    family_name: str | None = None
    email: str | None = None
    key_id: str | None = None
    # an API key's restrictions: the models it may use (None: any), and its own budgets
    # ((name, limit) pairs of gateway/access/quotas.py KEY_LIMITS)
    models: frozenset[str] | None = None
    budgets: tuple[tuple[str, int], ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def check_org(self, org_id: str) -> None:
        """An org_id query parameter that is not the caller's org answers 403."""
        if not self.is_admin and org_id != self.org_id:
            raise Forbidden("org_id is not your organization", code="forbidden_org")

    def in_org(self, org_id: str) -> bool:
        return self.is_admin or org_id == self.org_id

    def can_see(self, conv: Conversation) -> bool:
        if conv.deleted_at is not None or not self.in_org(conv.org_id):
            return False
        if self.role in ("admin", "org_admin") or conv.created_by == self.user_id:
            return True
        return self.role == "workspace_admin" and conv.workspace_id in self.managed_workspaces

    def can_prompt(self, conv: Conversation) -> bool:
        """Seeds 000/002: a user prompts their own conversations, and only while they can
        still use its workspace; an org admin any in the org. A workspace admin reads the
        conversations of their workspaces but prompts only their own."""
        if not self.can_see(conv):
            return False
        if self.role in ("admin", "org_admin"):
            return True
        return conv.created_by == self.user_id and (
            conv.workspace_id is None or self.can_use_workspace(conv.workspace_id)
        )

    def can_delete(self, conv: Conversation) -> bool:
        """The creator, a workspace admin of its workspace, an org admin, the admin."""
        if not self.can_see(conv):
            return False
        if self.role in ("admin", "org_admin") or conv.created_by == self.user_id:
            return True
        return self.role == "workspace_admin" and conv.workspace_id in self.managed_workspaces

    def may_use_model(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models

    def can_use_workspace(self, workspace_id: str) -> bool:
        if self.role in ("admin", "org_admin"):
            return True
        return workspace_id in self.workspaces or workspace_id in self.managed_workspaces
