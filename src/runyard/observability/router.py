"""``/health``, ``/metrics``, ``/v1/fleet-health`` and ``/v1/status`` (DESIGN §3, §12)."""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from runyard import __version__
from runyard.http.deps import CallerDep, MetricsReaderDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.responses import json_response
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
