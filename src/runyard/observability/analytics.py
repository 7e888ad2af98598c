"""SLOs, outcomes and what-if estimates over a workspace's runs (DESIGN §12, §15).

The numbers come out of the database aggregated (:mod:`runyard.observability.repo`); this
module turns them into the contract's shapes and derives what is arithmetic on them: the
success rate, the error budget and the risk level.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from runyard.clock import isoformat, ms_between, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.http.pagination import decode_cursor, page_of
from runyard.observability import repo
from runyard.pipelines.service import PipelineService

MAX_DAYS = 90
#: how far back what-if looks for a pipeline's history
HISTORY_DAYS = 90
#: risk is high below this success rate, medium below the next, low from there
HIGH_RISK_BELOW = 0.8
MEDIUM_RISK_BELOW = 0.95


def risk_level(success_rate: float | None) -> str:
    if success_rate is None:
        return "unknown"
    if success_rate < HIGH_RISK_BELOW:
        return "high"
    if success_rate < MEDIUM_RISK_BELOW:
        return "medium"
    return "low"


def error_budget_remaining(success_rate: float | None, objective: float) -> float | None:
    """The share of the error budget (``1 - objective``) not yet spent; negative once
    overspent."""
    if success_rate is None:
        return None
    return 1 - (1 - success_rate) / (1 - objective)


def _mean(value: Decimal | float | None) -> float | None:
    """A mean to the microsecond (PostgreSQL's ``avg`` is numeric, SQLite's a float)."""
    return None if value is None else round(float(value), 3)


def _number(value: Decimal | float | int | None) -> float | None:
    return None if value is None else float(value)


def _int(value: Decimal | float | int | None) -> int | None:
    return None if value is None else int(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class AnalyticsService:
    def __init__(self, db: Database, pipelines: PipelineService) -> None:
        self.db = db
        self.pipelines = pipelines

    async def outcomes(
        self,
        caller: Caller,
        *,
        limit: int,
        cursor: str | None,
        pipeline: str | None = None,
        since: datetime | None = None,
    ) -> dict[str, Any]:
        """Finished runs, the most recently completed first (``since``: inclusive)."""
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.outcomes_page(
                conn,
                caller.workspace_id,
                pipeline=pipeline,
                since=_utc(since) if since is not None else None,
                after=after,
                limit=limit + 1,
            )
        rows, next_cursor, has_more = page_of(rows, limit, key="completed_at")
        return {
            "workspace_id": caller.workspace_id,
            "outcomes": [
                {
                    "run_id": row["id"],
                    "pipeline": row["pipeline"],
                    "status": row["status"],
                    "duration_ms": ms_between(row["started_at"], row["completed_at"]),
                    "failed_step": row["failed_step"],
                    "completed_at": isoformat(row["completed_at"]),
                }
                for row in rows
            ],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def slo(
        self,
        caller: Caller,
        *,
        days: int,
        pipeline: str | None = None,
        objective: float | None = None,
    ) -> dict[str, Any]:
        """Runs created in the last ``days`` days: outcomes, success rate, durations and queue
        wait (DESIGN §15), and the error budget left against ``objective`` when given."""
        since = utcnow() - timedelta(days=days)
        async with self.db.read(off_loop=True) as conn:
            counts = await repo.slo_counts(
                conn, caller.workspace_id, since=since, pipeline=pipeline
            )
            durations = await repo.slo_durations(
                conn, caller.workspace_id, since=since, pipeline=pipeline
            )
        success, failure, cancelled = (
            counts["success_count"],
            counts["failure_count"],
            counts["cancelled_count"],
        )
        finished = success + failure + cancelled
        success_rate = success / finished if finished else None
        body: dict[str, Any] = {
            "workspace_id": caller.workspace_id,
            "days": days,
            "pipeline": pipeline,
            "total_runs": counts["total_runs"],
            "success_count": success,
            "failure_count": failure,
            "cancelled_count": cancelled,
            "blocked_count": counts["blocked_count"],
            "success_rate": success_rate,
            "avg_duration_ms": _mean(durations["avg"]),
            "p50_duration_ms": _int(durations["p50"]),
            "p95_duration_ms": _int(durations["p95"]),
            "avg_queue_wait_ms": _mean(counts["avg_queue_wait_ms"]),
        }
        if objective is not None:
            body["objective"] = objective
            body["error_budget_remaining"] = error_budget_remaining(success_rate, objective)
        return body

    async def what_if(self, caller: Caller, pipeline_ref: str) -> dict[str, Any]:
        """An estimate for a new run of a pipeline from its finished runs of the last 90 days
        (404 ``pipeline_not_found`` for a pipeline this workspace does not have)."""
        pipeline = (await self.pipelines.get(caller, pipeline_ref))["name"]
        since = utcnow() - timedelta(days=HISTORY_DAYS)
        async with self.db.read(off_loop=True) as conn:
            found = await repo.history(conn, caller.workspace_id, pipeline, since=since)
        size = found["sample_size"]
        success_rate = found["success_count"] / size if size else None
        durations, costs = found["durations"], found["costs"]
        level = risk_level(success_rate)
        return {
            "pipeline": pipeline,
            "sample_size": size,
            "duration_ms": {"p50": _int(durations["p50"]), "p90": _int(durations["p90"])},
            "success_rate": success_rate,
            "cost_usd": {"p50": _number(costs["p50"]), "p90": _number(costs["p90"])},
            "risk_level": level,
            "message": _message(pipeline, size, found["success_count"], costs["count"], level),
        }


def _message(pipeline: str, size: int, successes: int, with_cost: int, level: str) -> str:
    if not size:
        return (
            f"no history: pipeline {pipeline} has no finished runs in the last {HISTORY_DAYS} "
            "days, so there is nothing to estimate from"
        )
    runs = "run" if size == 1 else "runs"
    text = (
        f"estimated from {size} finished {runs} of {pipeline} in the last {HISTORY_DAYS} days: "
        f"{successes} completed; risk {level}"
    )
    if not with_cost:
        text += "; none reported usage.cost_usd"
    elif with_cost < size:
        text += f"; cost from the {with_cost} that reported usage.cost_usd"
    return text
