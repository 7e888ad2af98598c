"""``/health``, ``/metrics``, ``/v1/fleet-health``, ``/v1/status``, and the analytics:
``/v1/observability/outcomes``, ``/v1/observability/slo`` and ``/v1/what-if`` (DESIGN §3, §12)."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from runyard import __version__
from runyard.http.deps import (
    AnalyticsServiceDep,
    CallerDep,
    MetricsReaderDep,
    ReaderDep,
    ServicesDep,
)
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.observability.analytics import MAX_DAYS
from runyard.observability.schemas import OutcomePage, Slo, WhatIf, WhatIfRequest
from runyard.runs import repo as runs_repo

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str
    version: str
    runner_mode: str
    database: str
    broker: str
    blobs: str


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness and dependencies (503 names the failing one)",
)
async def health(services: ServicesDep) -> Response:
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "runner_mode": "embedded" if services.settings.worker_enabled else "external",
        **await services.operations.dependencies(),
    }
    failing = [name for name in ("database", "broker", "blobs") if body[name] != "ok"]
    if failing:
        body["status"] = "unavailable"
        body["failing"] = failing
        return json_response(body, 503)
    return json_response(body)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **problem_responses(401)},
)
async def metrics(services: ServicesDep, _: MetricsReaderDep) -> Response:
    async with services.db.read() as conn:
        services.metrics.set_run_counts(await runs_repo.count_by_status(conn))
    return Response(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


class FleetHealth(BaseModel):
    status: str
    components: dict[str, str]
    runners: list[dict[str, Any]]


class Status(BaseModel):
    status: str
    queued: int
    running: int
    blocked: int
    last_deploy: dict[str, str] | None


@router.get(
    "/v1/fleet-health",
    response_model=FleetHealth,
    summary="Server components and this workspace's runners, each ok/degraded/down",
)
async def fleet_health(caller: CallerDep, services: ServicesDep) -> Response:
    return json_response(await services.operations.fleet_health(caller))


@router.get(
    "/v1/status",
    response_model=Status,
    summary="Operational status, queue depth, running runs and the last deploy",
)
async def status(caller: CallerDep, services: ServicesDep) -> Response:
    return json_response(await services.operations.status(caller))


@router.get(
    "/v1/observability/outcomes",
    response_model=OutcomePage,
    tags=["observability"],
    summary="Finished runs, the most recently completed first (paged)",
    responses=problem_responses(400),
)
async def outcomes(
    caller: CallerDep,
    analytics: AnalyticsServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    pipeline: str | None = Query(None, max_length=200, description="Pipeline name."),
    since: datetime | None = Query(None, description="Completed at or after (RFC 3339)."),
) -> Response:
    page = await analytics.outcomes(
        caller, limit=limit, cursor=cursor, pipeline=pipeline, since=since
    )
    return json_response(page)


@router.get(
    "/v1/observability/slo",
    response_model=Slo,
    tags=["observability"],
    summary="Success rate, durations and queue wait of the runs created in the last days",
    responses=problem_responses(400),
)
async def slo(
    caller: CallerDep,
    analytics: AnalyticsServiceDep,
    days: int = Query(7, ge=1, le=MAX_DAYS, description="The window: runs created since."),
    pipeline: str | None = Query(None, max_length=200, description="Pipeline name."),
    objective: float | None = Query(
        None, gt=0, lt=1, description="Target success rate (0-1): adds the error budget left."
    ),
) -> Response:
    return json_response(
        await analytics.slo(caller, days=days, pipeline=pipeline, objective=objective)
    )


@router.post(
    "/v1/what-if",
    response_model=WhatIf,
    tags=["observability"],
    summary="Estimate a run of a pipeline from its history: duration, success, cost, risk",
    responses=problem_responses(400, 404),
)
async def what_if(
    body: WhatIfRequest, caller: ReaderDep, analytics: AnalyticsServiceDep
) -> Response:
    return json_response(await analytics.what_if(caller, body.pipeline))
