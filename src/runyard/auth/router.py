"""API keys (DESIGN §4, §15): admins create, list and revoke their workspace's keys; and
dashboard sessions: an API key logs a browser in (``/v1/auth/...``)."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from runyard.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, LoginRequest, SessionOut
from runyard.auth.sessions import COOKIE_NAME, CSRF_HEADER, Session
from runyard.clock import utcnow
from runyard.http.deps import AdminDep, ApiKeyServiceDep, ServicesDep, SessionServiceDep, limit_rate
from runyard.http.errors import problem_response, problem_responses, request_id_of
from runyard.http.responses import json_response
from runyard.problems import Forbidden, InvalidInput, Unauthorized
from runyard.runners.tokens import looks_like_token
from runyard.settings import Settings

router = APIRouter(prefix="/v1/api-keys", tags=["auth"])
sessions_router = APIRouter(prefix="/v1/auth", tags=["auth"])
NO_STORE = {"Cache-Control": "no-store"}


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


def _session_answer(session: Session) -> Response:
    return json_response(session.resource(), headers=NO_STORE)


def _secure(request: Request, settings: Settings) -> bool:
    """Whether the cookie is ``Secure``: as configured, else when the browser uses https."""
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return request.url.scheme == "https" or settings.resolved_public_url().startswith("https://")


@sessions_router.post(
    "/login",
    response_model=SessionOut,
    summary="Log a browser in with an API key: a session cookie, and the CSRF token to send "
    "with it",
    responses=problem_responses(400, 401, 403, 429),
)
async def login(
    request: Request,
    keys: ApiKeyServiceDep,
    sessions: SessionServiceDep,
    services: ServicesDep,
    body: LoginRequest | None = None,
) -> Response:
    secret = body.api_key if body is not None else None
    if not secret:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        secret = credential.strip() if scheme.lower() == "bearer" else None
    if not secret:
        raise Unauthorized('send an API key: {"api_key": "ryk_..."} or Authorization: Bearer')
    if looks_like_token(secret):
        raise Forbidden("a runner token cannot open a dashboard session")
    key = await keys.authenticate(secret)
    limit_rate(request, f"key:{key['id']}")
    cookie, session = await sessions.login(key, request_id_of(request))
    response = _session_answer(session)
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=max(1, int((session.expires_at - utcnow()).total_seconds())),
        path="/",
        secure=_secure(request, services.settings),
        httponly=True,
        samesite="lax",
    )
    return response


@sessions_router.get(
    "/session",
    response_model=SessionOut,
    summary="The browser's session (from its cookie), with its CSRF token",
    responses=problem_responses(401, 429),
)
async def current_session(request: Request, sessions: SessionServiceDep) -> Response:
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie is None:
        raise Unauthorized("no dashboard session: log in with POST /v1/auth/login")
    session = await sessions.authenticate(cookie)
    limit_rate(request, f"key:{session.key_id}")
    return _session_answer(session)


@sessions_router.post(
    "/logout",
    status_code=204,
    summary=f"End the browser's session (send its {CSRF_HEADER}) and clear the cookie",
    responses=problem_responses(401, 403),
)
async def logout(request: Request, sessions: SessionServiceDep, services: ServicesDep) -> Response:
    cookie = request.cookies.get(COOKIE_NAME)
    request_id = request_id_of(request)
    ended = cookie is not None and await sessions.logout(
        cookie, request.headers.get(CSRF_HEADER), request_id
    )
    response = (
        Response(status_code=204)
        if ended
        else problem_response(
            request_id,
            status=401,
            code="unauthorized",
            title="Unauthorized",
            detail="no dashboard session to end",
        )
    )
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        secure=_secure(request, services.settings),
        httponly=True,
        samesite="lax",
    )
    return response
