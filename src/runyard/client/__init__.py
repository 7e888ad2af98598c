"""The Runyard Python SDK: ``Client`` and ``AsyncClient`` for the API, ``Runner`` to execute
runs of ``worker`` pipelines. It imports nothing of the server."""

from runyard.client.async_client import AsyncClient
from runyard.client.context import ApprovalPending, RunContext, RunFailed
from runyard.client.errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RunyardError,
    ServerError,
    StaleLease,
    TransportError,
    Unauthorized,
)
from runyard.client.runner import Runner
from runyard.client.sync_client import Client

__all__ = [
    "APIError",
    "ApprovalPending",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidTransition",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RunContext",
    "RunFailed",
    "Runner",
    "RunyardError",
    "ServerError",
    "StaleLease",
    "TransportError",
    "Unauthorized",
]
