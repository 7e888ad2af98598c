"""Workspace and usage bodies (DESIGN §11)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runyard.auth.schemas import ApiKeyCreated


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    tier: str | None = Field(None, description="Default: `RUNYARD_DEFAULT_TIER`.")


class TierChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: str = Field(min_length=1, max_length=32)


class WorkspaceOut(BaseModel):
    id: str
    object: Literal["workspace"]
    name: str
    tier: str
    created_at: str


class WorkspaceCreated(WorkspaceOut):
    admin_key: ApiKeyCreated | None = Field(
        description="A first admin key of the new workspace (its secret shown only here); "
        "null in open mode, where a key would end open mode for the whole server."
    )


class UsageOut(BaseModel):
    workspace_id: str
    tier: str
    period: str = Field(description="The calendar month (UTC) counted, `YYYY-MM-01`.")
    runs: int = Field(description="Runs created this month (replays included).")
    limit: int | None = Field(description="Runs the tier admits per month (null: no limit).")
    concurrent_runs: int = Field(description="Runs running or cancelling now.")
    concurrent_runs_limit: int | None
    artifact_bytes: int
    artifact_bytes_limit: int | None
