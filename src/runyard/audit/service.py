"""The audit log: one entry per mutation, written in the mutation's own transaction."""

from typing import Any

import sqlalchemy as sa

from runyard.audit.tables import audit_entries
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.ids import new_id


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        tx: Tx,
        caller: Caller,
        action: str,
        target_type: str,
        target_id: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        await tx.conn.insert_many(
            audit_entries,
            [
                {
                    "id": new_id("aud"),
                    "workspace_id": caller.workspace_id,
                    "actor": caller.actor,
                    "action": action,
                    "target_type": target_type,
                    "target_id": target_id,
                    "details": details or {},
                    "request_id": caller.request_id,
                    "created_at": utcnow(),
                }
            ],
        )

    async def for_target(
        self, caller: Caller, target_type: str, target_id: str
    ) -> list[dict[str, Any]]:
        """Entries about one object, oldest first."""
        query = (
            sa.select(audit_entries)
            .where(
                audit_entries.c.workspace_id == caller.workspace_id,
                audit_entries.c.target_type == target_type,
                audit_entries.c.target_id == target_id,
            )
            .order_by(audit_entries.c.created_at, audit_entries.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {
                "id": row.id,
                f"{target_type}_id": row.target_id,
                "created_at": isoformat(row.created_at),
                "action": row.action,
                "actor": row.actor,
                "details": row.details,
                "request_id": row.request_id,
            }
            for row in rows
        ]
