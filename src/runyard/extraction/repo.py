"""Prompt, model config, document and evaluation queries (Core statements; flushes, never
commits)."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.db.engine import Conn
from runyard.extraction.tables import evaluation_runs, evaluations, prompt_versions, prompts
from runyard.runs.tables import runs

V = prompt_versions.c
E = evaluation_runs.c
R = runs.c


def _one(row: Any) -> dict[str, Any] | None:
    return dict(row._mapping) if row is not None else None


async def insert(conn: Conn, table: sa.Table, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
    await conn.execute(sa.insert(table), rows if isinstance(rows, list) else [rows])


async def get(
    conn: Conn,
    table: sa.Table,
    workspace_id: str,
    item_id: str,
    *,
    for_update: bool = False,
    columns: tuple[str, ...] | None = None,
) -> dict[str, Any] | None:
    """A row of one of the workspace-owned tables (prompts, configs, documents,
    evaluations)."""
    selected = [table.c[name] for name in columns] if columns else [table]
    query = sa.select(*selected).where(table.c.id == item_id, table.c.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update()
    return _one((await conn.execute(query)).first())


async def page(
    conn: Conn,
    table: sa.Table,
    workspace_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    omit: tuple[str, ...] = (),
    extra: tuple[sa.ColumnElement[Any], ...] = (),
) -> list[dict[str, Any]]:
    """Newest first, after the keyset cursor ``after``: the table's columns but ``omit``,
    and ``extra`` ones (labelled expressions)."""
    c = table.c
    query = sa.select(*[column for column in c if column.name not in omit], *extra).where(
        c.workspace_id == workspace_id
    )
    if after is not None:
        query = query.where(
            sa.or_(c.created_at < after[0], sa.and_(c.created_at == after[0], c.id < after[1]))
        )
    query = query.order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def update(conn: Conn, table: sa.Table, item_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(table).where(table.c.id == item_id).values(**values))


async def delete(conn: Conn, table: sa.Table, item_id: str) -> None:
    if table is prompts:
        await conn.execute(sa.delete(prompt_versions).where(V.prompt_id == item_id))
    if table is evaluations:
        await conn.execute(sa.delete(evaluation_runs).where(E.evaluation_id == item_id))
    await conn.execute(sa.delete(table).where(table.c.id == item_id))


async def named(conn: Conn, table: sa.Table, workspace_id: str, name: str) -> str | None:
    """The id of the workspace's prompt or config called ``name``."""
    query = sa.select(table.c.id).where(table.c.workspace_id == workspace_id, table.c.name == name)
    found: str | None = (await conn.execute(query)).scalar()
    return found


async def version(conn: Conn, prompt_id: str, number: int) -> dict[str, Any] | None:
    query = sa.select(prompt_versions).where(V.prompt_id == prompt_id, V.version == number)
    return _one((await conn.execute(query)).first())


async def versions(
    conn: Conn, prompt_id: str, *, limit: int, below: int | None
) -> list[dict[str, Any]]:
    """Newest first, below version ``below``."""
    query = sa.select(prompt_versions).where(V.prompt_id == prompt_id)
    if below is not None:
        query = query.where(V.version < below)
    query = query.order_by(V.version.desc()).limit(limit)
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def existing(conn: Conn, table: sa.Table, workspace_id: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` are rows of the workspace in ``table``."""
    if not ids:
        return set()
    query = sa.select(table.c.id).where(table.c.workspace_id == workspace_id, table.c.id.in_(ids))
    return set((await conn.execute(query)).scalars())


async def evaluation_results(conn: Conn, evaluation_id: str) -> list[dict[str, Any]]:
    """Each run of an evaluation with what it is a run of, its status, metrics and usage."""
    query = (
        sa.select(
            E.run_id,
            E.prompt_id,
            E.prompt_version,
            E.config_id,
            E.document_id,
            R.status,
            R.metrics,
            R.usage,
        )
        .select_from(evaluation_runs.join(runs, R.id == E.run_id))
        .where(E.evaluation_id == evaluation_id)
    )
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]
