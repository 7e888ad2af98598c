"""Event queries (Core statements; flushes, never commits)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.db import dialect
from runyard.db.engine import Conn
from runyard.events.tables import event_streams, events

_RESERVE = (
    sa.update(event_streams)
    .where(event_streams.c.id == sa.bindparam("_id"))
    .values(last_sequence=event_streams.c.last_sequence + sa.bindparam("_count"))
    .returning(event_streams.c.last_sequence, event_streams.c.mirror_id)
)
_RESERVE_IN_WORKSPACE = _RESERVE.where(event_streams.c.workspace_id == sa.bindparam("_ws"))


async def create_stream(
    conn: Conn,
    *,
    stream_id: str,
    workspace_id: str,
    kind: str,
    created_at: Any,
    last_sequence: int,
    mirror_id: str | None = None,
) -> None:
    await conn.insert_many(
        event_streams,
        [
            {
                "id": stream_id,
                "workspace_id": workspace_id,
                "kind": kind,
                "last_sequence": last_sequence,
                "created_at": created_at,
                "mirror_id": mirror_id,
            }
        ],
    )


async def reserve(
    conn: Conn, stream_id: str, count: int, *, workspace_id: str | None = None
) -> tuple[int, str | None] | None:
    """Take ``count`` sequences from the stream's counter: the last one and the stream's
    mirror, or None if there is no such stream.

    The UPDATE holds the counter's row lock until commit, which makes sequences dense and
    gap-free under any concurrency (on SQLite the write lock does the same).
    """
    if workspace_id is None:
        result = await conn.execute(_RESERVE, {"_id": stream_id, "_count": count})
    else:
        result = await conn.execute(
            _RESERVE_IN_WORKSPACE, {"_id": stream_id, "_count": count, "_ws": workspace_id}
        )
    row = result.one_or_none()
    return None if row is None else (int(row.last_sequence), row.mirror_id)


async def stream_workspace(conn: Conn, stream_id: str) -> str:
    query = sa.select(event_streams.c.workspace_id).where(event_streams.c.id == stream_id)
    workspace_id: str = (await conn.execute(query)).scalar_one()
    return workspace_id


async def insert(conn: Conn, rows: Sequence[dict[str, Any]]) -> None:
    await conn.insert_many(events, rows)


def _type_filter(types: Sequence[str]) -> sa.ColumnElement[bool]:
    exact = [t for t in types if not t.endswith(".*")]
    clauses: list[sa.ColumnElement[bool]] = []
    if exact:
        clauses.append(events.c.type.in_(exact))
    clauses.extend(events.c.type.startswith(t[:-1]) for t in types if t.endswith(".*"))
    return sa.or_(*clauses)


async def page(
    conn: Conn,
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


async def lock_streams(conn: Conn, stream_ids: Sequence[str]) -> None:
    query = (
        sa.select(event_streams.c.id)
        .where(event_streams.c.id.in_(stream_ids))
        .order_by(event_streams.c.id)
        .with_for_update()
    )
    await conn.execute(query)


async def delete_stream(conn: Conn, stream_id: str) -> None:
    await conn.execute(sa.delete(events).where(events.c.stream_id == stream_id))
    await conn.execute(sa.delete(event_streams).where(event_streams.c.id == stream_id))


async def latest_of_type(conn: Conn, workspace_id: str, event_type: str) -> Any:
    query = (
        sa.select(events)
        .join(event_streams, event_streams.c.id == events.c.stream_id)
        .where(event_streams.c.workspace_id == workspace_id, events.c.type == event_type)
        .order_by(events.c.time.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def counts(conn: Conn, stream_id: str) -> list[tuple[str, str | None, int]]:
    """Events per type; log events also per level, console lines per stream."""
    detail = sa.case(
        (
            events.c.type == "log",
            dialect.json_scalar_text(conn.dialect.name, events.c.data, ["level"]),
        ),
        (
            events.c.type == "console.line",
            dialect.json_scalar_text(conn.dialect.name, events.c.data, ["stream"]),
        ),
        else_=sa.null(),
    )
    query = (
        sa.select(events.c.type, detail.label("detail"), sa.func.count())
        .where(events.c.stream_id == stream_id)
        .group_by(events.c.type, detail)
    )
    rows: list[Any] = list((await conn.execute(query)).all())
    return [(str(t), d, int(n)) for t, d, n in rows]


async def first_time(conn: Conn, stream_id: str, sources: Sequence[str]) -> datetime | None:
    query = sa.select(sa.func.min(events.c.time)).where(
        events.c.stream_id == stream_id, events.c.source.in_(sources)
    )
    first: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return first
