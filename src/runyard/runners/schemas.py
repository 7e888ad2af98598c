"""Runner protocol bodies (DESIGN §8)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RunnerSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field("runner", min_length=1, max_length=200)
    labels: list[str] = Field(default_factory=list, max_length=50)
    version: str | None = Field(None, max_length=64)


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    pipelines: list[str] = Field(
        default_factory=list, description="Pipelines this runner executes; empty: any."
    )
    wait_seconds: float = Field(
        0, ge=0, le=30, description="Long-poll this long for a run before answering 204."
    )


class StepReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["running", "completed", "failed", "skipped"]
    output: Any = None
    error: dict[str, Any] | None = None


class LeaseOut(BaseModel):
    id: str
    attempt: int
    expires_at: str
    duration_seconds: int = Field(description="Heartbeat at least every third of this.")


class ClaimResponse(BaseModel):
    run: dict[str, Any]
    lease: LeaseOut
    token: str


class HeartbeatResponse(BaseModel):
    lease_expires_at: str
    cancel_requested: bool


class TokenResponse(BaseModel):
    token: str
    expires_at: str


class RunnerOut(BaseModel):
    id: str
    name: str
    labels: list[str]
    version: str | None
    status: Literal["online", "offline"]
    current_runs: int
    last_seen_at: str
    created_at: str


class RunnerList(BaseModel):
    data: list[RunnerOut]
    next_cursor: str | None
    has_more: bool
