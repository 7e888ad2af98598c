"""Run requests and the run resource (DESIGN §5.1)."""

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runyard.clock import isoformat, ms_between
from runyard.pipelines.schemas import MAX_SECONDS


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | None = Field(None, description="Pipeline name (or use `pipeline_id`).")
    pipeline_id: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(
        None, pattern=r"^run_[0-9A-Za-z]{10,40}$", description="Client-chosen run id."
    )
    tags: list[str] = Field(default_factory=list, max_length=50)
    codename: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)
    require_approval: bool = False
    start: bool = Field(True, description="Queue at once; `false` leaves the run `pending`.")
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout_seconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    stream: bool = Field(False, description="Answer with the run's SSE stream until it ends.")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=5000)


class ApprovalRequest(BaseModel):
    """A runner asks for a gate (DESIGN §8)."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(max_length=5000)
    expires_in_seconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    on_expire: Literal["reject", "approve", "fail"] = "reject"
    allow_self_approval: bool = True
    step: str | None = Field(None, max_length=200)


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] | None = Field(None, description="Replaces the original input.")
    tags: list[str] | None = Field(None, max_length=50)
    metadata: dict[str, Any] | None = None
    start: bool = True


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=2000)
    force: bool = False


class RunStatusReport(BaseModel):
    """A runner's status callback (DESIGN §8)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["running", "completed", "failed", "cancelled"] | None = None
    progress: float | None = Field(None, description="0-1; values outside are clamped.")
    current_step: str | None = Field(None, max_length=200)
    error: str | dict[str, Any] | None = None
    output: Any = None
    metrics: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


class RunError(BaseModel):
    code: str
    message: str
    step: str | None = None


class RunOut(BaseModel):
    """The run resource. List items omit `steps`, `input` and `output`."""

    id: str
    object: Literal["run"] = "run"
    workspace_id: str
    pipeline: str
    pipeline_id: str
    pipeline_version: int
    status: str
    input: dict[str, Any] | None = None
    output: Any = None
    error: RunError | None
    progress: float
    current_step: str | None
    steps: list[dict[str, Any]] | None = None
    tags: list[str]
    codename: str | None
    metadata: dict[str, Any]
    require_approval: bool
    approval: dict[str, Any] | None
    attempt: int
    max_attempts: int
    timeout_seconds: int | None
    metrics: dict[str, Any]
    usage: dict[str, Any]
    replay_of: str | None
    session_id: str | None
    runner_id: str | None
    created_by: str
    created_at: str
    queued_at: str | None
    started_at: str | None
    completed_at: str | None
    updated_at: str
    duration_ms: int | None
    last_sequence: int
    links: dict[str, str]


class RunList(BaseModel):
    data: list[RunOut]
    next_cursor: str | None
    has_more: bool


class RunAction(BaseModel):
    message: str
    run: RunOut


class CancelResult(BaseModel):
    result: Literal["cancelled", "cancelling", "already_terminal"]
    run: RunOut


class StatusResult(BaseModel):
    ok: bool = True
    run: RunOut


class AuditEntryOut(BaseModel):
    id: str
    run_id: str
    created_at: str
    action: str
    actor: str
    details: dict[str, Any]


class ComparedRun(BaseModel):
    id: str
    pipeline: str
    status: str
    input: Any
    metrics: dict[str, Any]
    usage: dict[str, Any]
    duration_ms: int | None


class MetricComparison(BaseModel):
    metric: str
    run_a_value: Any
    run_b_value: Any
    difference: float | None = Field(description="b - a; null when either is missing")
    percent_change: float | None = Field(description="(b - a) / a x 100; null when a is 0")


class FieldDifference(BaseModel):
    path: str = Field(description="JSON Pointer into the outputs")
    run_a_value: Any
    run_b_value: Any
    status: Literal["same", "different", "only_in_a", "only_in_b"]


class StepComparison(BaseModel):
    step: str
    run_a_status: str | None
    run_b_status: str | None
    run_a_duration_ms: int | None
    run_b_duration_ms: int | None
    duration_difference_ms: int | None


class ComparisonSummary(BaseModel):
    same_pipeline: bool
    same_input: bool
    total_fields_compared: int
    fields_same: int
    fields_different: int
    fields_only_in_a: int
    fields_only_in_b: int
    input_keys_different: list[str]


class RunComparison(BaseModel):
    run_a: ComparedRun
    run_b: ComparedRun
    metric_comparisons: list[MetricComparison]
    field_differences: list[FieldDifference]
    step_comparisons: list[StepComparison]
    summary: ComparisonSummary


def run_resource(row: Mapping[str, Any], *, full: bool = True) -> dict[str, Any]:
    """The JSON resource of a run row (joined with its stream's ``last_sequence``)."""
    base = f"/v1/runs/{row['id']}"
    resource: dict[str, Any] = {
        "id": row["id"],
        "object": "run",
        "workspace_id": row["workspace_id"],
        "pipeline": row["pipeline"],
        "pipeline_id": row["pipeline_id"],
        "pipeline_version": row["pipeline_version"],
        "status": row["status"],
    }
    if full:
        resource["input"] = row["input"]
        resource["output"] = row["output"]
    resource.update(
        error=row["error"],
        progress=row["progress"],
        current_step=row["current_step"],
    )
    if full:
        resource["steps"] = row["steps"]
    resource.update(
        tags=row["tags"],
        codename=row["codename"],
        metadata=row["metadata"],
        require_approval=row["require_approval"],
        approval=row["approval"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"],
        metrics=row["metrics"],
        usage=row["usage"],
        replay_of=row["replay_of"],
        session_id=row["session_id"],
        runner_id=row["runner_id"],
        created_by=row["created_by"],
        created_at=isoformat(row["created_at"]),
        queued_at=isoformat(row["queued_at"]),
        started_at=isoformat(row["started_at"]),
        completed_at=isoformat(row["completed_at"]),
        updated_at=isoformat(row["updated_at"]),
        duration_ms=ms_between(row["started_at"] or row["created_at"], row["completed_at"]),
        last_sequence=row.get("last_sequence") or 0,
        links={
            "self": base,
            "events": f"{base}/events",
            "logs": f"{base}/logs",
            "artifacts": f"{base}/artifacts",
            "summary": f"{base}/summary",
            "diagnostics": f"{base}/diagnostics",
        },
    )
    return resource
