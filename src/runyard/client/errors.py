"""Errors raised by the Runyard SDK.

Every error the server answers is a problem document (``application/problem+json``); the SDK
maps its ``status`` and ``code`` to one class, so callers catch what they mean::

    RunyardError
    ├── TransportError              the server could not be reached (after the retries)
    └── APIError                    the server answered with a problem (.status .code .problem)
        ├── BadRequest              400 (.errors: the field errors)
        ├── Unauthorized            401
        ├── Forbidden               403
        ├── NotFound                404
        ├── Conflict                409
        │   ├── StaleLease          409 stale_lease: this runner's lease no longer holds the run
        │   └── InvalidTransition   409 invalid_transition (.current_status)
        ├── PayloadTooLarge         413
        ├── RateLimited             429
        └── ServerError             5xx
"""

from typing import Any


class RunyardError(Exception):
    """Base of every SDK error."""


class TransportError(RunyardError):
    """The request did not get an answer: connection refused, reset, or timed out."""


class APIError(RunyardError):
    """The server answered with an error status and (usually) a problem document."""

    def __init__(self, status: int, problem: dict[str, Any], request_id: str | None) -> None:
        self.status = status
        self.problem = problem
        self.code: str = str(problem.get("code") or f"http_{status}")
        self.detail: str = str(problem.get("detail") or problem.get("title") or "")
        self.request_id = request_id
        super().__init__(f"{status} {self.code}: {self.detail}")


class BadRequest(APIError):
    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.problem.get("errors") or [])


class Unauthorized(APIError):
    pass


class Forbidden(APIError):
    pass


class NotFound(APIError):
    pass


class Conflict(APIError):
    pass


class StaleLease(Conflict):
    pass


class InvalidTransition(Conflict):
    @property
    def current_status(self) -> str | None:
        value = self.problem.get("current_status")
        return str(value) if value is not None else None


class PayloadTooLarge(APIError):
    pass


class RateLimited(APIError):
    pass


class ServerError(APIError):
    pass


_BY_CODE: dict[str, type[APIError]] = {
    "stale_lease": StaleLease,
    "invalid_transition": InvalidTransition,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
}


def error_for(status: int, problem: dict[str, Any], request_id: str | None) -> APIError:
    """The exception for an error answer."""
    cls = _BY_CODE.get(str(problem.get("code"))) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(status, problem, request_id)
