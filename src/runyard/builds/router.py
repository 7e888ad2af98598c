"""HTTP for builds: ``POST/GET /v1/pipelines/{id}/builds``, ``/v1/builds/{id}`` and its
events (pages, NDJSON, SSE like a run's)."""

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from runyard.builds.resources import TERMINAL, BuildNotFound
from runyard.builds.service import BuildService
from runyard.context import Caller
from runyard.events.router import STREAM_RESPONSES, resume_point, stored_events, wants_event_stream
from runyard.events.schemas import EventPage
from runyard.events.streaming import StreamReader
from runyard.http.deps import CallerDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.http.sse import EventSourceResponse

pipeline_builds = APIRouter(prefix="/v1/pipelines", tags=["builds"])
router = APIRouter(prefix="/v1/builds", tags=["builds"])


class BuildCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="Build a fresh environment even if one is ready.")
    stream: bool = Field(False, description="Answer with the build's SSE stream.")
    wait: bool = Field(
        True,
        description="When a build of the same environment is in progress: wait for it "
        "(true), or refuse with 409 `build_in_progress` (false).",
    )


class BuildOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["build"] = "build"
    pipeline_id: str
    pipeline_version: int
    environment_key: str
    status: Literal["queued", "building", "ready", "failed", "cancelled"]
    reused: bool
    force: bool
    run_id: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    duration_ms: int | None
    error: dict[str, Any] | None


class BuildList(BaseModel):
    data: list[BuildOut]
    next_cursor: str | None
    has_more: bool


class BuildCancelled(BaseModel):
    result: Literal["cancelled", "already_finished"]
    build: BuildOut


async def _builds(services: ServicesDep) -> BuildService:
    return services.builds


def _sse(
    services: Any, builds: BuildService, caller: Caller, build_id: str, after: int
) -> Response:
    async def status() -> str | None:
        try:
            current: str = (await builds.get(caller, build_id))["status"]
        except BuildNotFound:
            return None
        return current

    reader = StreamReader(
        events=services.events,
        broker=services.broker,
        settings=services.settings,
        metrics=services.metrics,
        stream_id=build_id,
        after=after,
        terminal=TERMINAL,
        run_status=status,
    )
    return EventSourceResponse(reader.frames())


@pipeline_builds.post(
    "/{pipeline_ref}/builds",
    status_code=201,
    response_model=BuildOut,
    summary="Build the pipeline's environment (ready at once when an identical one exists)",
    responses={
        **problem_responses(400, 401, 403, 404, 409),
        201: {"content": {"text/event-stream": {}}},
    },
)
async def create_build(
    pipeline_ref: str,
    request: Request,
    caller: CallerDep,
    services: ServicesDep,
    body: BuildCreate | None = None,
    builds: BuildService = Depends(_builds),
) -> Response:
    body = body or BuildCreate()
    build = await builds.start(caller, pipeline_ref, force=body.force, wait=body.wait)
    if body.stream or wants_event_stream(request):
        return _sse(services, builds, caller, build["id"], 0)
    return json_response(build, 201, headers={"Location": f"/v1/builds/{build['id']}"})


@pipeline_builds.get(
    "/{pipeline_ref}/builds",
    response_model=BuildList,
    summary="The pipeline's builds, newest first",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_builds(
    pipeline_ref: str,
    caller: CallerDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    builds: BuildService = Depends(_builds),
) -> Response:
    return json_response(await builds.list_page(caller, pipeline_ref, limit=limit, cursor=cursor))


@router.get(
    "/{build_id}",
    response_model=BuildOut,
    summary="A build",
    responses=problem_responses(401, 403, 404),
)
async def get_build(
    build_id: str, caller: CallerDep, builds: BuildService = Depends(_builds)
) -> Response:
    return json_response(await builds.get(caller, build_id))


@router.post(
    "/{build_id}/cancel",
    response_model=BuildCancelled,
    summary="Cancel a queued or running build",
    responses=problem_responses(401, 403, 404, 409),
)
async def cancel_build(
    build_id: str, caller: CallerDep, builds: BuildService = Depends(_builds)
) -> Response:
    return json_response(await builds.cancel(caller, build_id))


@router.get(
    "/{build_id}/events",
    response_model=EventPage,
    summary="A build's events: a page, NDJSON, or a live SSE stream",
    responses={**problem_responses(400, 401, 403, 404), **STREAM_RESPONSES},
)
async def build_events(
    build_id: str,
    request: Request,
    caller: CallerDep,
    services: ServicesDep,
    after_sequence: int | None = Query(None, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    type: list[str] = Query(
        default_factory=list, description="Repeat for any of them; `build.*` matches a prefix."
    ),
    stream: bool = Query(False, description="Answer with Server-Sent Events."),
    format: Literal["json", "ndjson"] = "json",
    builds: BuildService = Depends(_builds),
) -> Response:
    await builds.get(caller, build_id)
    after = resume_point(request, after_sequence)
    if stream or wants_event_stream(request):
        return _sse(services, builds, caller, build_id, after)
    return await stored_events(
        services.events, request, build_id, after=after, limit=limit, types=type, format=format
    )
