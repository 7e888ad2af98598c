"""``Annotated`` dependencies, so route signatures read like prose."""

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from runyard.artifacts.service import ArtifactService
from runyard.audit.service import AuditService
from runyard.auth.service import ApiKeyService
from runyard.auth.sessions import COOKIE_NAME, CSRF_HEADER, SessionService
from runyard.container import Services
from runyard.context import Caller
from runyard.http.ratelimit import retry_after
from runyard.llm.service import LlmService
from runyard.observability.analytics import AnalyticsService
from runyard.pipelines.service import PipelineService
from runyard.problems import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from runyard.runners.service import RunnerService
from runyard.runners.tokens import looks_like_token
from runyard.runs.service import RunService
from runyard.webhooks.service import WebhookService
from runyard.workspaces.service import DEFAULT_WORKSPACE

# Dependencies are ``async def``: FastAPI runs plain ``def`` dependencies in a thread pool,
# which costs a thread round trip per dependency per request.


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services_dep(request: Request) -> Services:
    return _services(request)


def _request_id(request: Request) -> str | None:
    request_id: str | None = request.scope.get("state", {}).get("request_id")
    return request_id


def _bearer(request: Request) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, or None without one."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("use Authorization: Bearer <API key or runner token>")
    return credential.strip()


async def _open_caller(request: Request) -> Caller:
    """Open mode (DESIGN §4): act in ``X-Workspace-Id`` as ``X-User-Id``, with role admin."""
    headers = request.headers
    workspace_id = (
        headers.get("x-workspace-id")
        or request.query_params.get("workspace_id")
        or DEFAULT_WORKSPACE
    )
    if not await _services(request).workspaces.exists(workspace_id):
        raise NotFound(f"workspace {workspace_id} not found", code="workspace_not_found")
    actor = headers.get("x-user-id") or headers.get("x-actor") or "anonymous"
    return Caller(
        workspace_id=workspace_id,
        actor=actor[:200],
        request_id=_request_id(request),
        open_mode=True,
    )


async def _key_caller(request: Request, secret: str) -> Caller:
    """An API key's caller: its workspace and role; its id is the actor, unless the key may
    impersonate and the request names one (``X-User-Id`` / ``X-Actor``)."""
    key = await _services(request).keys.authenticate(secret)
    limit_rate(request, f"key:{key['id']}")
    actor = key["id"]
    if key["can_impersonate"]:
        actor = request.headers.get("x-user-id") or request.headers.get("x-actor") or actor
    return Caller(
        workspace_id=key["workspace_id"],
        actor=actor[:200],
        request_id=_request_id(request),
        role=key["role"],
    )


async def _authenticated(request: Request) -> Caller:
    """An API key's caller, or open mode's while no key exists; 401 otherwise. Runner tokens
    reach only their run's runner endpoints (403 here)."""
    secret = _bearer(request)
    if secret is None:
        if await _services(request).keys.open_mode():
            limit_rate(request, f"open:{request.client.host if request.client else ''}")
            return await _open_caller(request)
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie is not None:
            return await _session_caller(request, cookie)
        raise Unauthorized("this server needs an API key: Authorization: Bearer ryk_...")
    if looks_like_token(secret):
        raise Forbidden("a runner token reaches only its own run's runner endpoints")
    return await _key_caller(request, secret)


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: set on the request's state when a dashboard session authenticated it
_SESSION_AUTHENTICATED = "session_id"


async def _session_caller(request: Request, cookie: str) -> Caller:
    """A dashboard session's caller: its key's (DESIGN §4). A request other than a read must
    carry the session's CSRF token, which a cross-site page cannot know (403 otherwise)."""
    session = await _services(request).sessions.authenticate(cookie)
    if request.method not in READ_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise Forbidden(
            f"a request with a session cookie that is not a read needs {CSRF_HEADER}",
            code="csrf_failed",
        )
    limit_rate(request, f"key:{session.key_id}")
    request.scope.setdefault("state", {})[_SESSION_AUTHENTICATED] = session.id
    actor = session.key_id
    if session.can_impersonate:
        actor = request.headers.get("x-user-id") or request.headers.get("x-actor") or actor
    return Caller(
        workspace_id=session.workspace_id,
        actor=actor[:200],
        request_id=_request_id(request),
        role=session.role,
    )


def limit_rate(request: Request, bucket: str) -> None:
    """Count the request against ``bucket`` (an API key, a run, a client address) when
    ``RUNYARD_RATE_LIMIT_PER_SECOND`` is set; 429 with ``Retry-After`` beyond the rate. A
    request is counted once, however many dependencies authenticate it."""
    limiter = _services(request).limiter
    if limiter is None:
        return
    state = request.scope.setdefault("state", {})
    if state.get("rate_counted"):
        return
    state["rate_counted"] = True
    wait = limiter.hit(bucket)
    if wait:
        seconds = retry_after(wait)
        raise RateLimited(
            f"more than {limiter.rate:g} requests a second (burst {limiter.burst:g}); "
            f"retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )


async def _caller(request: Request) -> Caller:
    """The caller of a user endpoint: runner keys are refused, viewer keys only read."""
    caller = await _authenticated(request)
    if caller.role == "runner":
        raise Forbidden("a runner key reaches only the runner API")
    if caller.role == "viewer" and request.method not in READ_METHODS:
        raise Forbidden("a viewer key is read-only")
    return caller


async def _reader(request: Request) -> Caller:
    """The caller of a read sent as a POST (what-if): a user endpoint's caller, but a viewer
    key may call it too, since it changes nothing."""
    caller = await _authenticated(request)
    if caller.role == "runner":
        raise Forbidden("a runner key reaches only the runner API")
    return caller


async def _metrics_reader(request: Request) -> None:
    """``/metrics`` is open unless ``RUNYARD_METRICS_REQUIRE_AUTH`` asks for a key."""
    if _services(request).settings.metrics_require_auth:
        await _authenticated(request)


async def _tier_changer(request: Request) -> Caller | None:
    """No caller when a billing system presents ``X-Webhook-Secret`` instead of a key."""
    if "x-webhook-secret" in request.headers:
        return None
    return await _caller(request)


async def _admin(request: Request) -> Caller:
    caller = await _authenticated(request)
    if caller.role != "admin":
        raise Forbidden("this needs an admin key")
    return caller


RUNNER_ROLES = frozenset({"runner", "member", "admin"})


async def _runner_caller(request: Request) -> Caller:
    """Who may claim runs: runner, member and admin keys (and open mode)."""
    caller = await _authenticated(request)
    if caller.role not in RUNNER_ROLES:
        raise Forbidden(f"a {caller.role} key cannot act as a runner")
    return caller


LEASE_ID = re.compile(r"^lse_[0-9A-Z]{26}$")


@dataclass(frozen=True, slots=True)
class RunnerAuth:
    """Who calls a runner endpoint, and the lease the call claims to hold (if any)."""

    caller: Caller
    lease_id: str | None

    def require_lease(self, who: str) -> str:
        """The lease, or 400 when the call names none."""
        if self.lease_id is None:
            raise InvalidInput(
                f"{who} names its lease: a runner token, or X-Runyard-Lease",
                errors=[{"loc": ["header", "X-Runyard-Lease"], "msg": "Field required"}],
            )
        return self.lease_id


async def _runner_auth(request: Request) -> RunnerAuth:
    """A runner token (``Authorization: Bearer <jwt>``) scoped to the run in the path, or open
    mode's headers. ``X-Runyard-Lease`` names the lease; a token carries its own."""
    lease_id = request.headers.get("x-runyard-lease")
    if lease_id is not None and not LEASE_ID.match(lease_id):
        raise InvalidInput(
            "X-Runyard-Lease is not a lease id",
            errors=[{"loc": ["header", "X-Runyard-Lease"], "msg": "expected lse_<ULID>"}],
        )
    credential = _bearer(request)
    if credential is None or not looks_like_token(credential):
        auth = RunnerAuth(await _runner_caller(request), lease_id)  # a key, or open mode
        if credential is not None or _SESSION_AUTHENTICATED in request.scope.get("state", {}):
            auth.require_lease("a runner calling with an API key")  # fencing needs the lease
        return auth
    claims = _services(request).tokens.verify(credential)
    limit_rate(request, f"run:{claims['sub']}")
    run_id = request.path_params.get("run_id")
    if run_id is not None and run_id != claims["sub"]:
        raise Forbidden(f"this runner token is for run {claims['sub']}, not {run_id}")
    caller = Caller(
        workspace_id=str(claims.get("ws", DEFAULT_WORKSPACE)),
        actor=f"runner:{claims['sub']}",
        request_id=_request_id(request),
        role="runner",
    )
    token_lease = claims.get("lease")
    if lease_id is not None and token_lease is not None and lease_id != token_lease:
        raise Forbidden("X-Runyard-Lease names another lease than this runner token's")
    return RunnerAuth(caller, token_lease or lease_id)


async def _audit(request: Request) -> AuditService:
    return _services(request).audit


async def _keys(request: Request) -> ApiKeyService:
    return _services(request).keys


async def _sessions(request: Request) -> SessionService:
    return _services(request).sessions


async def _artifacts(request: Request) -> ArtifactService:
    return _services(request).artifacts


async def _runners(request: Request) -> RunnerService:
    return _services(request).runners


async def _runs(request: Request) -> RunService:
    return _services(request).runs


async def _pipelines(request: Request) -> PipelineService:
    return _services(request).pipelines


async def _webhooks(request: Request) -> WebhookService:
    return _services(request).webhooks


async def _llm(request: Request) -> LlmService:
    return _services(request).llm


async def _analytics(request: Request) -> AnalyticsService:
    return _services(request).analytics


ServicesDep = Annotated[Services, Depends(_services_dep)]
CallerDep = Annotated[Caller, Depends(_caller)]
ReaderDep = Annotated[Caller, Depends(_reader)]
AdminDep = Annotated[Caller, Depends(_admin)]
MetricsReaderDep = Annotated[None, Depends(_metrics_reader)]
TierChangerDep = Annotated[Caller | None, Depends(_tier_changer)]
RunnerCallerDep = Annotated[Caller, Depends(_runner_caller)]
ApiKeyServiceDep = Annotated[ApiKeyService, Depends(_keys)]
SessionServiceDep = Annotated[SessionService, Depends(_sessions)]
AuditServiceDep = Annotated[AuditService, Depends(_audit)]
RunServiceDep = Annotated[RunService, Depends(_runs)]
PipelineServiceDep = Annotated[PipelineService, Depends(_pipelines)]
RunnerAuthDep = Annotated[RunnerAuth, Depends(_runner_auth)]
RunnerServiceDep = Annotated[RunnerService, Depends(_runners)]
ArtifactServiceDep = Annotated[ArtifactService, Depends(_artifacts)]
WebhookServiceDep = Annotated[WebhookService, Depends(_webhooks)]
LlmServiceDep = Annotated[LlmService, Depends(_llm)]
AnalyticsServiceDep = Annotated[AnalyticsService, Depends(_analytics)]
