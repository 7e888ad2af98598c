"""Agent, session and message queries (Core statements; flushes, never commits)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.agents.tables import agents, messages, sessions
from runyard.db.engine import Conn

A, S, M = agents.c, sessions.c, messages.c


def _before(created_at: Any, item_id: Any, after: tuple[datetime, str]) -> Any:
    """Keyset: rows after the cursor's in newest-first order."""
    return sa.or_(created_at < after[0], sa.and_(created_at == after[0], item_id < after[1]))


async def _rows(conn: Conn, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in (await conn.execute(query)).all()]


# -- agents -------------------------------------------------------------------------------


async def insert_agent(conn: Conn, row: dict[str, Any]) -> None:
    await conn.insert_many(agents, [row])


async def get_agent(
    conn: Conn, workspace_id: str, agent_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = sa.select(agents).where(A.id == agent_id, A.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update()
    rows = await _rows(conn, query)
    return rows[0] if rows else None


async def list_agents(
    conn: Conn,
    workspace_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: str | None,
) -> list[dict[str, Any]]:
    query = sa.select(agents).where(A.workspace_id == workspace_id)
    if status is not None:
        query = query.where(A.status == status)
    if after is not None:
        query = query.where(_before(A.created_at, A.id, after))
    return await _rows(conn, query.order_by(A.created_at.desc(), A.id.desc()).limit(limit))


async def update_agent(conn: Conn, agent_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(agents).where(A.id == agent_id).values(**values))


# -- sessions -----------------------------------------------------------------------------


async def insert_session(conn: Conn, row: dict[str, Any]) -> None:
    await conn.insert_many(sessions, [row])


async def get_session(
    conn: Conn, workspace_id: str, agent_id: str, session_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    """The session, only when it belongs to this workspace and this agent."""
    query = sa.select(sessions).where(
        S.id == session_id, S.workspace_id == workspace_id, S.agent_id == agent_id
    )
    if for_update:
        query = query.with_for_update()
    rows = await _rows(conn, query)
    return rows[0] if rows else None


async def list_sessions(
    conn: Conn, workspace_id: str, agent_id: str, *, limit: int, after: tuple[datetime, str] | None
) -> list[dict[str, Any]]:
    query = sa.select(sessions).where(S.workspace_id == workspace_id, S.agent_id == agent_id)
    if after is not None:
        query = query.where(_before(S.created_at, S.id, after))
    return await _rows(conn, query.order_by(S.created_at.desc(), S.id.desc()).limit(limit))


async def update_session(conn: Conn, session_id: str, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(sessions).where(S.id == session_id).values(**values))


async def delete_session(conn: Conn, session_id: str) -> None:
    await conn.execute(sa.delete(messages).where(M.session_id == session_id))
    await conn.execute(sa.delete(sessions).where(S.id == session_id))


async def take_positions(conn: Conn, session_id: str, count: int) -> int:
    """Reserve ``count`` message positions (holding the session row's lock); the first."""
    query = (
        sa.update(sessions)
        .where(S.id == session_id)
        .values(message_count=S.message_count + count)
        .returning(S.message_count)
    )
    last = int((await conn.execute(query)).scalar_one())
    return last - count + 1


# -- messages -----------------------------------------------------------------------------


async def insert_messages(conn: Conn, rows: Sequence[dict[str, Any]]) -> None:
    await conn.insert_many(messages, rows)


async def list_messages(
    conn: Conn, session_id: str, *, after_position: int, limit: int
) -> list[dict[str, Any]]:
    query = (
        sa.select(messages)
        .where(M.session_id == session_id, M.position > after_position)
        .order_by(M.position)
        .limit(limit)
    )
    return await _rows(conn, query)


async def history(conn: Conn, session_id: str, through_run_id: str) -> list[dict[str, Any]]:
    """The messages a turn sends to the model: those of the turns up to and including
    ``through_run_id``, turn by turn (run ids sort by creation), each turn in order. A user
    message enqueued while an earlier turn ran belongs after that turn's answer."""
    query = (
        sa.select(messages)
        .where(M.session_id == session_id, M.run_id <= through_run_id)
        .order_by(M.run_id, M.position)
    )
    return await _rows(conn, query)
