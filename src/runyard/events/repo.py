"""Event queries (Core statements; flushes, never commits)."""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from runyard.events.tables import event_streams, events


async def create_stream(
    conn: AsyncConnection, *, stream_id: str, workspace_id: str, kind: str, created_at: Any
) -> None:
    await conn.execute(
        sa.insert(event_streams).values(
            id=stream_id,
            workspace_id=workspace_id,
            kind=kind,
            last_sequence=0,
            created_at=created_at,
        )
    )


async def reserve(
    conn: AsyncConnection, stream_id: str, count: int, *, workspace_id: str | None = None
) -> int | None:
    """Take ``count`` sequences from the stream's counter; the last one, or None if no stream.

    The UPDATE holds the counter's row lock until commit, which makes sequences dense and
    gap-free under any concurrency (on SQLite the write lock does the same).
    """
    query = sa.update(event_streams).where(event_streams.c.id == stream_id)
    if workspace_id is not None:
        query = query.where(event_streams.c.workspace_id == workspace_id)
    result = await conn.execute(
        query.values(last_sequence=event_streams.c.last_sequence + count).returning(
            event_streams.c.last_sequence
        )
    )
    last: int | None = result.scalar_one_or_none()
    return last


async def insert(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.execute(sa.insert(events), list(rows))


async def last_sequence(conn: AsyncConnection, stream_id: str) -> int | None:
    result = await conn.execute(
        sa.select(event_streams.c.last_sequence).where(event_streams.c.id == stream_id)
    )
    return result.scalar_one_or_none()


def _type_filter(types: Sequence[str]) -> sa.ColumnElement[bool]:
    exact = [t for t in types if not t.endswith(".*")]
    clauses: list[sa.ColumnElement[bool]] = []
    if exact:
        clauses.append(events.c.type.in_(exact))
    clauses.extend(events.c.type.startswith(t[:-1]) for t in types if t.endswith(".*"))
    return sa.or_(*clauses)


async def page(
    conn: AsyncConnection,
    stream_id: str,
    *,
    after: int,
    limit: int,
    types: Sequence[str] = (),
    until: int | None = None,
) -> list[Any]:
    """Events of a stream with ``after < sequence [<= until]``, oldest first."""
    query = sa.select(events).where(events.c.stream_id == stream_id, events.c.sequence > after)
    if until is not None:
        query = query.where(events.c.sequence <= until)
    if types:
        query = query.where(_type_filter(types))
    result = await conn.execute(query.order_by(events.c.sequence).limit(limit))
    return list(result.all())


async def delete_stream(conn: AsyncConnection, stream_id: str) -> None:
    await conn.execute(sa.delete(events).where(events.c.stream_id == stream_id))
    await conn.execute(sa.delete(event_streams).where(event_streams.c.id == stream_id))
