import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

prompts = sa.Table(
    "prompts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    # the counter versions are numbered from (under the row's lock); 0 before the first
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_prompts_workspace_id_name"),
    sa.Index("ix_prompts_workspace_created", "workspace_id", "created_at", "id"),
)

#: immutable: a version is never changed, only added
prompt_versions = sa.Table(
    "prompt_versions",
    metadata,
    sa.Column("prompt_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("variables", Json, nullable=False),  # declared names, besides `document`
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

model_configs = sa.Table(
    "model_configs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("model_id", sa.String(64), nullable=False),  # an llm model (mdl_)
    sa.Column("temperature", sa.Float, nullable=True),
    sa.Column("max_tokens", sa.Integer, nullable=True),
    sa.Column("response_format", Json, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_model_configs_workspace_id_name"),
    sa.Index("ix_model_configs_workspace_created", "workspace_id", "created_at", "id"),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),  # of what was uploaded
    sa.Column("content", sa.Text, nullable=False),  # the text a model reads
    sa.Column("size_bytes", sa.Integer, nullable=False),  # of what was uploaded
    sa.Column("sha256", sa.String(64), nullable=False),  # of what was uploaded
    sa.Column("ground_truth", Json, nullable=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_documents_workspace_created", "workspace_id", "created_at", "id"),
)

evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    # what was asked, with each prompt's version resolved: [{prompt_id, version}]
    sa.Column("prompt_versions", Json, nullable=False),
    sa.Column("config_ids", Json, nullable=False),
    sa.Column("document_ids", Json, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_evaluations_workspace_created", "workspace_id", "created_at", "id"),
)

#: one extract run per combination of an evaluation
evaluation_runs = sa.Table(
    "evaluation_runs",
    metadata,
    sa.Column("evaluation_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("prompt_id", sa.String(64), nullable=False),
    sa.Column("prompt_version", sa.Integer, nullable=False),
    sa.Column("config_id", sa.String(64), nullable=False),
    sa.Column("document_id", sa.String(64), nullable=False),
)
