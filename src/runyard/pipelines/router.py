"""HTTP for pipelines: ``/v1/pipelines``."""

from fastapi import APIRouter, Query
from starlette.responses import Response

from runyard.http.deps import CallerDep, PipelineServiceDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.pipelines.schemas import PipelineCreate, PipelineList, PipelineOut, PipelineUpdate

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


@router.post(
    "",
    status_code=201,
    response_model=PipelineOut,
    summary="Create a pipeline",
    responses=problem_responses(400, 409),
)
async def create_pipeline(
    body: PipelineCreate, caller: CallerDep, pipelines: PipelineServiceDep
) -> Response:
    pipeline = await pipelines.create(caller, body)
    return json_response(pipeline, 201, headers={"Location": f"/v1/pipelines/{pipeline['id']}"})


@router.get(
    "", response_model=PipelineList, summary="List pipelines", responses=problem_responses(400)
)
async def list_pipelines(
    caller: CallerDep,
    pipelines: PipelineServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> Response:
    return json_response(await pipelines.list_page(caller, limit=limit, cursor=cursor))


@router.get(
    "/{pipeline_ref}",
    response_model=PipelineOut,
    summary="Get a pipeline (by id or name)",
    responses=problem_responses(404),
)
async def get_pipeline(
    pipeline_ref: str, caller: CallerDep, pipelines: PipelineServiceDep
) -> Response:
    return json_response(await pipelines.get(caller, pipeline_ref))


@router.patch(
    "/{pipeline_ref}",
    response_model=PipelineOut,
    summary="Change a pipeline (creates a new version)",
    responses=problem_responses(400, 404),
)
async def update_pipeline(
    pipeline_ref: str, body: PipelineUpdate, caller: CallerDep, pipelines: PipelineServiceDep
) -> Response:
    return json_response(await pipelines.update(caller, pipeline_ref, body))


@router.delete(
    "/{pipeline_ref}",
    status_code=204,
    summary="Delete a pipeline",
    responses=problem_responses(404),
)
async def delete_pipeline(
    pipeline_ref: str, caller: CallerDep, pipelines: PipelineServiceDep
) -> Response:
    await pipelines.delete(caller, pipeline_ref)
    return Response(status_code=204)
