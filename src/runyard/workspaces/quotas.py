"""Quotas of a workspace's tier (DESIGN §11): runs per calendar month, concurrent runs and
artifact bytes.

Runs per month are admitted by one statement that increments the month's counter only while
it is below the limit (an upsert whose update is conditional), so parallel creates cannot
both take the last run: PostgreSQL locks the counter row for the update and re-checks the
condition, SQLite serialises writers. The counter lives in the creating transaction and is
taken last, just before commit, so a rejected or failed create leaves nothing behind and
the row lock is held as briefly as possible.
"""

import functools
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from runyard.artifacts.tables import artifacts
from runyard.clock import utcnow
from runyard.db.engine import Conn, Database
from runyard.problems import QuotaExceeded
from runyard.runs.tables import runs
from runyard.workspaces.service import WorkspaceService
from runyard.workspaces.tables import workspace_usage, workspaces

#: how long claims from every workspace (the embedded worker's, the pusher's) pass over a
#: workspace found at its concurrency limit without a look: a run finishing on this server
#: clears it at once; one finishing on another replica is seen within this time
FULL_SECONDS = 5.0
#: statuses that hold one of a workspace's concurrent-run slots
ACTIVE = ("running", "cancelling")


def period_of(moment: datetime) -> str:
    """The calendar month (UTC) a moment falls in, as DESIGN's ``YYYY-MM-01``."""
    return f"{moment.year:04d}-{moment.month:02d}-01"


@functools.cache
def _increment(dialect: str, limited: bool) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(workspace_usage).values(
        workspace_id=sa.bindparam("ws"), period=sa.bindparam("period"), runs=1
    )
    statement = statement.on_conflict_do_update(
        index_elements=[workspace_usage.c.workspace_id, workspace_usage.c.period],
        set_={"runs": workspace_usage.c.runs + 1},
        where=workspace_usage.c.runs < sa.bindparam("limit") if limited else None,
    )
    return statement.returning(workspace_usage.c.runs)


#: the same upsert for SQLite's driver directly: on the create path SQLAlchemy's statement
#: execution cost more than the statement itself
_SQLITE_INCREMENT = (
    "INSERT INTO workspace_usage (workspace_id, period, runs) VALUES (?, ?, 1) "
    "ON CONFLICT (workspace_id, period) DO UPDATE SET runs = runs + 1 {where}RETURNING runs"
)


async def _increment_run_count(
    conn: Conn, workspace_id: str, period: str, limit: int | None
) -> bool:
    """Count one more run this period; False when the limit is reached (nothing changed)."""
    if conn.dialect.name == "sqlite":
        where = "" if limit is None else "WHERE runs < ? "
        params = (workspace_id, period) if limit is None else (workspace_id, period, limit)

        def upsert(connection: sa.Connection) -> bool:
            cursor = connection.connection.driver_connection.execute(  # type: ignore[union-attr]
                _SQLITE_INCREMENT.format(where=where), params
            )
            return cursor.fetchone() is not None

        return await conn.run_sync(upsert)
    statement = _increment(conn.dialect.name, limit is not None)
    params_pg = {"ws": workspace_id, "period": period, "limit": limit}
    return (await conn.execute(statement, params_pg)).first() is not None


_RUNS_IN_PERIOD = sa.select(workspace_usage.c.runs).where(
    workspace_usage.c.workspace_id == sa.bindparam("ws"),
    workspace_usage.c.period == sa.bindparam("period"),
)
_ACTIVE_RUNS = sa.select(sa.func.count()).where(
    runs.c.workspace_id == sa.bindparam("ws"), runs.c.status.in_(ACTIVE)
)
_ARTIFACT_BYTES = sa.select(sa.func.coalesce(sa.func.sum(artifacts.c.size_bytes), 0)).where(
    artifacts.c.workspace_id == sa.bindparam("ws")
)
_LOCK_WORKSPACE = (
    sa.select(workspaces.c.id).where(workspaces.c.id == sa.bindparam("ws")).with_for_update()
)


class Quotas:
    def __init__(self, db: Database, workspaces: WorkspaceService) -> None:
        self.db = db
        self.workspaces = workspaces
        self._full: dict[str, float] = {}

    async def admit_run(self, conn: Conn, workspace_id: str) -> None:
        """Count a new run against this month's quota, or raise 402 when it is used up."""
        tier, limits = await self.workspaces.limits_of(workspace_id)
        limit = limits.runs_per_month
        period = period_of(utcnow())
        if (limit is None or limit > 0) and await _increment_run_count(
            conn, workspace_id, period, limit
        ):
            return
        current = await self._runs_in(conn, workspace_id, period)
        raise QuotaExceeded(
            f"the {tier} tier admits {limit} runs per month; {current} were created in the "
            f"month from {period}",
            quota="runs_per_month",
            current=current,
            limit=limit,
            period=period,
        )

    async def has_slot(self, conn: Conn, workspace_id: str) -> bool | None:
        """Whether the workspace may start one more run now: True (its row is then locked on
        PostgreSQL, so two claimers cannot both take the last slot), False (full; nothing
        locked), None (found full only once locked: the caller should stop, since going on
        to lock another workspace's row could deadlock with a claimer doing the reverse)."""
        _, limits = await self.workspaces.limits_of(workspace_id)
        limit = limits.concurrent_runs
        if limit is None:
            return True
        if await self._active(conn, workspace_id) >= limit:
            self._full[workspace_id] = time.monotonic() + FULL_SECONDS
            return False
        await conn.execute(_LOCK_WORKSPACE, {"ws": workspace_id})
        if await self._active(conn, workspace_id) >= limit:
            self._full[workspace_id] = time.monotonic() + FULL_SECONDS
            return None
        return True

    def known_full(self) -> list[str]:
        """Workspaces found at their limit in the last :data:`FULL_SECONDS`: claims pass over
        them from the start, so full tenants cannot crowd out everyone else's runs."""
        now = time.monotonic()
        for workspace_id in [w for w, until in self._full.items() if until <= now]:
            del self._full[workspace_id]
        return list(self._full)

    def slot_freed(self, workspace_id: str) -> None:
        self._full.pop(workspace_id, None)

    @staticmethod
    async def _active(conn: Conn, workspace_id: str) -> int:
        return int((await conn.execute(_ACTIVE_RUNS, {"ws": workspace_id})).scalar_one())

    async def limits_concurrency(self, workspace_id: str) -> bool:
        _, limits = await self.workspaces.limits_of(workspace_id)
        return limits.concurrent_runs is not None

    async def artifact_room(self, workspace_id: str) -> tuple[int, QuotaExceeded] | None:
        """Bytes the workspace may still store, with the 402 to raise past them (None: no
        limit)."""
        tier, limits = await self.workspaces.limits_of(workspace_id)
        if limits.artifact_bytes is None:
            return None
        async with self.db.read() as conn:
            used = int((await conn.execute(_ARTIFACT_BYTES, {"ws": workspace_id})).scalar_one())
        exceeded = artifact_quota_exceeded(tier, used, limits.artifact_bytes)
        return max(0, limits.artifact_bytes - used), exceeded

    async def admit_artifact(self, conn: Conn, workspace_id: str, size: int) -> None:
        """Check, holding the workspace's lock, that ``size`` more bytes fit (402 if not)."""
        tier, limits = await self.workspaces.limits_of(workspace_id)
        if limits.artifact_bytes is None:
            return
        await conn.execute(_LOCK_WORKSPACE, {"ws": workspace_id})
        used = int((await conn.execute(_ARTIFACT_BYTES, {"ws": workspace_id})).scalar_one())
        if used + size > limits.artifact_bytes:
            raise artifact_quota_exceeded(tier, used, limits.artifact_bytes)

    async def usage(self, workspace_id: str) -> dict[str, Any]:
        tier, limits = await self.workspaces.limits_of(workspace_id)
        period = period_of(utcnow())
        params = {"ws": workspace_id, "period": period}
        async with self.db.read() as conn:
            runs_now = await self._runs_in(conn, workspace_id, period)
            active = (await conn.execute(_ACTIVE_RUNS, params)).scalar_one()
            stored = (await conn.execute(_ARTIFACT_BYTES, params)).scalar_one()
        return {
            "workspace_id": workspace_id,
            "tier": tier,
            "period": period,
            "runs": runs_now,
            "limit": limits.runs_per_month,
            "concurrent_runs": int(active),
            "concurrent_runs_limit": limits.concurrent_runs,
            "artifact_bytes": int(stored),
            "artifact_bytes_limit": limits.artifact_bytes,
        }

    @staticmethod
    async def _runs_in(conn: Conn, workspace_id: str, period: str) -> int:
        found = await conn.execute(_RUNS_IN_PERIOD, {"ws": workspace_id, "period": period})
        return int(found.scalar_one_or_none() or 0)


def artifact_quota_exceeded(tier: str, used: int, limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"the {tier} tier stores at most {limit} artifact bytes; {used} are in use",
        quota="artifact_bytes",
        current=used,
        limit=limit,
        period=None,
    )
