"""The workspace's audit log (DESIGN §11)."""

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from runyard.http.deps import AuditServiceDep, CallerDep
from runyard.http.errors import problem_responses
from runyard.http.pagination import MAX_LIMIT
from runyard.http.responses import json_response

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    id: str
    workspace_id: str
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]
    request_id: str | None
    created_at: str


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    next_cursor: str | None
    has_more: bool


@router.get(
    "",
    response_model=AuditPage,
    summary="Audit entries of this workspace, newest first",
    responses=problem_responses(400, 401, 403),
)
async def list_audit(
    caller: CallerDep,
    audit: AuditServiceDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    action: str | None = Query(None, description="e.g. run.cancel"),
    actor: str | None = None,
    target_type: str | None = Query(None, description="run, pipeline, api_key, ..."),
    target_id: str | None = None,
    target: str | None = Query(None, description="The target's id (same as target_id)."),
) -> Response:
    page = await audit.list_page(
        caller,
        limit=limit,
        cursor=cursor,
        action=action,
        actor=actor,
        target_type=target_type,
        target_id=target_id or target,
    )
    return json_response(page)
