"""Domain errors and their one rendering: RFC 9457 ``application/problem+json``.

Services raise a :class:`DomainError` subclass; the HTTP layer renders every error,
including FastAPI's validation and routing errors, with :func:`problem_body`.

    DomainError
    ├── BadRequest (400)            ── InvalidInput, ReservedEventType, NoDefaultModel
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)              ── RunNotFound, PipelineNotFound, LlmProviderNotFound,
    │                                  LlmModelNotFound
    ├── QuotaExceeded (402)
    ├── Conflict (409)              ── InvalidTransition, RunExists, PipelineExists, StaleLease,
    │                                  RunFinished, LlmProviderExists, LlmModelDisabled
    ├── PayloadTooLarge (413)
    ├── LlmProviderKeyUnreadable (503)
    └── RateLimited (429)           (``Retry-After``)
"""

from typing import Any, ClassVar

PROBLEM_BASE = "https://runyard.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class DomainError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(DomainError):
    pass


class InvalidInput(BadRequest):
    code = "invalid_input"
    title = "Invalid input"


class ReservedEventType(BadRequest):
    code = "reserved_event_type"
    title = "Reserved event type"


class NoDefaultModel(BadRequest):
    code = "no_default_model"
    title = "No default model"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class RunNotFound(NotFound):
    code = "run_not_found"
    title = "Run not found"


class PipelineNotFound(NotFound):
    code = "pipeline_not_found"
    title = "Pipeline not found"


class LlmProviderNotFound(NotFound):
    code = "llm_provider_not_found"
    title = "LLM provider not found"


class LlmModelNotFound(NotFound):
    code = "llm_model_not_found"
    title = "LLM model not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "Invalid state transition"


class RunExists(Conflict):
    code = "run_exists"
    title = "Run already exists"


class PipelineExists(Conflict):
    code = "pipeline_exists"
    title = "Pipeline already exists"


class StaleLease(Conflict):
    code = "stale_lease"
    title = "Stale lease"


class RunFinished(Conflict):
    code = "run_finished"
    title = "Run has finished"


class LlmProviderExists(Conflict):
    code = "llm_provider_exists"
    title = "LLM provider already exists"


class LlmModelDisabled(Conflict):
    """The model, or its provider, is disabled."""

    code = "llm_model_disabled"
    title = "LLM model disabled"


class LlmProviderKeyUnreadable(DomainError):
    """503: a provider's stored API key does not decrypt with this server's secrets key
    (replicas with different ``RUNYARD_SECRETS_KEY``s, or a lost ``secrets.key``)."""

    status = 503
    code = "llm_provider_key_unreadable"
    title = "LLM provider key unreadable"


class QuotaExceeded(DomainError):
    """402 with ``quota``, ``current``, ``limit`` and ``period`` members (DESIGN §3, §15)."""

    status = 402
    code = "quota_exceeded"
    title = "Quota exhausted"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class RateLimited(DomainError):
    """429 with ``Retry-After`` (whole seconds) and a ``retry_after`` member."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"


class Unavailable(DomainError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one problem shape; ``error`` repeats ``detail`` for clients of the simpler APIs."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "error": detail,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return body
