"""The audit log: one entry per mutation, written in the mutation's own transaction."""

from typing import Any

import sqlalchemy as sa

from runyard.audit.tables import audit_entries
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.http.pagination import decode_cursor, page_of
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

    async def list_page(
        self,
        caller: Caller,
        *,
        limit: int,
        cursor: str | None,
        action: str | None = None,
        actor: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
    ) -> dict[str, Any]:
        """The workspace's entries, newest first, filtered; keyset-paginated."""
        after = decode_cursor(cursor)
        query = sa.select(audit_entries).where(audit_entries.c.workspace_id == caller.workspace_id)
        for column, value in (
            (audit_entries.c.action, action),
            (audit_entries.c.actor, actor),
            (audit_entries.c.target_type, target_type),
            (audit_entries.c.target_id, target_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if after is not None:
            created_at, entry_id = after
            query = query.where(
                sa.or_(
                    audit_entries.c.created_at < created_at,
                    sa.and_(
                        audit_entries.c.created_at == created_at, audit_entries.c.id < entry_id
                    ),
                )
            )
        query = query.order_by(audit_entries.c.created_at.desc(), audit_entries.c.id.desc())
        async with self.db.read() as conn:
            rows = [dict(r._mapping) for r in (await conn.execute(query.limit(limit + 1))).all()]
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [_entry(row) for row in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    """An entry as DESIGN §11 lists its fields."""
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "actor": row["actor"],
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "details": row["details"],
        "request_id": row["request_id"],
        "created_at": isoformat(row["created_at"]),
    }
