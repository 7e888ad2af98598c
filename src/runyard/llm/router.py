"""LLM providers and models (DESIGN §9, §15): admins change them, any caller reads them."""

from fastapi import APIRouter, Query
from starlette.responses import Response

from runyard.http.deps import AdminDep, CallerDep, LlmServiceDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response
from runyard.llm.schemas import (
    ModelCreate,
    ModelCreateWithProvider,
    ModelList,
    ModelOut,
    ModelUpdate,
    ProviderCreate,
    ProviderList,
    ProviderOut,
    ProviderUpdate,
)

router = APIRouter(tags=["llm"])
PROVIDERS = "/v1/llm-providers"
MODELS = "/v1/llm-models"


@router.post(
    PROVIDERS,
    status_code=201,
    response_model=ProviderOut,
    summary="Register an LLM provider (its API key is stored encrypted, never shown)",
    responses=problem_responses(400, 401, 403, 409),
)
async def create_provider(body: ProviderCreate, caller: AdminDep, llm: LlmServiceDep) -> Response:
    return json_response(await llm.create_provider(caller, body), 201)


@router.get(
    PROVIDERS,
    response_model=ProviderList,
    summary="This workspace's LLM providers, newest first",
    responses=problem_responses(400, 401, 403),
)
async def list_providers(
    caller: CallerDep,
    llm: LlmServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> Response:
    return json_response(await llm.list_providers(caller, limit=limit, cursor=cursor))


@router.get(
    PROVIDERS + "/{provider_id}",
    response_model=ProviderOut,
    summary="An LLM provider",
    responses=problem_responses(401, 403, 404),
)
async def get_provider(provider_id: str, caller: CallerDep, llm: LlmServiceDep) -> Response:
    return json_response(await llm.get_provider(caller, provider_id))


@router.patch(
    PROVIDERS + "/{provider_id}",
    response_model=ProviderOut,
    summary="Change an LLM provider; `api_key` sets the key, `api_key: null` clears it",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def update_provider(
    provider_id: str, body: ProviderUpdate, caller: AdminDep, llm: LlmServiceDep
) -> Response:
    return json_response(await llm.update_provider(caller, provider_id, body))


@router.delete(
    PROVIDERS + "/{provider_id}",
    status_code=204,
    summary="Delete an LLM provider and its models",
    responses=problem_responses(401, 403, 404),
)
async def delete_provider(provider_id: str, caller: AdminDep, llm: LlmServiceDep) -> Response:
    await llm.delete_provider(caller, provider_id)
    return Response(status_code=204)


@router.post(
    PROVIDERS + "/{provider_id}/models",
    status_code=201,
    response_model=ModelOut,
    summary="Add a model served by this provider",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def create_provider_model(
    provider_id: str, body: ModelCreate, caller: AdminDep, llm: LlmServiceDep
) -> Response:
    return json_response(await llm.create_model(caller, provider_id, body), 201)


@router.get(
    PROVIDERS + "/{provider_id}/models",
    response_model=ModelList,
    summary="The models of an LLM provider, newest first",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_provider_models(
    provider_id: str,
    caller: CallerDep,
    llm: LlmServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> Response:
    page = await llm.list_models(caller, limit=limit, cursor=cursor, provider_id=provider_id)
    return json_response(page)


@router.post(
    MODELS,
    status_code=201,
    response_model=ModelOut,
    summary="Add a model of the provider `provider_id`",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def create_model(
    body: ModelCreateWithProvider, caller: AdminDep, llm: LlmServiceDep
) -> Response:
    return json_response(await llm.create_model(caller, body.provider_id, body), 201)


@router.get(
    MODELS,
    response_model=ModelList,
    summary="This workspace's LLM models (of one provider with `provider_id`), newest first",
    responses=problem_responses(400, 401, 403, 404),
)
async def list_models(
    caller: CallerDep,
    llm: LlmServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    provider_id: str | None = None,
) -> Response:
    page = await llm.list_models(caller, limit=limit, cursor=cursor, provider_id=provider_id)
    return json_response(page)


@router.get(
    MODELS + "/{model_id}",
    response_model=ModelOut,
    summary="An LLM model",
    responses=problem_responses(401, 403, 404),
)
async def get_model(model_id: str, caller: CallerDep, llm: LlmServiceDep) -> Response:
    return json_response(await llm.get_model(caller, model_id))


@router.patch(
    MODELS + "/{model_id}",
    response_model=ModelOut,
    summary="Change an LLM model; `is_default: true` makes it the workspace's default",
    responses=problem_responses(400, 401, 403, 404, 409),
)
async def update_model(
    model_id: str, body: ModelUpdate, caller: AdminDep, llm: LlmServiceDep
) -> Response:
    return json_response(await llm.update_model(caller, model_id, body))


@router.delete(
    MODELS + "/{model_id}",
    status_code=204,
    summary="Delete an LLM model",
    responses=problem_responses(401, 403, 404),
)
async def delete_model(model_id: str, caller: AdminDep, llm: LlmServiceDep) -> Response:
    await llm.delete_model(caller, model_id)
    return Response(status_code=204)
