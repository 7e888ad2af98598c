"""Who is asking: what every service call carries instead of an HTTP request."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    workspace_id: str
    actor: str
    request_id: str | None = None
    #: admin, member, viewer or runner (DESIGN §4); open mode acts as admin
    role: str = "admin"
