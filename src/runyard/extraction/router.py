"""Prompts and their versions, model configs, documents and evaluations (DESIGN §10, §15)."""

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from runyard.events.router import wants_event_stream
from runyard.extraction.documents import DocumentService
from runyard.extraction.evaluations import EvaluationService
from runyard.extraction.schemas import (
    DocumentCreate,
    DocumentList,
    DocumentOut,
    DocumentUpdate,
    EvaluationCreate,
    EvaluationList,
    EvaluationOut,
    ModelConfigCreate,
    ModelConfigList,
    ModelConfigOut,
    PromptCreate,
    PromptList,
    PromptOut,
    PromptUpdate,
    PromptVersionCreate,
    PromptVersionList,
    PromptVersionOut,
)
from runyard.extraction.service import ExtractionService
from runyard.http.body import (
    MULTIPART_SLACK,
    check_declared_length,
    form_file,
    read_file,
    read_limited,
    too_large,
)
from runyard.http.deps import CallerDep, ServicesDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.http.sse import EventSourceResponse
from runyard.problems import InvalidInput

router = APIRouter(tags=["evaluation"])
PROMPTS = "/v1/prompts"
CONFIGS = "/v1/model-configs"
DOCUMENTS = "/v1/documents"
EVALUATIONS = "/v1/evaluations"
Limit = Query(50, ge=1, le=MAX_LIMIT)
TOO_LARGE = ("the document", "RUNYARD_DOCUMENT_MAX_BYTES")


async def _extraction(services: ServicesDep) -> ExtractionService:
    return services.extraction


async def _documents(services: ServicesDep) -> DocumentService:
    return services.documents


async def _evaluations(services: ServicesDep) -> EvaluationService:
    return services.evaluations


Extraction = Depends(_extraction)
Documents = Depends(_documents)
Evaluations = Depends(_evaluations)


# -- prompts ------------------------------------------------------------------------------


@router.post(
    PROMPTS,
    status_code=201,
    response_model=PromptOut,
    summary="Create a prompt (with `template`, also its version 1)",
    responses=problem_responses(400, 401, 403, 409),
)
async def create_prompt(
    body: PromptCreate, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    return json_response(await service.create_prompt(caller, body), 201)


@router.get(
    PROMPTS,
    response_model=PromptList,
    summary="This workspace's prompts, newest first",
    responses=problem_responses(400, 401, 403),
)
async def list_prompts(
    caller: CallerDep,
    service: ExtractionService = Extraction,
    limit: int = Limit,
    cursor: str | None = None,
) -> Response:
    return json_response(await service.list_prompts(caller, limit=limit, cursor=cursor))


@router.get(
    PROMPTS + "/{prompt_id}",
    response_model=PromptOut,
    summary="A prompt",
    responses=problem_responses(401, 403, 404),
)
async def get_prompt(
    prompt_id: str, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    return json_response(await service.get_prompt(caller, prompt_id))


@router.patch(
    PROMPTS + "/{prompt_id}",
    response_model=PromptOut,
    summary="Rename or describe a prompt (its versions never change)",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def update_prompt(
    prompt_id: str, body: PromptUpdate, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    return json_response(await service.update_prompt(caller, prompt_id, body))


@router.delete(
    PROMPTS + "/{prompt_id}",
    status_code=204,
    summary="Delete a prompt and its versions (runs made with them keep their records)",
    responses=problem_responses(401, 403, 404),
)
async def delete_prompt(
    prompt_id: str, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    await service.delete_prompt(caller, prompt_id)
    return Response(status_code=204)


@router.post(
    PROMPTS + "/{prompt_id}/versions",
    status_code=201,
    response_model=PromptVersionOut,
    summary="Add a version to a prompt (versions are immutable, numbered from 1)",
    responses=problem_responses(400, 401, 403, 404),
)
async def create_version(
    prompt_id: str,
    body: PromptVersionCreate,
    caller: CallerDep,
    service: ExtractionService = Extraction,
) -> Response:
    return json_response(await service.create_version(caller, prompt_id, body), 201)


@router.get(
    PROMPTS + "/{prompt_id}/versions",
    response_model=PromptVersionList,
    summary="A prompt's versions, newest first",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_versions(
    prompt_id: str,
    caller: CallerDep,
    service: ExtractionService = Extraction,
    limit: int = Limit,
    cursor: str | None = None,
) -> Response:
    return json_response(await service.list_versions(caller, prompt_id, limit=limit, cursor=cursor))


@router.get(
    PROMPTS + "/{prompt_id}/versions/{version}",
    response_model=PromptVersionOut,
    summary="One version of a prompt",
    responses=problem_responses(400, 401, 403, 404),
)
async def get_version(
    prompt_id: str,
    caller: CallerDep,
    version: int = Path(ge=1, le=2**31 - 1),
    service: ExtractionService = Extraction,
) -> Response:
    return json_response(await service.get_version(caller, prompt_id, version))


# -- model configs ------------------------------------------------------------------------


@router.post(
    CONFIGS,
    status_code=201,
    response_model=ModelConfigOut,
    summary="Create a model config: a model with its temperature, max tokens and JSON format",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def create_config(
    body: ModelConfigCreate, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    return json_response(await service.create_config(caller, body), 201)


@router.get(
    CONFIGS,
    response_model=ModelConfigList,
    summary="This workspace's model configs, newest first",
    responses=problem_responses(400, 401, 403),
)
async def list_configs(
    caller: CallerDep,
    service: ExtractionService = Extraction,
    limit: int = Limit,
    cursor: str | None = None,
) -> Response:
    return json_response(await service.list_configs(caller, limit=limit, cursor=cursor))


@router.get(
    CONFIGS + "/{config_id}",
    response_model=ModelConfigOut,
    summary="A model config",
    responses=problem_responses(401, 403, 404),
)
async def get_config(
    config_id: str, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    return json_response(await service.get_config(caller, config_id))


@router.delete(
    CONFIGS + "/{config_id}",
    status_code=204,
    summary="Delete a model config",
    responses=problem_responses(401, 403, 404),
)
async def delete_config(
    config_id: str, caller: CallerDep, service: ExtractionService = Extraction
) -> Response:
    await service.delete_config(caller, config_id)
    return Response(status_code=204)


# -- documents ----------------------------------------------------------------------------


@router.post(
    DOCUMENTS,
    status_code=201,
    response_model=DocumentOut,
    summary="Add a document: JSON `{name, content, content_type?, ground_truth?}`, or a "
    "multipart `file` (text, Markdown, JSON or PDF) with `ground_truth` as a JSON string",
    responses=problem_responses(400, 401, 403, 413),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/DocumentCreate"},
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "name": {"type": "string"},
                            "ground_truth": {"type": "string", "description": "JSON object"},
                        },
                    }
                },
            }
        }
    },
)
async def create_document(
    request: Request, caller: CallerDep, service: DocumentService = Documents
) -> Response:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return json_response(await _upload(request, caller, service), 201)
    raw = await read_limited(request, service.max_bytes + MULTIPART_SLACK, *TOO_LARGE)
    try:
        body = DocumentCreate.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(
            "the document is not {name, content, content_type?, ground_truth?}",
            errors=[
                {"loc": ["body", *error["loc"]], "msg": error["msg"]} for error in exc.errors()
            ],
        ) from exc
    if len(body.content.encode()) > service.max_bytes:
        raise too_large(TOO_LARGE[0], service.max_bytes, TOO_LARGE[1])
    return json_response(await service.create_document(caller, body), 201)


async def _upload(request: Request, caller: CallerDep, service: DocumentService) -> Any:
    check_declared_length(request, service.max_bytes + MULTIPART_SLACK, *TOO_LARGE)
    async with request.form(max_files=1, max_fields=10) as form:  # closes the spooled file
        upload = form_file(form, "document")
        data = await read_file(upload, service.max_bytes, *TOO_LARGE)
        return await service.upload_document(
            caller,
            data,
            filename=upload.filename,
            declared_type=upload.content_type,
            name=str(form["name"]) if form.get("name") else None,
            ground_truth=_ground_truth(form.get("ground_truth")),
        )


def _ground_truth(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    try:
        parsed = orjson.loads(value if isinstance(value, str) else b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"ground_truth is not JSON: {exc}",
            errors=[{"loc": ["body", "ground_truth"], "msg": "not JSON"}],
        ) from exc
    if not isinstance(parsed, dict):
        raise InvalidInput(
            "ground_truth is a JSON object",
            errors=[{"loc": ["body", "ground_truth"], "msg": "not a JSON object"}],
        )
    return parsed


@router.get(
    DOCUMENTS,
    response_model=DocumentList,
    summary="This workspace's documents, newest first (without their text)",
    responses=problem_responses(400, 401, 403),
)
async def list_documents(
    caller: CallerDep,
    service: DocumentService = Documents,
    limit: int = Limit,
    cursor: str | None = None,
) -> Response:
    return json_response(await service.list_documents(caller, limit=limit, cursor=cursor))


@router.get(
    DOCUMENTS + "/{document_id}",
    response_model=DocumentOut,
    summary="A document, with its text and ground truth",
    responses=problem_responses(401, 403, 404),
)
async def get_document(
    document_id: str, caller: CallerDep, service: DocumentService = Documents
) -> Response:
    return json_response(await service.get_document(caller, document_id))


@router.patch(
    DOCUMENTS + "/{document_id}",
    response_model=DocumentOut,
    summary="Rename a document or set its ground truth (`ground_truth: null` removes it)",
    responses=problem_responses(400, 401, 403, 404),
)
async def update_document(
    document_id: str,
    body: DocumentUpdate,
    caller: CallerDep,
    service: DocumentService = Documents,
) -> Response:
    return json_response(await service.update_document(caller, document_id, body))


@router.delete(
    DOCUMENTS + "/{document_id}",
    status_code=204,
    summary="Delete a document",
    responses=problem_responses(401, 403, 404),
)
async def delete_document(
    document_id: str, caller: CallerDep, service: DocumentService = Documents
) -> Response:
    await service.delete_document(caller, document_id)
    return Response(status_code=204)


# -- evaluations --------------------------------------------------------------------------


@router.post(
    EVALUATIONS,
    status_code=201,
    response_model=EvaluationOut,
    summary="Evaluate prompt versions x configs over documents: one extract run each",
    responses=problem_responses(400, 401, 402, 403, 404),
)
async def create_evaluation(
    body: EvaluationCreate, caller: CallerDep, service: EvaluationService = Evaluations
) -> Response:
    return json_response(await service.create(caller, body), 201)


@router.get(
    EVALUATIONS,
    response_model=EvaluationList,
    summary="This workspace's evaluations, newest first",
    responses=problem_responses(400, 401, 403),
)
async def list_evaluations(
    caller: CallerDep,
    service: EvaluationService = Evaluations,
    limit: int = Limit,
    cursor: str | None = None,
) -> Response:
    return json_response(await service.list(caller, limit=limit, cursor=cursor))


@router.get(
    EVALUATIONS + "/{evaluation_id}",
    response_model=EvaluationOut,
    summary="An evaluation's results per prompt version x config, live as its runs finish "
    "(SSE with `stream=true` or `Accept: text/event-stream`)",
    responses={
        200: {"content": {"application/json": {}, "text/event-stream": {}}},
        **problem_responses(401, 403, 404),
    },
)
async def get_evaluation(
    evaluation_id: str,
    request: Request,
    caller: CallerDep,
    service: EvaluationService = Evaluations,
    stream: bool = False,
) -> Response:
    if stream or wants_event_stream(request):
        return EventSourceResponse(await service.stream(caller, evaluation_id))
    return json_response(await service.get(caller, evaluation_id))
