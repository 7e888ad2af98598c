"""Every error as one problem+json shape (DESIGN §3), whatever raised it."""

import logging
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from runyard.problems import PROBLEM_MEDIA_TYPE, DomainError, problem_body

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    500: ("internal_error", "Internal server error"),
}


class Problem(BaseModel):
    """RFC 9457 problem details, the one error shape of the API."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    error: str
    request_id: str
    errors: list[dict[str, Any]] | None = None
    quota: str | None = Field(None, description="402: the quota used up.")
    current: int | None = Field(None, description="402: what is used (this period).")
    limit: int | None = Field(None, description="402: what the tier allows.")
    period: str | None = Field(None, description="402: the month counted (`YYYY-MM-01`).")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the problems a route can answer."""
    return {status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}} for status in statuses}


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def problem_response(
    request_id: str,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(
        status=status,
        code=code,
        title=title,
        detail=detail,
        request_id=request_id,
        errors=errors,
        extra=extra,
    )
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return problem_response(
        request_id_of(request),
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        extra=exc.extra,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in raw]
    if any(e.get("type") == "json_invalid" for e in raw):
        return problem_response(
            request_id_of(request),
            status=400,
            code="malformed_json",
            title="Malformed JSON",
            detail="the request body is not valid JSON",
        )
    summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return problem_response(
        request_id_of(request),
        status=400,
        code="invalid_input",
        title="Invalid input",
        detail=summary or "the request is invalid",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, (f"http_{exc.status_code}", "Error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else title
    if exc.status_code == 404:
        detail = f"no such endpoint: {request.method} {request.url.path}"
    return problem_response(
        request_id_of(request),
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        headers=dict(exc.headers or {}),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
