"""Run queries (Core statements; flushes, never commits).

Reads join the run's event stream for ``last_sequence`` — the one place where runs read an
events table, because a second query per run (or per list item) would cost every read.
"""

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.db import dialect
from runyard.db.engine import Conn
from runyard.events.tables import event_streams
from runyard.runs.tables import leases, runs

# Statements built once: building and keying a 31-column SELECT costs more than running it.
_GET = (
    sa.select(runs, event_streams.c.last_sequence)
    .outerjoin(event_streams, event_streams.c.id == runs.c.id)
    .where(runs.c.id == sa.bindparam("_id"), runs.c.workspace_id == sa.bindparam("_ws"))
)
_GET_FOR_UPDATE = _GET.with_for_update(of=runs)
_EXISTS = sa.select(runs.c.id).where(runs.c.id == sa.bindparam("_id"))
_FENCING = sa.select(
    runs.c.status,
    runs.c.attempt,
    runs.c.lease_id,
    runs.c.lease_expires_at,
    runs.c.pipeline_id,
    runs.c.pipeline_version,
).where(runs.c.id == sa.bindparam("_id"))
_UPDATE = sa.update(runs).where(runs.c.id == sa.bindparam("_id"))
_DELETE = sa.delete(runs).where(runs.c.id == sa.bindparam("_id"))
_LIST_COLUMNS = [c for c in runs.c if c.name not in ("steps", "input", "output")]


async def insert(conn: Conn, values: dict[str, Any]) -> None:
    await conn.insert_many(runs, [values])


async def exists(conn: Conn, run_id: str) -> bool:
    return (await conn.execute(_EXISTS, {"_id": run_id})).first() is not None


async def get(
    conn: Conn, workspace_id: str, run_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = _GET_FOR_UPDATE if for_update else _GET
    row = (await conn.execute(query, {"_id": run_id, "_ws": workspace_id})).first()
    return dict(row._mapping) if row is not None else None


async def released_leases(conn: Conn, run_id: str) -> int:
    """How many of the run's attempts its runners handed back (they do not count)."""
    query = sa.select(sa.func.count()).where(
        leases.c.run_id == run_id, leases.c.end_reason == "released"
    )
    return int((await conn.execute(query)).scalar_one())


async def fencing_state(conn: Conn, run_id: str) -> dict[str, Any]:
    """What a callback is checked against: status, attempt and the lease (with what renewing
    it needs), without reading the whole run."""
    row = (await conn.execute(_FENCING, {"_id": run_id})).one()
    return dict(row._mapping)


async def lease_holder(conn: Conn, run_id: str) -> str | None:
    """The lease that holds the run now (None: none, or no such run)."""
    row = (await conn.execute(sa.select(runs.c.lease_id).where(runs.c.id == run_id))).first()
    return None if row is None or row.lease_id is None else str(row.lease_id)


async def update(conn: Conn, run_id: str, values: dict[str, Any]) -> None:
    await conn.execute(_UPDATE, {"_id": run_id, **values})


async def delete(conn: Conn, run_id: str) -> None:
    await conn.execute(_DELETE, {"_id": run_id})


_INSERT_LEASE = sa.insert(leases)
_UPDATE_LEASE = sa.update(leases).where(leases.c.id == sa.bindparam("_id"))
_ACTIVE = ("running", "cancelling")


@functools.cache
def _next_queued_statement(
    by_workspace: bool, by_pipeline: bool, by_executor: bool, skipping: bool
) -> Any:
    query = (
        sa.select(runs, event_streams.c.last_sequence)
        .outerjoin(event_streams, event_streams.c.id == runs.c.id)
        .where(runs.c.status == "queued")
    )
    if by_workspace:
        query = query.where(runs.c.workspace_id == sa.bindparam("_ws"))
    if by_pipeline:
        query = query.where(runs.c.pipeline.in_(sa.bindparam("_pipelines", expanding=True)))
    if by_executor:
        query = query.where(runs.c.executor.in_(sa.bindparam("_executors", expanding=True)))
    if skipping:
        query = query.where(runs.c.workspace_id.not_in(sa.bindparam("_skip", expanding=True)))
    return (
        query.order_by(runs.c.queued_at, runs.c.id)
        .limit(1)
        .with_for_update(of=runs, skip_locked=True)
    )


async def next_queued(
    conn: Conn,
    workspace_id: str | None,
    pipelines: Sequence[str] = (),
    executors: Sequence[str] = (),
    skip_workspaces: Sequence[str] = (),
) -> dict[str, Any] | None:
    """The oldest queued run matching the filters (a workspace of None: any; none of
    ``skip_workspaces``), locked for this claimer: concurrent claimers on PostgreSQL skip it
    (``SKIP LOCKED``); SQLite serialises writers."""
    query = _next_queued_statement(
        workspace_id is not None, bool(pipelines), bool(executors), bool(skip_workspaces)
    )
    params = {
        "_ws": workspace_id,
        "_pipelines": list(pipelines),
        "_executors": list(executors),
        "_skip": list(skip_workspaces),
    }
    row = (await conn.execute(query, params)).first()
    return dict(row._mapping) if row is not None else None


async def expired(conn: Conn, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(run id, workspace id) of active runs whose lease or cancel deadline has passed."""
    query = (
        sa.select(runs.c.id, runs.c.workspace_id)
        .where(
            runs.c.status.in_(_ACTIVE),
            sa.or_(
                runs.c.lease_expires_at < now,
                sa.and_(runs.c.status == "cancelling", runs.c.cancel_deadline_at < now),
            ),
        )
        .limit(limit)
    )
    rows: list[Any] = list((await conn.execute(query)).all())
    return [(str(run_id), str(workspace_id)) for run_id, workspace_id in rows]


async def blocked(conn: Conn, limit: int) -> list[tuple[str, str, Any]]:
    """(run id, workspace id, approval) of runs waiting at a gate."""
    query = (
        sa.select(runs.c.id, runs.c.workspace_id, runs.c.approval)
        .where(runs.c.status == "blocked")
        .limit(limit)
    )
    rows: list[Any] = list((await conn.execute(query)).all())
    return [(str(r.id), str(r.workspace_id), r.approval) for r in rows]


async def leases_of(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    query = sa.select(leases).where(leases.c.run_id == run_id).order_by(leases.c.granted_at)
    return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def insert_lease(conn: Conn, values: dict[str, Any]) -> None:
    await conn.execute(_INSERT_LEASE, values)


async def update_lease(conn: Conn, lease_id: str, values: dict[str, Any]) -> None:
    await conn.execute(_UPDATE_LEASE, {"_id": lease_id, **values})


async def active_by_runner(conn: Conn, workspace_id: str) -> dict[str, int]:
    query = (
        sa.select(runs.c.runner_id, sa.func.count())
        .where(runs.c.workspace_id == workspace_id, runs.c.status.in_(_ACTIVE))
        .group_by(runs.c.runner_id)
    )
    rows: list[Any] = list((await conn.execute(query)).all())
    return {str(runner_id): int(count) for runner_id, count in rows if runner_id}


async def count_by_status(conn: Conn, workspace_id: str | None = None) -> dict[str, int]:
    query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
    if workspace_id is not None:
        query = query.where(runs.c.workspace_id == workspace_id)
    result = await conn.execute(query)
    rows: list[Any] = list(result.all())
    return {str(status): int(count) for status, count in rows}


async def list_page(
    conn: Conn,
    workspace_id: str,
    *,
    statuses: Sequence[str] = (),
    pipeline: str | None = None,
    tags: Sequence[str] = (),
    codename: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    session_id: str | None = None,
    input_filters: Sequence[tuple[list[str], str]] = (),
    q: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on ``(created_at, id)``; returns up to ``limit`` rows."""
    name = conn.dialect.name
    query = (
        sa.select(*_LIST_COLUMNS, event_streams.c.last_sequence)
        .outerjoin(event_streams, event_streams.c.id == runs.c.id)
        .where(runs.c.workspace_id == workspace_id)
    )
    if statuses:
        query = query.where(runs.c.status.in_(statuses))
    if pipeline is not None:
        query = query.where(runs.c.pipeline == pipeline)
    for tag in tags:
        query = query.where(dialect.json_array_contains(name, runs.c.tags, tag))
    if codename is not None:
        query = query.where(runs.c.codename == codename)
    if created_after is not None:
        query = query.where(runs.c.created_at >= created_after)
    if created_before is not None:
        query = query.where(runs.c.created_at < created_before)
    if session_id is not None:
        query = query.where(runs.c.session_id == session_id)
    for path, value in input_filters:
        query = query.where(dialect.json_scalar_text(name, runs.c.input, path) == value)
    if q:
        pattern = f"%{q}%"
        query = query.where(
            sa.or_(runs.c.codename.ilike(pattern), sa.cast(runs.c.tags, sa.Text).ilike(pattern))
        )
    if after is not None:
        created_at, run_id = after
        query = query.where(
            sa.or_(
                runs.c.created_at < created_at,
                sa.and_(runs.c.created_at == created_at, runs.c.id < run_id),
            )
        )
    query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def session_turns(
    conn: Conn, workspace_id: str, session_id: str, statuses: Sequence[str], *, lock: bool
) -> list[dict[str, Any]]:
    """A session's turn runs in these statuses, oldest first (locked when ``lock``)."""
    query = (
        sa.select(runs, event_streams.c.last_sequence)
        .outerjoin(event_streams, event_streams.c.id == runs.c.id)
        .where(
            runs.c.session_id == session_id,
            runs.c.workspace_id == workspace_id,
            runs.c.status.in_(statuses),
        )
        .order_by(runs.c.created_at, runs.c.id)
    )
    if lock:
        query = query.with_for_update(of=runs)
    return [dict(row._mapping) for row in (await conn.execute(query)).all()]


async def latest_turn_status(conn: Conn, session_ids: Sequence[str]) -> dict[str, str]:
    """The status of each session's newest turn run (sessions without turns are absent)."""
    if not session_ids:
        return {}
    newest = (
        sa.select(
            runs.c.session_id,
            runs.c.status,
            sa.func.row_number()
            .over(
                partition_by=runs.c.session_id,
                order_by=(runs.c.created_at.desc(), runs.c.id.desc()),
            )
            .label("n"),
        )
        .where(runs.c.session_id.in_(session_ids))
        .subquery()
    )
    query = sa.select(newest.c.session_id, newest.c.status).where(newest.c.n == 1)
    return {str(row.session_id): str(row.status) for row in (await conn.execute(query)).all()}
