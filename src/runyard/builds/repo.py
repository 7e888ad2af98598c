"""Build and environment queries (Core statements; flushes, never commits)."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.builds.tables import builds, environments
from runyard.db.engine import Conn
from runyard.pipelines.tables import pipeline_bundles

B = builds.c
E = environments.c
ACTIVE = ("queued", "building")


async def insert(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(sa.insert(builds).values(**row))


async def get(conn: Conn, workspace_id: str, build_id: str) -> dict[str, Any] | None:
    found = (
        await conn.execute(
            sa.select(builds).where(B.id == build_id, B.workspace_id == workspace_id)
        )
    ).first()
    return dict(found._mapping) if found is not None else None


async def update(conn: Conn, build_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(builds).where(B.id == build_id).values(**values))


async def active(conn: Conn, node_id: str, key: str) -> dict[str, Any] | None:
    """A build of ``key`` on this node that is queued or building."""
    found = (
        await conn.execute(
            sa.select(builds)
            .where(B.node_id == node_id, B.environment_key == key, B.status.in_(ACTIVE))
            .order_by(B.id)
            .limit(1)
        )
    ).first()
    return dict(found._mapping) if found is not None else None


async def unfinished(conn: Conn, node_id: str) -> list[dict[str, Any]]:
    query = sa.select(builds).where(B.node_id == node_id, B.status.in_(ACTIVE))
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def page(
    conn: Conn,
    workspace_id: str,
    pipeline_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[dict[str, Any]]:
    """Newest first (ids sort by creation)."""
    query = sa.select(builds).where(B.workspace_id == workspace_id, B.pipeline_id == pipeline_id)
    if after is not None:
        query = query.where(B.id < after[1])
    query = query.order_by(B.id.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def environment(conn: Conn, node_id: str, key: str) -> dict[str, Any] | None:
    found = (
        await conn.execute(sa.select(environments).where(E.node_id == node_id, E.key == key))
    ).first()
    return dict(found._mapping) if found is not None else None


async def environments_of(conn: Conn, node_id: str) -> list[dict[str, Any]]:
    query = (
        sa.select(environments).where(E.node_id == node_id).order_by(E.last_used_at.desc(), E.key)
    )
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def put_environment(conn: Conn, row: dict[str, Any]) -> None:
    """Record ``row`` as the ready environment of its key (replacing an older one)."""
    await conn.execute(
        sa.delete(environments).where(E.node_id == row["node_id"], E.key == row["key"])
    )
    await conn.execute(sa.insert(environments).values(**row))


async def forget_environment(conn: Conn, node_id: str, key: str, path: str) -> None:
    await conn.execute(
        sa.delete(environments).where(E.node_id == node_id, E.key == key, E.path == path)
    )


async def touch(conn: Conn, node_id: str, key: str, when: datetime) -> None:
    await conn.execute(
        sa.update(environments).where(E.node_id == node_id, E.key == key).values(last_used_at=when)
    )


async def bundle_of(conn: Conn, pipeline_id: str) -> dict[str, Any] | None:
    found = (
        await conn.execute(
            sa.select(pipeline_bundles).where(pipeline_bundles.c.pipeline_id == pipeline_id)
        )
    ).first()
    return dict(found._mapping) if found is not None else None
