"""``Annotated`` dependencies, so route signatures read like prose."""

from typing import Annotated

from fastapi import Depends, Request

from runyard.container import Services
from runyard.context import Caller
from runyard.events.service import EventService
from runyard.pipelines.service import PipelineService
from runyard.problems import NotFound
from runyard.runs.service import RunService
from runyard.workspaces.service import DEFAULT_WORKSPACE

# Dependencies are ``async def``: FastAPI runs plain ``def`` dependencies in a thread pool,
# which costs a thread round trip per dependency per request.


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services_dep(request: Request) -> Services:
    return _services(request)


async def _caller(request: Request) -> Caller:
    """Open mode (DESIGN §4): act in ``X-Workspace-Id`` as ``X-User-Id``."""
    services = _services(request)
    headers = request.headers
    workspace_id = (
        headers.get("x-workspace-id")
        or request.query_params.get("workspace_id")
        or DEFAULT_WORKSPACE
    )
    if not await services.workspaces.exists(workspace_id):
        raise NotFound(f"workspace {workspace_id} not found", code="workspace_not_found")
    actor = headers.get("x-user-id") or headers.get("x-actor") or "anonymous"
    return Caller(
        workspace_id=workspace_id,
        actor=actor[:200],
        request_id=request.scope.get("state", {}).get("request_id"),
    )


async def _runs(request: Request) -> RunService:
    return _services(request).runs


async def _events(request: Request) -> EventService:
    return _services(request).events


async def _pipelines(request: Request) -> PipelineService:
    return _services(request).pipelines


ServicesDep = Annotated[Services, Depends(_services_dep)]
CallerDep = Annotated[Caller, Depends(_caller)]
RunServiceDep = Annotated[RunService, Depends(_runs)]
EventServiceDep = Annotated[EventService, Depends(_events)]
PipelineServiceDep = Annotated[PipelineService, Depends(_pipelines)]
