"""Workspaces (tenants). This issue needs only the default one and existence checks."""

import sqlalchemy as sa

from runyard.clock import utcnow
from runyard.db.engine import Database
from runyard.workspaces.tables import workspaces

DEFAULT_WORKSPACE = "ws_default"


class WorkspaceService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: set[str] = set()  # workspaces are never deleted, so this cannot go stale

    async def ensure_default(self) -> None:
        async with self.db.write() as tx:
            found = await tx.conn.execute(
                sa.select(workspaces.c.id).where(workspaces.c.id == DEFAULT_WORKSPACE)
            )
            if found.first() is None:
                await tx.conn.execute(
                    sa.insert(workspaces).values(
                        id=DEFAULT_WORKSPACE, name="Default", tier="unlimited", created_at=utcnow()
                    )
                )
        self._known.add(DEFAULT_WORKSPACE)

    async def exists(self, workspace_id: str) -> bool:
        if workspace_id in self._known:
            return True
        async with self.db.read() as conn:
            found = await conn.execute(
                sa.select(workspaces.c.id).where(workspaces.c.id == workspace_id)
            )
            if found.first() is None:
                return False
        self._known.add(workspace_id)
        return True
