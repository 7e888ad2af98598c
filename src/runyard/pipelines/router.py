"""HTTP for pipelines: ``/v1/pipelines``."""

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from runyard.http.body import (
    MULTIPART_SLACK,
    check_declared_length,
    form_file,
    read_file,
    read_limited,
)
from runyard.http.deps import CallerDep, PipelineServiceDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.pipelines.bundles import BundleService
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


class Bundle(BaseModel):
    object: Literal["bundle"] = "bundle"
    pipeline_id: str
    sha256: str
    size_bytes: int
    unpacked_bytes: int
    format: Literal["zip", "tar", "tar.gz"]
    files: list[str]
    uploaded_by: str
    uploaded_at: str


TOO_LARGE = ("the bundle", "RUNYARD_BUNDLE_MAX_BYTES")


async def _bundles(services: ServicesDep) -> BundleService:
    return services.bundles


@router.post(
    "/{pipeline_ref}/bundle",
    status_code=201,
    response_model=Bundle,
    summary="Upload the pipeline's bundle of step code: a zip or (gzipped) tar as the body, "
    "or a multipart `file`",
    responses=problem_responses(400, 401, 403, 404, 409, 413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                # application/zip, application/gzip and application/x-tar are read the same
                # way: the format is known by the bytes
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    },
)
async def upload_bundle(
    pipeline_ref: str,
    request: Request,
    caller: CallerDep,
    bundles: BundleService = Depends(_bundles),
) -> Response:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        check_declared_length(request, bundles.max_bytes + MULTIPART_SLACK, *TOO_LARGE)
        async with request.form(max_files=1, max_fields=2) as form:
            data = await read_file(form_file(form, "bundle"), bundles.max_bytes, *TOO_LARGE)
    else:
        data = await read_limited(request, bundles.max_bytes, *TOO_LARGE)
    return json_response(await bundles.upload(caller, pipeline_ref, data), 201)


@router.get(
    "/{pipeline_ref}/bundle",
    response_model=Bundle,
    summary="The pipeline's current bundle: its hash, size and files",
    responses=problem_responses(401, 403, 404),
)
async def get_bundle(
    pipeline_ref: str, caller: CallerDep, bundles: BundleService = Depends(_bundles)
) -> Response:
    return json_response(await bundles.get(caller, pipeline_ref))
