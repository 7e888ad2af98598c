"""Workspaces (tenants): the default one, creation, visibility and tiers (DESIGN §11)."""

import hmac
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from runyard.audit.service import AuditService
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.ids import new_id
from runyard.problems import Forbidden, InvalidInput, NotFound
from runyard.settings import TierLimits, default_tiers
from runyard.workspaces.tables import workspaces

DEFAULT_WORKSPACE = "ws_default"
#: how long another replica's tier change may take to reach this one
TIER_CACHE_SECONDS = 2.0


def workspace_resource(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "workspace",
        "name": row["name"],
        "tier": row["tier"],
        "created_at": isoformat(row["created_at"]),
    }


class WorkspaceService:
    def __init__(
        self,
        db: Database,
        audit: AuditService | None = None,
        *,
        tiers: dict[str, TierLimits] | None = None,
        default_tier: str = "free",
    ) -> None:
        self.db = db
        self.audit = audit or AuditService(db)
        self.tiers = tiers if tiers is not None else default_tiers()
        self.default_tier = default_tier
        self._known: set[str] = set()  # workspaces are never deleted, so this cannot go stale
        self._tiers: dict[str, tuple[str, float]] = {}

    async def ensure_default(self) -> None:
        """Create ``ws_default`` unless it exists (replicas starting together may race)."""
        async with self.db.write() as tx:
            insert = postgresql.insert if tx.conn.dialect.name == "postgresql" else sqlite.insert
            await tx.conn.execute(
                insert(workspaces)
                .values(id=DEFAULT_WORKSPACE, name="Default", tier="unlimited", created_at=utcnow())
                .on_conflict_do_nothing(index_elements=[workspaces.c.id])
            )
        self._known.add(DEFAULT_WORKSPACE)

    async def exists(self, workspace_id: str) -> bool:
        if workspace_id in self._known:
            return True
        if await self._row(workspace_id) is None:
            return False
        self._known.add(workspace_id)
        return True

    async def _row(self, workspace_id: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            found = await conn.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id))
            row = found.first()
        return dict(row._mapping) if row is not None else None

    async def create(self, caller: Caller, name: str, tier: str | None) -> dict[str, Any]:
        """A new workspace (server admins only: open mode or the default workspace's admins)."""
        if not caller.server_admin:
            raise Forbidden("creating workspaces needs an admin key of the default workspace")
        tier = self._check_tier(tier or self.default_tier)
        workspace_id = new_id("ws")
        row: dict[str, Any] = {"id": workspace_id, "name": name, "tier": tier}
        row["created_at"] = utcnow()
        async with self.db.write() as tx:
            await tx.conn.execute(sa.insert(workspaces).values(**row))
            await self.audit.record(
                tx,
                _in(workspace_id, caller),
                "workspace.create",
                "workspace",
                workspace_id,
                {"name": name, "tier": tier, "by_workspace": caller.workspace_id},
            )
        self._known.add(workspace_id)
        return workspace_resource(row)

    async def get(self, caller: Caller, workspace_id: str) -> dict[str, Any]:
        """A workspace its own keys and server admins see; for anyone else it does not exist."""
        row = await self._row(workspace_id) if self._visible(caller, workspace_id) else None
        if row is None:
            raise NotFound(f"workspace {workspace_id} not found", code="workspace_not_found")
        return workspace_resource(row)

    async def set_tier(
        self,
        caller: Caller | None,
        workspace_id: str,
        tier: str,
        *,
        webhook_secret: str | None = None,
        expected_secret: str | None = None,
    ) -> dict[str, Any]:
        """Change a workspace's tier: a server admin (``caller``) or a billing system that
        presents the tier webhook secret (compared in constant time)."""
        if webhook_secret is not None:
            if (
                not expected_secret
                or not webhook_secret
                or not hmac.compare_digest(webhook_secret.encode(), expected_secret.encode())
            ):
                raise Forbidden("X-Webhook-Secret does not match", code="bad_webhook_secret")
            actor = Caller(workspace_id=workspace_id, actor="billing-webhook")
        elif caller is None:
            raise Forbidden("changing a tier needs an admin key or X-Webhook-Secret")
        else:
            await self.get(caller, workspace_id)  # 404 for other workspaces
            if not caller.server_admin:
                raise Forbidden("changing a tier needs an admin key of the default workspace")
            actor = _in(workspace_id, caller)
        tier = self._check_tier(tier)
        async with self.db.write() as tx:
            changed = await tx.conn.execute(
                sa.update(workspaces)
                .where(workspaces.c.id == workspace_id)
                .values(tier=tier)
                .returning(workspaces.c.id)
            )
            if changed.first() is None:
                raise NotFound(f"workspace {workspace_id} not found", code="workspace_not_found")
            await self.audit.record(
                tx, actor, "workspace.tier", "workspace", workspace_id, {"tier": tier}
            )
        self._tiers.pop(workspace_id, None)
        row = await self._row(workspace_id)
        assert row is not None
        return workspace_resource(row)

    async def tier_of(self, workspace_id: str) -> str:
        """The workspace's tier, cached for :data:`TIER_CACHE_SECONDS`."""
        cached = self._tiers.get(workspace_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        row = await self._row(workspace_id)
        tier = row["tier"] if row is not None else "unlimited"
        self._tiers[workspace_id] = (tier, now + TIER_CACHE_SECONDS)
        return tier

    async def limits_of(self, workspace_id: str) -> tuple[str, TierLimits]:
        tier = await self.tier_of(workspace_id)
        # a tier removed from the configuration since: treat it as having no limits
        return tier, self.tiers.get(tier) or TierLimits()

    def _visible(self, caller: Caller, workspace_id: str) -> bool:
        return caller.server_admin or caller.workspace_id == workspace_id

    def _check_tier(self, tier: str) -> str:
        if tier not in self.tiers:
            raise InvalidInput(
                f"unknown tier {tier!r}",
                errors=[{"loc": ["body", "tier"], "msg": f"one of {sorted(self.tiers)}"}],
            )
        return tier


def _in(workspace_id: str, caller: Caller) -> Caller:
    """The caller as recorded in the audit of the workspace it acted on, where that
    workspace's admins read it."""
    return Caller(workspace_id=workspace_id, actor=caller.actor, request_id=caller.request_id)
