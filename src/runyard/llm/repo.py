"""Provider and model queries (Core statements; flushes, never commits)."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.db.engine import Conn
from runyard.llm.tables import llm_models, llm_providers

P = llm_providers.c
M = llm_models.c


def _one(row: Any) -> dict[str, Any] | None:
    return dict(row._mapping) if row is not None else None


def _before(created_at: Any, item_id: Any, after: tuple[datetime, str]) -> Any:
    """Keyset: rows after the cursor's in newest-first order."""
    return sa.or_(created_at < after[0], sa.and_(created_at == after[0], item_id < after[1]))


async def insert_provider(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(sa.insert(llm_providers).values(**row))


async def get_provider(
    conn: Conn, workspace_id: str, provider_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = sa.select(llm_providers).where(P.id == provider_id, P.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update()
    return _one((await conn.execute(query)).first())


async def provider_named(conn: Conn, workspace_id: str, name: str) -> str | None:
    """The id of the workspace's provider called ``name``."""
    query = sa.select(P.id).where(P.workspace_id == workspace_id, P.name == name)
    found: str | None = (await conn.execute(query)).scalar()
    return found


async def list_providers(
    conn: Conn, workspace_id: str, *, limit: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    query = sa.select(llm_providers).where(P.workspace_id == workspace_id)
    if after is not None:
        query = query.where(_before(P.created_at, P.id, after))
    query = query.order_by(P.created_at.desc(), P.id.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def update_provider(conn: Conn, provider_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(llm_providers).where(P.id == provider_id).values(**values))


async def delete_provider(conn: Conn, provider_id: str) -> int:
    """Delete a provider and its models; how many models went with it."""
    result = await conn.execute(sa.delete(llm_models).where(M.provider_id == provider_id))
    await conn.execute(sa.delete(llm_providers).where(P.id == provider_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def insert_model(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(sa.insert(llm_models).values(**row))


async def get_model(
    conn: Conn, workspace_id: str, model_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = sa.select(llm_models).where(M.id == model_id, M.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update()
    return _one((await conn.execute(query)).first())


async def model_exists(conn: Conn, workspace_id: str, model_id: str) -> bool:
    query = sa.select(M.id).where(M.id == model_id, M.workspace_id == workspace_id)
    return (await conn.execute(query)).first() is not None


async def list_models(
    conn: Conn,
    workspace_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    provider_id: str | None = None,
) -> list[dict[str, Any]]:
    query = sa.select(llm_models).where(M.workspace_id == workspace_id)
    if provider_id is not None:
        query = query.where(M.provider_id == provider_id)
    if after is not None:
        query = query.where(_before(M.created_at, M.id, after))
    query = query.order_by(M.created_at.desc(), M.id.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def update_model(conn: Conn, model_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(llm_models).where(M.id == model_id).values(**values))


async def delete_model(conn: Conn, model_id: str) -> None:
    await conn.execute(sa.delete(llm_models).where(M.id == model_id))


async def clear_default(
    conn: Conn, table: sa.Table, workspace_id: str, keep: str, now: datetime
) -> list[str]:
    """Unset ``is_default`` on the workspace's rows of ``table`` other than ``keep``; their
    ids (at most one: a partial unique index keeps one default per workspace)."""
    c = table.c
    cleared = await conn.execute(
        sa.update(table)
        .where(c.workspace_id == workspace_id, c.is_default.is_(True), c.id != keep)
        .values(is_default=False, updated_at=now)
        .returning(c.id)
    )
    return [row.id for row in cleared]


async def model_with_provider(
    conn: Conn, workspace_id: str, model_id: str | None
) -> dict[str, Any] | None:
    """A model joined with what of its provider a call needs: the one named, or (``None``)
    the workspace's default."""
    query = (
        sa.select(
            llm_models,
            P.provider_type,
            P.base_url,
            P.api_key_encrypted,
            P.status.label("provider_status"),
            P.name.label("provider_name"),
        )
        .join(llm_providers, P.id == M.provider_id)
        .where(M.workspace_id == workspace_id)
    )
    if model_id is not None:
        query = query.where(M.id == model_id)
    else:
        query = query.where(M.is_default.is_(True))
    return _one((await conn.execute(query.limit(1))).first())


async def usable_model_ids(conn: Conn, workspace_id: str, limit: int) -> list[str]:
    """Ids of the workspace's active models of active providers (up to ``limit``)."""
    query = (
        sa.select(M.id)
        .join(llm_providers, P.id == M.provider_id)
        .where(M.workspace_id == workspace_id, M.status == "active", P.status == "active")
        .limit(limit)
    )
    return [row.id for row in await conn.execute(query)]
