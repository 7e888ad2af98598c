"""``Annotated`` dependencies, so route signatures read like prose."""

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from runyard.artifacts.service import ArtifactService
from runyard.container import Services
from runyard.context import Caller
from runyard.pipelines.service import PipelineService
from runyard.problems import Forbidden, InvalidInput, NotFound, Unauthorized
from runyard.runners.service import RunnerService
from runyard.runners.tokens import looks_like_token
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


LEASE_ID = re.compile(r"^lse_[0-9A-Z]{26}$")


@dataclass(frozen=True, slots=True)
class RunnerAuth:
    """Who calls a runner endpoint, and the lease the call claims to hold (if any)."""

    caller: Caller
    lease_id: str | None


async def _runner_auth(request: Request) -> RunnerAuth:
    """A runner token (``Authorization: Bearer <jwt>``) scoped to the run in the path, or open
    mode's headers. ``X-Runyard-Lease`` names the lease; a token carries its own."""
    lease_id = request.headers.get("x-runyard-lease")
    if lease_id is not None and not LEASE_ID.match(lease_id):
        raise InvalidInput(
            "X-Runyard-Lease is not a lease id",
            errors=[{"loc": ["header", "X-Runyard-Lease"], "msg": "expected lse_<ULID>"}],
        )
    authorization = request.headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    if not authorization:
        return RunnerAuth(await _caller(request), lease_id)
    if scheme.lower() != "bearer" or not looks_like_token(credential.strip()):
        raise Unauthorized("runner endpoints take a runner token: Authorization: Bearer <token>")
    claims = _services(request).tokens.verify(credential.strip())
    run_id = request.path_params.get("run_id")
    if run_id is not None and run_id != claims["sub"]:
        raise Forbidden(f"this runner token is for run {claims['sub']}, not {run_id}")
    caller = Caller(
        workspace_id=str(claims.get("ws", DEFAULT_WORKSPACE)),
        actor=f"runner:{claims['sub']}",
        request_id=request.scope.get("state", {}).get("request_id"),
    )
    token_lease = claims.get("lease")
    if lease_id is not None and token_lease is not None and lease_id != token_lease:
        raise Forbidden("X-Runyard-Lease names another lease than this runner token's")
    return RunnerAuth(caller, token_lease or lease_id)


async def _artifacts(request: Request) -> ArtifactService:
    return _services(request).artifacts


async def _runners(request: Request) -> RunnerService:
    return _services(request).runners


async def _runs(request: Request) -> RunService:
    return _services(request).runs


async def _pipelines(request: Request) -> PipelineService:
    return _services(request).pipelines


ServicesDep = Annotated[Services, Depends(_services_dep)]
CallerDep = Annotated[Caller, Depends(_caller)]
RunServiceDep = Annotated[RunService, Depends(_runs)]
PipelineServiceDep = Annotated[PipelineService, Depends(_pipelines)]
RunnerAuthDep = Annotated[RunnerAuth, Depends(_runner_auth)]
RunnerServiceDep = Annotated[RunnerService, Depends(_runners)]
ArtifactServiceDep = Annotated[ArtifactService, Depends(_artifacts)]
