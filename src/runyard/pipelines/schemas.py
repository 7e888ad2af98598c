"""Pipeline definitions (DESIGN §7)."""

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runyard.builds.specs import EnvironmentSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
#: the longest timeout or expiry accepted (a leap year): bounds keep values storable
MAX_SECONDS = 366 * 24 * 3600
MAX_LEASE_SECONDS = 24 * 3600


class Executor(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["steps", "worker", "http"] = "steps"


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    uses: str = Field(min_length=1, max_length=100)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    if_: str | None = Field(None, alias="if")
    timeout_seconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    retries: int = Field(0, ge=0, le=100)


class PipelineFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=10_000)
    executor: Executor = Field(default_factory=Executor)
    input_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema the run input is validated against."
    )
    environment: EnvironmentSpec | None = Field(
        None, description="What the steps need; builds make it (see docs/builds.md)."
    )
    steps: list[StepSpec] = Field(default_factory=list)
    rollback_steps: list[StepSpec] | None = None
    max_attempts: int = Field(1, ge=1, le=100)
    timeout_seconds: int = Field(3600, ge=1, le=MAX_SECONDS)
    lease_seconds: int | None = Field(None, ge=1, le=MAX_LEASE_SECONDS)
    labels: list[str] = Field(default_factory=list)
    concurrency_limit: int | None = Field(None, ge=1, le=1_000_000)


class PipelineCreate(PipelineFields):
    name: str = Field(pattern=NAME_PATTERN)


class PipelineUpdate(BaseModel):
    """Any subset of the definition; the pipeline gets a new version."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    executor: Executor | None = None
    input_schema: dict[str, Any] | None = None
    environment: EnvironmentSpec | None = None
    steps: list[StepSpec] | None = None
    rollback_steps: list[StepSpec] | None = None
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout_seconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    lease_seconds: int | None = Field(None, ge=1, le=MAX_LEASE_SECONDS)
    labels: list[str] | None = None
    concurrency_limit: int | None = Field(None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _required_fields_stay_set(self) -> Self:
        """Absent means unchanged; null may only clear what a pipeline may lack."""
        for name in ("executor", "steps", "max_attempts", "timeout_seconds", "labels"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class PipelineOut(PipelineFields):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["pipeline"] = "pipeline"
    workspace_id: str
    name: str
    version: int
    created_at: str
    updated_at: str


class PipelineList(BaseModel):
    data: list[PipelineOut]
    next_cursor: str | None
    has_more: bool


def spec_of(fields: PipelineFields | PipelineUpdate) -> dict[str, Any]:
    return fields.model_dump(mode="json", by_alias=True, exclude_unset=False, exclude={"name"})
