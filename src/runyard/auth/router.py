"""API keys (DESIGN §4, §15): admins create, list and revoke their workspace's keys."""

from fastapi import APIRouter
from starlette.responses import Response

from runyard.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from runyard.http.deps import AdminDep, ApiKeyServiceDep
from runyard.http.errors import problem_responses
from runyard.http.responses import json_response
from runyard.problems import InvalidInput

router = APIRouter(prefix="/v1/api-keys", tags=["auth"])


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Create an API key (its secret is in this answer only)",
    responses=problem_responses(400, 401, 403),
)
async def create_key(body: ApiKeyCreate, caller: AdminDep, keys: ApiKeyServiceDep) -> Response:
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise InvalidInput(
            "expires_at must carry a timezone",
            errors=[{"loc": ["body", "expires_at"], "msg": "timezone required"}],
        )
    created = await keys.create(
        caller,
        name=body.name,
        role=body.role,
        expires_at=body.expires_at,
        can_impersonate=body.can_impersonate,
    )
    return json_response(created, 201)


@router.get(
    "",
    response_model=ApiKeyList,
    summary="This workspace's API keys (without secrets)",
    responses=problem_responses(401, 403),
)
async def list_keys(caller: AdminDep, keys: ApiKeyServiceDep) -> Response:
    return json_response({"data": await keys.list(caller), "next_cursor": None, "has_more": False})


@router.delete(
    "/{key_id}",
    status_code=204,
    summary="Revoke an API key (it answers 401 from now on)",
    responses=problem_responses(401, 403, 404),
)
async def revoke_key(key_id: str, caller: AdminDep, keys: ApiKeyServiceDep) -> Response:
    await keys.revoke(caller, key_id)
    return Response(status_code=204)
