"""Who is asking: what every service call carries instead of an HTTP request."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    workspace_id: str
    actor: str
    request_id: str | None = None
    #: admin, member, viewer or runner (DESIGN §4); open mode acts as admin
    role: str = "admin"
    #: open mode (DESIGN §4): no credentials, the server has no API keys yet
    open_mode: bool = False

    @property
    def server_admin(self) -> bool:
        """Who may create workspaces and change tiers: open mode, or an admin key of the
        default workspace (the server's own)."""
        return self.role == "admin" and (self.open_mode or self.workspace_id == "ws_default")
