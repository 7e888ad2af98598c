"""HTTP for artifacts: the runner's upload/registration and reading them back (§5.3, §8)."""

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response, StreamingResponse

from runyard.artifacts.service import ArtifactService
from runyard.http.body import form_file, read_limited
from runyard.http.deps import ArtifactServiceDep, CallerDep, RunnerAuth, RunnerAuthDep
from runyard.http.errors import problem_response, problem_responses, request_id_of
from runyard.http.json_text import unstorable_text
from runyard.http.responses import json_response
from runyard.problems import BadRequest, InvalidInput

runner_router = APIRouter(prefix="/v1/runner/runs", tags=["runner"])
router = APIRouter(prefix="/v1/runs", tags=["artifacts"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/json": {"schema": {"type": "object", "required": ["storage_key"]}},
        },
    }
}


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(256 * 1024):
        yield chunk


async def _upload(
    run_id: str, form: FormData, auth: RunnerAuth, artifacts: ArtifactService
) -> dict[str, Any]:
    upload = form_file(form, "upload")
    try:
        metadata = orjson.loads(str(form.get("metadata") or "{}"))
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            "metadata must be a JSON object",
            errors=[{"loc": ["body", "metadata"], "msg": "not JSON"}],
        ) from exc
    return await artifacts.upload(
        auth.caller,
        run_id,
        _chunks(upload),
        filename=upload.filename or "file",
        artifact_type=str(form.get("artifact_type") or "file"),
        path=str(form["path"]) if form.get("path") else None,
        content_type=str(form.get("content_type") or upload.content_type or "") or None,
        metadata=metadata if isinstance(metadata, dict) else {},
        lease_id=auth.lease_id,
    )


@runner_router.post(
    "/{run_id}/artifacts",
    status_code=201,
    summary="Upload an artifact (multipart `file`) or register one already stored (JSON)",
    openapi_extra=_UPLOAD_BODY,
    responses=problem_responses(400, 401, 403, 404, 409, 413),
)
async def create_artifact(
    run_id: str, request: Request, auth: RunnerAuthDep, artifacts: ArtifactServiceDep
) -> Response:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:  # closes the spooled file
            artifact = await _upload(run_id, form, auth, artifacts)
    else:
        raw = await read_limited(request, 64 * 1024)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest("the request body is not valid JSON", code="malformed_json") from exc
        if not isinstance(body, dict) or not isinstance(body.get("storage_key"), str):
            raise InvalidInput(
                "register an artifact with at least a `storage_key`",
                errors=[{"loc": ["body", "storage_key"], "msg": "Field required"}],
            )
        for field in ("path", "content_type", "artifact_type"):
            if body.get(field) is not None and not isinstance(body[field], str):
                raise InvalidInput(
                    f"`{field}` must be a string",
                    errors=[{"loc": ["body", field], "msg": "Input should be a valid string"}],
                )
        if (problem := unstorable_text(raw)) is not None:
            raise InvalidInput(problem, errors=[{"loc": ["body"], "msg": problem}])
        artifact = await artifacts.register(auth.caller, run_id, body, lease_id=auth.lease_id)
    return json_response(artifact, 201)


@router.get("/{run_id}/artifacts", summary="A run's artifacts", responses=problem_responses(404))
async def list_artifacts(run_id: str, caller: CallerDep, artifacts: ArtifactServiceDep) -> Response:
    data = await artifacts.list_for_run(caller, run_id)
    return json_response({"data": data, "next_cursor": None, "has_more": False})


@router.get(
    "/{run_id}/artifacts/{artifact_id}",
    summary="An artifact's metadata",
    responses=problem_responses(404),
)
async def get_artifact(
    run_id: str, artifact_id: str, caller: CallerDep, artifacts: ArtifactServiceDep
) -> Response:
    return json_response(await artifacts.get(caller, run_id, artifact_id=artifact_id))


@router.get(
    "/{run_id}/artifacts/{artifact_id}/content",
    summary="Download an artifact (streamed; ETag; Range)",
    responses={**problem_responses(404, 416), 200: {"content": {"application/octet-stream": {}}}},
)
async def artifact_content(
    run_id: str,
    artifact_id: str,
    request: Request,
    caller: CallerDep,
    artifacts: ArtifactServiceDep,
) -> Response:
    artifact = await artifacts.get(caller, run_id, artifact_id=artifact_id)
    return _download(artifacts, artifact, request)


@router.get(
    "/{run_id}/outputs",
    summary="Artifacts addressed by their path",
    responses=problem_responses(404),
)
async def list_outputs(run_id: str, caller: CallerDep, artifacts: ArtifactServiceDep) -> Response:
    data = await artifacts.list_for_run(caller, run_id, with_path=True)
    return json_response({"data": data, "next_cursor": None, "has_more": False})


@router.get(
    "/{run_id}/outputs/{path:path}",
    summary="The content of the output at this path",
    responses={**problem_responses(404, 416), 200: {"content": {"application/octet-stream": {}}}},
)
async def output_content(
    run_id: str, path: str, request: Request, caller: CallerDep, artifacts: ArtifactServiceDep
) -> Response:
    artifact = await artifacts.get(caller, run_id, path=path)
    return _download(artifacts, artifact, request)


def _download(artifacts: ArtifactService, artifact: dict[str, Any], request: Request) -> Response:
    size = artifact["size_bytes"]
    etag = f'"{artifact["sha256"] or artifact["id"]}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    start, end, status = 0, size - 1, 200
    requested = _parse_range(request.headers.get("range"), size)
    if isinstance(requested, str):
        return _unsatisfiable(request, size)
    if requested is not None:  # a single satisfiable range; anything else is ignored (RFC 9110)
        start, end = requested
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    return StreamingResponse(
        artifacts.content(artifact, start, end) if size else _empty(),
        status_code=status,
        media_type=artifact["content_type"],
        headers=headers,
    )


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` range; None when there is none or it is
    not one we serve (then the whole content is sent), "unsatisfiable" past the end."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:  # a suffix: the last N bytes
        if int(last) == 0:
            return "unsatisfiable"
        start, end = max(0, size - int(last)), size - 1
    if start >= size:
        return "unsatisfiable"
    return start, end


def _unsatisfiable(request: Request, size: int) -> Response:
    return problem_response(
        request_id_of(request),
        status=416,
        code="range_not_satisfiable",
        title="Range not satisfiable",
        detail=f"the content is {size} bytes long",
        headers={"Content-Range": f"bytes */{size}"},
    )
