"""Analytics over runs (DESIGN §12, §15), aggregated by the database, never row by row here.

Every statement reads the ``runs`` table of one workspace: a read-only, aggregate view, which
is why this feature reads another feature's table instead of going through ``RunService``
(whose use-cases are single runs and their pages). Durations are whole milliseconds, computed
per dialect (:func:`runyard.db.dialect.milliseconds_between`). Percentiles are by
nearest rank: the p-th of ``n`` ascending values is the one at rank ``ceil(p/100 * n)``,
found with ``ROW_NUMBER()`` and ``COUNT() OVER ()`` - one sort for every percentile asked.
(One statement for counts and percentiles together, ranking the NULLs apart, was slower on
SQLite than two.)
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from runyard.db import dialect
from runyard.db.engine import Conn
from runyard.runs.states import TERMINAL, RunStatus
from runyard.runs.tables import runs

S = RunStatus
FINISHED = tuple(sorted(status.value for status in TERMINAL))


def duration_ms(name: str) -> ColumnElement[int]:
    """A run's duration: started → completed (NULL unless both are set)."""
    return dialect.milliseconds_between(name, runs.c.started_at, runs.c.completed_at)


def queue_wait_ms(name: str) -> ColumnElement[int]:
    """Queued (or created) → started. ``queued_at`` is the *latest* time a run was queued: a
    run queued again after it started (lease lost, gate approved) measures from creation."""
    queued = sa.case(
        (
            sa.and_(runs.c.queued_at.is_not(None), runs.c.queued_at <= runs.c.started_at),
            runs.c.queued_at,
        ),
        else_=runs.c.created_at,
    )
    return dialect.milliseconds_between(name, queued, runs.c.started_at)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.func.count(sa.case((condition, 1)))


async def outcomes_page(
    conn: Conn,
    workspace_id: str,
    *,
    pipeline: str | None,
    since: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Finished runs, newest completion first, keyset-paginated on ``(completed_at, id)``."""
    name = conn.dialect.name
    query = sa.select(
        runs.c.id,
        runs.c.pipeline,
        runs.c.status,
        runs.c.started_at,
        runs.c.completed_at,
        dialect.json_scalar_text(name, runs.c.error, ["step"]).label("failed_step"),
    ).where(
        runs.c.workspace_id == workspace_id,
        runs.c.status.in_(FINISHED),
        runs.c.completed_at.is_not(None),  # set by every move into a terminal state
    )
    if pipeline is not None:
        query = query.where(runs.c.pipeline == pipeline)
    if since is not None:
        query = query.where(runs.c.completed_at >= since)
    if after is not None:
        completed_at, run_id = after
        query = query.where(
            sa.or_(
                runs.c.completed_at < completed_at,
                sa.and_(runs.c.completed_at == completed_at, runs.c.id < run_id),
            )
        )
    query = query.order_by(runs.c.completed_at.desc(), runs.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in (await conn.execute(query)).all()]


def _window(workspace_id: str, since: datetime, pipeline: str | None) -> list[ColumnElement[bool]]:
    conditions = [runs.c.workspace_id == workspace_id, runs.c.created_at >= since]
    if pipeline is not None:
        conditions.append(runs.c.pipeline == pipeline)
    return conditions


async def slo_counts(
    conn: Conn, workspace_id: str, *, since: datetime, pipeline: str | None
) -> dict[str, Any]:
    """Runs created since ``since`` by outcome, and their mean queue wait (over those that
    started)."""
    status = runs.c.status
    query = sa.select(
        sa.func.count().label("total_runs"),
        _count(status == S.COMPLETED.value).label("success_count"),
        _count(status == S.FAILED.value).label("failure_count"),
        _count(status.in_((S.CANCELLED.value, S.REJECTED.value))).label("cancelled_count"),
        _count(status == S.BLOCKED.value).label("blocked_count"),
        sa.func.avg(
            sa.case((runs.c.started_at.is_not(None), queue_wait_ms(conn.dialect.name)))
        ).label("avg_queue_wait_ms"),
    ).where(*_window(workspace_id, since, pipeline))
    row = (await conn.execute(query)).one()
    return dict(row._mapping)


async def distribution(
    conn: Conn,
    value: ColumnElement[Any],
    where: Sequence[ColumnElement[bool]],
    percents: Sequence[int],
) -> dict[str, Any]:
    """``count``, ``avg`` and the nearest-rank percentiles (``p50``, ...) of ``value`` over the
    runs matching ``where`` where it is not NULL; ``avg`` and the percentiles are None over no
    values. ``percents`` are whole numbers, so the rank is integer arithmetic:
    ``ceil(p * n / 100) = (p * n + 99) / 100``, with no float to round wrongly. ``n`` comes
    from the same statement (``COUNT() OVER ()``), so a concurrent insert cannot skew a rank
    even where each statement sees its own snapshot (PostgreSQL's read committed)."""
    values = sa.select(value.label("v")).where(*where).subquery("w")
    ranked = (
        sa.select(
            values.c.v,
            sa.func.row_number().over(order_by=values.c.v).label("rank"),
            sa.func.count().over().label("n"),
        )
        .where(values.c.v.is_not(None))
        .subquery("r")
    )
    picks = [
        sa.func.max(sa.case((ranked.c.rank == (p * ranked.c.n + 99) // 100, ranked.c.v))).label(
            f"p{p}"
        )
        for p in percents
    ]
    query = sa.select(sa.func.count().label("count"), sa.func.avg(ranked.c.v).label("avg"), *picks)
    row = (await conn.execute(query)).one()
    return dict(row._mapping)


async def slo_durations(
    conn: Conn, workspace_id: str, *, since: datetime, pipeline: str | None
) -> dict[str, Any]:
    """Durations of the window's finished runs that started: mean, p50 and p95."""
    where = [*_window(workspace_id, since, pipeline), runs.c.status.in_(FINISHED)]
    return await distribution(conn, duration_ms(conn.dialect.name), where, (50, 95))


async def history(
    conn: Conn, workspace_id: str, pipeline: str, *, since: datetime
) -> dict[str, Any]:
    """A pipeline's finished runs created since ``since``: how many, how many completed, and
    p50/p90 of their durations (those that started) and of ``usage.cost_usd`` (those with a
    number there)."""
    name = conn.dialect.name
    where = [*_window(workspace_id, since, pipeline), runs.c.status.in_(FINISHED)]
    counts = sa.select(
        sa.func.count().label("sample_size"),
        _count(runs.c.status == S.COMPLETED.value).label("success_count"),
    ).where(*where)
    row = (await conn.execute(counts)).one()
    durations = await distribution(conn, duration_ms(name), where, (50, 90))
    cost = dialect.json_number(name, runs.c.usage, "cost_usd")
    costs = await distribution(conn, cost, where, (50, 90))
    return {**row._mapping, "durations": durations, "costs": costs}
