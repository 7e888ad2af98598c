"""``/health`` and ``/metrics`` (DESIGN §3, §12)."""

import asyncio
import os
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from runyard import __version__
from runyard.http.deps import ServicesDep
from runyard.http.responses import json_response
from runyard.runs import repo as runs_repo

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: str
    version: str
    runner_mode: str
    database: str
    broker: str
    blobs: str


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure means the dependency is down; name it, do not raise
        return f"down: {type(exc).__name__}"
    return "ok"


async def _blobs_writable(path: Any) -> None:
    if not os.access(path, os.W_OK):
        raise PermissionError(str(path))


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness and dependencies (503 names the failing one)",
)
async def health(services: ServicesDep) -> Response:
    database, broker, blobs = await asyncio.gather(
        _check(services.db.ping()),
        _check(services.broker.ping()),
        _check(_blobs_writable(services.settings.data_dir)),
    )
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "runner_mode": "embedded" if services.settings.worker_enabled else "external",
        "database": database,
        "broker": broker,
        "blobs": blobs,
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
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(services: ServicesDep) -> Response:
    async with services.db.read() as conn:
        services.metrics.set_run_counts(await runs_repo.count_by_status(conn))
    return Response(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
