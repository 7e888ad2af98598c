"""Prompts, model configs, documents and evaluations as the API takes and gives them
(DESIGN §10, §15)."""

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^\S(?:.{0,198}\S)?$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MAX_TEMPLATE_CHARS = 100_000
#: the most runs one evaluation may create (prompt versions x configs x documents)
MAX_EVALUATION_RUNS = 1000
Id = Annotated[str, Field(min_length=1, max_length=64)]


class Page(BaseModel):
    next_cursor: str | None
    has_more: bool


# -- prompts --------------------------------------------------------------------------------


def _variable_names(value: list[str]) -> list[str]:
    for name in value:
        if not re.match(VARIABLE_PATTERN, name):
            raise ValueError(f"{name!r} is not a variable name (letters, digits, _)")
        if name == "document":
            raise ValueError("`document` is always there: do not declare it")
    if len(set(value)) != len(value):
        raise ValueError("a variable is declared twice")
    return value


class PromptVersionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        min_length=1,
        max_length=MAX_TEMPLATE_CHARS,
        description="Jinja text. `{{ document }}` receives the document's text; without it, "
        "the text is sent as the user message and the template as the system message.",
    )
    variables: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Names the template uses besides `document`; a run gives their values in "
        "`input.variables`.",
    )

    _names = field_validator("variables")(_variable_names)


class PromptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    template: str | None = Field(
        None, min_length=1, max_length=MAX_TEMPLATE_CHARS, description="Makes version 1."
    )
    variables: list[str] = Field(default_factory=list, max_length=100)

    _names = field_validator("variables")(_variable_names)


class PromptUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=200)
    description: str | None = Field(None, max_length=10_000)


class PromptOut(BaseModel):
    id: str
    object: Literal["prompt"] = "prompt"
    workspace_id: str
    name: str
    description: str | None
    latest_version: int | None
    created_by: str
    created_at: str
    updated_at: str


class PromptList(Page):
    data: list[PromptOut]


class PromptVersionOut(BaseModel):
    object: Literal["prompt_version"] = "prompt_version"
    prompt_id: str
    version: int
    template: str
    variables: list[str]
    created_by: str
    created_at: str


class PromptVersionList(Page):
    data: list[PromptVersionOut]


# -- model configs --------------------------------------------------------------------------


class ModelConfigCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=200)
    model_id: str = Field(min_length=1, max_length=64, description="An llm model (`mdl_` id).")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    response_format: Literal["json_object"] | dict[str, Any] = Field(
        "json_object",
        description='`"json_object"` (JSON mode), or OpenAI\'s `{"type": "json_schema", '
        '"json_schema": {"name", "schema"}}`: the answer must then match the schema.',
    )


class ModelConfigOut(BaseModel):
    id: str
    object: Literal["model_config"] = "model_config"
    workspace_id: str
    name: str
    model_id: str
    temperature: float | None
    max_tokens: int | None
    response_format: dict[str, Any]
    created_by: str
    created_at: str


class ModelConfigList(Page):
    data: list[ModelConfigOut]


# -- documents ------------------------------------------------------------------------------


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=500)
    content: str = Field(min_length=1)
    content_type: Literal["text/plain", "text/markdown", "application/json"] = "text/plain"
    ground_truth: dict[str, Any] | None = Field(
        None, description="What a perfect extraction of this document gives."
    )


class DocumentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=500)
    ground_truth: dict[str, Any] | None = Field(None, description="null removes it.")


class DocumentOut(BaseModel):
    id: str
    object: Literal["document"] = "document"
    workspace_id: str
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    characters: int
    has_ground_truth: bool
    ground_truth: dict[str, Any] | None
    content: str | None = Field(None, description="The text a model reads (lists omit it).")
    created_by: str
    created_at: str
    updated_at: str


class DocumentList(Page):
    data: list[DocumentOut]


# -- extract runs and evaluations -----------------------------------------------------------


class ExtractInput(BaseModel):
    """The input of an ``extract`` run."""

    model_config = ConfigDict(extra="allow")

    prompt_id: str = Field(min_length=1, max_length=64)
    prompt_version: int | None = Field(None, ge=1, description="Absent: the latest.")
    config_id: str = Field(min_length=1, max_length=64)
    document_id: str = Field(min_length=1, max_length=64)
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)


class PromptVersionRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_id: str = Field(min_length=1, max_length=64)
    version: int | None = Field(None, ge=1, description="Absent: the latest.")


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    prompt_versions: list[PromptVersionRef | Id] = Field(
        min_length=1,
        max_length=MAX_EVALUATION_RUNS,
        description='`{"prompt_id", "version"?}` each, or a prompt id (its latest version).',
    )
    config_ids: list[Id] = Field(min_length=1, max_length=MAX_EVALUATION_RUNS)
    document_ids: list[Id] = Field(min_length=1, max_length=MAX_EVALUATION_RUNS)
    variables: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Values of the prompts' declared variables."
    )


class EvaluationCell(BaseModel):
    """One prompt version x config: its runs and their mean metrics."""

    prompt_id: str
    prompt_version: int
    config_id: str
    runs: int
    pending: int
    completed: int
    failures: int
    scored: int
    precision: float | None
    recall: float | None
    f1: float | None
    accuracy: float | None
    cost_usd: float | None
    p50_latency_ms: float | None
    input_tokens: int
    output_tokens: int


class EvaluationOut(BaseModel):
    id: str
    object: Literal["evaluation"] = "evaluation"
    workspace_id: str
    name: str | None
    status: Literal["running", "completed"]
    prompt_versions: list[dict[str, Any]]
    config_ids: list[str]
    document_ids: list[str]
    runs: dict[str, int]
    results: list[EvaluationCell]
    created_by: str
    created_at: str


class EvaluationSummary(BaseModel):
    id: str
    object: Literal["evaluation"] = "evaluation"
    workspace_id: str
    name: str | None
    prompt_versions: list[dict[str, Any]]
    config_ids: list[str]
    document_ids: list[str]
    created_by: str
    created_at: str


class EvaluationList(Page):
    data: list[EvaluationSummary]
