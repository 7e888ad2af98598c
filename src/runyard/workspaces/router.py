"""Workspaces, tiers and usage (DESIGN §11, §15)."""

from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import Response

from runyard.context import Caller
from runyard.http.deps import CallerDep, ServicesDep, TierChangerDep
from runyard.http.errors import problem_responses
from runyard.http.responses import json_response
from runyard.workspaces.schemas import (
    TierChange,
    UsageOut,
    WorkspaceCreate,
    WorkspaceCreated,
    WorkspaceOut,
)

router = APIRouter(tags=["workspaces"])


@router.post(
    "/v1/workspaces",
    status_code=201,
    response_model=WorkspaceCreated,
    summary="Create a workspace (open mode, or an admin key of the default workspace)",
    responses=problem_responses(400, 401, 403),
)
async def create_workspace(
    body: WorkspaceCreate, caller: CallerDep, services: ServicesDep
) -> Response:
    created = await services.workspaces.create(caller, body.name, body.tier)
    admin_key = None
    if not caller.open_mode:
        owner = Caller(workspace_id=created["id"], actor=caller.actor, request_id=caller.request_id)
        admin_key = await services.keys.create(owner, name="admin", role="admin")
    return json_response({**created, "admin_key": admin_key}, 201)


@router.get(
    "/v1/workspaces/{workspace_id}",
    response_model=WorkspaceOut,
    summary="A workspace (its own keys, or an admin of the default workspace)",
    responses=problem_responses(401, 403, 404),
)
async def get_workspace(workspace_id: str, caller: CallerDep, services: ServicesDep) -> Response:
    return json_response(await services.workspaces.get(caller, workspace_id))


@router.patch(
    "/v1/workspaces/{workspace_id}/tier",
    response_model=WorkspaceOut,
    summary="Change a workspace's tier (admin of the default workspace, or a billing "
    "webhook with X-Webhook-Secret)",
    responses=problem_responses(400, 401, 403, 404),
)
async def change_tier(
    workspace_id: str,
    body: TierChange,
    caller: TierChangerDep,
    services: ServicesDep,
    x_webhook_secret: Annotated[
        str | None, Header(description="`RUNYARD_TIER_WEBHOOK_SECRET`, instead of a key")
    ] = None,
) -> Response:
    secret = services.settings.tier_webhook_secret
    changed = await services.workspaces.set_tier(
        caller,
        workspace_id,
        body.tier,
        webhook_secret=x_webhook_secret,
        expected_secret=secret.get_secret_value() if secret is not None else None,
    )
    return json_response(changed)


@router.get(
    "/v1/usage",
    response_model=UsageOut,
    summary="This workspace's usage this month against its tier's limits",
    responses=problem_responses(401, 403),
)
async def usage(caller: CallerDep, services: ServicesDep) -> Response:
    return json_response(await services.quotas.usage(caller.workspace_id))
