"""Observability requests and responses (DESIGN §12, §15)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Outcome(BaseModel):
    run_id: str
    pipeline: str
    status: Literal["completed", "failed", "cancelled", "rejected"]
    duration_ms: int | None = Field(description="Started → completed; null if it never started.")
    failed_step: str | None = Field(description="The step named in the run's `error`, if any.")
    completed_at: str


class OutcomePage(BaseModel):
    workspace_id: str
    outcomes: list[Outcome]
    next_cursor: str | None
    has_more: bool


class Slo(BaseModel):
    workspace_id: str
    days: int
    pipeline: str | None
    total_runs: int = Field(description="Runs created in the window, in any state.")
    success_count: int = Field(description="`completed`.")
    failure_count: int = Field(description="`failed`.")
    cancelled_count: int = Field(description="`cancelled` and `rejected`.")
    blocked_count: int = Field(description="Waiting at an approval gate now.")
    success_rate: float | None = Field(
        description="success / (success + failure + cancelled), 0-1; null when none finished."
    )
    avg_duration_ms: float | None = Field(description="Over finished runs that started.")
    p50_duration_ms: int | None = Field(description="Nearest rank.")
    p95_duration_ms: int | None = Field(description="Nearest rank.")
    avg_queue_wait_ms: float | None = Field(description="Queued (or created) → started.")
    objective: float | None = Field(None, description="Only when `objective` was asked.")
    error_budget_remaining: float | None = Field(
        None,
        description="Only with `objective`: 1 - (1 - success_rate) / (1 - objective); below 0 "
        "when the budget is overspent, null when success_rate is.",
    )


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=200, description="Pipeline name (or id).")
    input: dict[str, Any] | None = Field(
        None, description="The input the run would get; the estimate does not depend on it yet."
    )


class DurationPercentiles(BaseModel):
    p50: int | None
    p90: int | None


class CostPercentiles(BaseModel):
    p50: float | None
    p90: float | None


class WhatIf(BaseModel):
    pipeline: str
    sample_size: int = Field(description="Finished runs created in the last 90 days.")
    duration_ms: DurationPercentiles = Field(description="Over the sample's runs that started.")
    success_rate: float | None
    cost_usd: CostPercentiles = Field(description="Over the sample's runs with `usage.cost_usd`.")
    risk_level: Literal["low", "medium", "high", "unknown"]
    message: str
