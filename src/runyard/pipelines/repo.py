"""Pipeline queries (Core statements; flushes, never commits)."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.db.engine import Conn
from runyard.pipelines.tables import pipeline_bundles, pipeline_versions, pipelines


async def insert(conn: Conn, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(pipelines).values(**values))
    await conn.execute(
        sa.insert(pipeline_versions).values(
            pipeline_id=values["id"],
            version=values["version"],
            spec=values["spec"],
            created_at=values["updated_at"],
        )
    )


_BY_NAME = sa.select(pipelines).where(
    pipelines.c.workspace_id == sa.bindparam("_ws"), pipelines.c.name == sa.bindparam("_name")
)


async def find(
    conn: Conn,
    workspace_id: str,
    *,
    pipeline_id: str | None = None,
    name: str | None = None,
    for_update: bool = False,
) -> dict[str, Any] | None:
    if name is not None and pipeline_id is None and not for_update:  # the hot path: run creation
        found = (await conn.execute(_BY_NAME, {"_ws": workspace_id, "_name": name})).first()
        return dict(found._mapping) if found is not None else None
    query = sa.select(pipelines).where(pipelines.c.workspace_id == workspace_id)
    if pipeline_id is not None:
        query = query.where(pipelines.c.id == pipeline_id)
    if name is not None:
        query = query.where(pipelines.c.name == name)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return dict(row._mapping) if row is not None else None


async def update(
    conn: Conn,
    pipeline_id: str,
    *,
    version: int,
    spec: dict[str, Any],
    updated_at: datetime,
) -> None:
    await conn.execute(
        sa.update(pipelines)
        .where(pipelines.c.id == pipeline_id)
        .values(version=version, spec=spec, updated_at=updated_at)
    )
    await conn.execute(
        sa.insert(pipeline_versions).values(
            pipeline_id=pipeline_id, version=version, spec=spec, created_at=updated_at
        )
    )


async def delete(conn: Conn, pipeline_id: str) -> None:
    """The pipeline, its versions and its bundle's record (the bundle's blob stays)."""
    await conn.execute(
        sa.delete(pipeline_bundles).where(pipeline_bundles.c.pipeline_id == pipeline_id)
    )
    await conn.execute(
        sa.delete(pipeline_versions).where(pipeline_versions.c.pipeline_id == pipeline_id)
    )
    await conn.execute(sa.delete(pipelines).where(pipelines.c.id == pipeline_id))


async def list_page(
    conn: Conn, workspace_id: str, *, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    query = sa.select(pipelines).where(pipelines.c.workspace_id == workspace_id)
    if after is not None:
        created_at, pipeline_id = after
        query = query.where(
            sa.or_(
                pipelines.c.created_at < created_at,
                sa.and_(pipelines.c.created_at == created_at, pipelines.c.id < pipeline_id),
            )
        )
    query = query.order_by(pipelines.c.created_at.desc(), pipelines.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def version_spec(conn: Conn, pipeline_id: str, version: int) -> dict[str, Any] | None:
    found = await conn.execute(
        sa.select(pipeline_versions.c.spec).where(
            pipeline_versions.c.pipeline_id == pipeline_id, pipeline_versions.c.version == version
        )
    )
    spec: dict[str, Any] | None = found.scalar_one_or_none()
    return spec
