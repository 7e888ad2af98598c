"""Webhook and delivery queries (Core statements; flushes, never commits)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.db.engine import Conn
from runyard.webhooks.tables import webhook_deliveries, webhooks

W = webhooks.c
D = webhook_deliveries.c

_ENABLED = sa.select(W.id, W.events).where(
    W.workspace_id == sa.bindparam("_ws"), W.enabled.is_(True)
)
#: the columns a sender needs, returned by a claim
_CLAIMED = (D.id, D.webhook_id, D.event, D.webhook_message_id, D.body, D.attempts)


async def insert_webhook(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(sa.insert(webhooks).values(**row))


async def get_webhook(
    conn: Conn, workspace_id: str, webhook_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = sa.select(webhooks).where(W.id == webhook_id, W.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return dict(row._mapping) if row is not None else None


async def managed_webhook(conn: Conn, managed_by: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(webhooks).where(W.managed_by == managed_by))).first()
    return dict(row._mapping) if row is not None else None


def _before(created_at: Any, item_id: Any, after: tuple[datetime, str]) -> Any:
    """Keyset: rows after the cursor's in newest-first order."""
    return sa.or_(created_at < after[0], sa.and_(created_at == after[0], item_id < after[1]))


async def list_webhooks(
    conn: Conn, workspace_id: str, *, limit: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    query = sa.select(webhooks).where(W.workspace_id == workspace_id)
    if after is not None:
        query = query.where(_before(W.created_at, W.id, after))
    query = query.order_by(W.created_at.desc(), W.id.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def update_webhook(conn: Conn, webhook_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(webhooks).where(W.id == webhook_id).values(**values))


async def delete_webhook(conn: Conn, webhook_id: str) -> None:
    await conn.execute(sa.delete(webhook_deliveries).where(D.webhook_id == webhook_id))
    await conn.execute(sa.delete(webhooks).where(W.id == webhook_id))


async def enabled_webhooks(conn: Conn, workspace_id: str) -> list[tuple[str, list[str]]]:
    """``(id, patterns)`` of the workspace's enabled subscriptions."""
    rows = await conn.execute(_ENABLED, {"_ws": workspace_id})
    return [(row.id, list(row.events)) for row in rows]


async def insert_deliveries(conn: Conn, rows: Sequence[dict[str, Any]]) -> None:
    await conn.insert_many(webhook_deliveries, rows)


async def get_delivery(
    conn: Conn, workspace_id: str, webhook_id: str, delivery_id: str
) -> dict[str, Any] | None:
    query = sa.select(webhook_deliveries).where(
        D.id == delivery_id, D.webhook_id == webhook_id, D.workspace_id == workspace_id
    )
    row = (await conn.execute(query)).first()
    return dict(row._mapping) if row is not None else None


async def list_deliveries(
    conn: Conn,
    webhook_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    query = sa.select(webhook_deliveries).where(D.webhook_id == webhook_id)
    if status is not None:
        query = query.where(D.status == status)
    if after is not None:
        query = query.where(_before(D.created_at, D.id, after))
    query = query.order_by(D.created_at.desc(), D.id.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


def _due(now: datetime) -> Any:
    """Deliveries due at ``now`` whose subscription is enabled."""
    return (
        sa.select(D.id)
        .join(webhooks, W.id == D.webhook_id)
        .where(D.next_attempt_at <= now, W.enabled.is_(True))
    )


async def any_due(conn: Conn, now: datetime) -> bool:
    """A cheap read before a claim, so an idle poll never takes the write lock."""
    return (await conn.execute(_due(now).limit(1))).first() is not None


async def claim(
    conn: Conn, now: datetime, lease_until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Take up to ``limit`` due deliveries: their ``next_attempt_at`` becomes ``lease_until``,
    the lease their sender holds. Replicas on PostgreSQL skip rows another one is claiming,
    and the outer condition is checked again on the row as it is after any such claim."""
    picked = _due(now).order_by(D.next_attempt_at).limit(limit)
    picked = picked.with_for_update(of=webhook_deliveries, skip_locked=True)
    statement = (
        sa.update(webhook_deliveries)
        .where(D.id.in_(picked.scalar_subquery()), D.next_attempt_at <= now)
        .values(next_attempt_at=lease_until)
        .returning(*_CLAIMED)
    )
    claimed = [dict(r._mapping) for r in (await conn.execute(statement)).all()]
    if not claimed:
        return []
    ids = {row["webhook_id"] for row in claimed}
    targets = await conn.execute(sa.select(W.id, W.url, W.secret).where(W.id.in_(ids)))
    by_id = {row.id: (row.url, row.secret) for row in targets}
    for row in claimed:
        row["url"], row["secret"] = by_id.get(row["webhook_id"], (None, None))
    return [row for row in claimed if row["url"] is not None]


async def finish(conn: Conn, delivery_id: str, lease: datetime, values: dict[str, Any]) -> bool:
    """Record an attempt, if its sender still holds the lease (else another took over)."""
    result = await conn.execute(
        sa.update(webhook_deliveries)
        .where(D.id == delivery_id, D.next_attempt_at == lease)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def purge_finished(conn: Conn, before: datetime) -> None:
    """Delivered and dead deliveries created before ``before`` (the retention)."""
    await conn.execute(
        sa.delete(webhook_deliveries).where(
            D.status.in_(("delivered", "dead")), D.created_at < before
        )
    )


async def purge_orphans(conn: Conn) -> None:
    """Deliveries of a subscription deleted while their event was being written."""
    await conn.execute(
        sa.delete(webhook_deliveries).where(
            D.next_attempt_at.is_not(None), D.webhook_id.not_in(sa.select(W.id))
        )
    )
