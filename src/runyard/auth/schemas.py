"""API key bodies (DESIGN §4, §15)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "member", "viewer", "runner"]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role
    expires_at: datetime | None = Field(None, description="RFC 3339 with a timezone; future.")
    can_impersonate: bool = Field(
        False, description="Record X-User-Id / X-Actor as the actor of this key's requests."
    )


class ApiKeyOut(BaseModel):
    id: str
    object: Literal["api_key"]
    workspace_id: str
    name: str
    role: Role
    prefix: str
    can_impersonate: bool
    created_by: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself (`ryk_<prefix>_<secret>`), shown only once.")


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]
    next_cursor: str | None
    has_more: bool


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str | None = Field(
        None,
        max_length=500,
        description="The key (`ryk_...`); or send `Authorization: Bearer ryk_...` instead.",
    )


class SessionOut(BaseModel):
    id: str
    object: Literal["session"]
    workspace_id: str
    role: Role
    key_id: str
    csrf_token: str = Field(
        description="Send it as `X-CSRF-Token` with every request that is not GET, HEAD or OPTIONS."
    )
    created_at: str
    expires_at: str
