import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

#: one build of a pipeline's environment (DESIGN §7); its lines are in the event stream of
#: the same id
builds = sa.Table(
    "builds",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("pipeline_id", sa.String(64), nullable=False),
    sa.Column("pipeline_version", sa.Integer, nullable=False),
    sa.Column("environment_key", sa.String(64), nullable=False),
    # the data directory that builds it (environments live on one server's disk)
    sa.Column("node_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reused", sa.Boolean, nullable=False),
    sa.Column("force", sa.Boolean, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),  # the run that needed it, if one did
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("error", Json, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    sa.Index("ix_builds_workspace_id_pipeline_id_id", "workspace_id", "pipeline_id", "id"),
    sa.Index("ix_builds_node_id_environment_key_status", "node_id", "environment_key", "status"),
)

#: a ready environment of one data directory: a virtualenv and the bundle, at ``path``
environments = sa.Table(
    "environments",
    metadata,
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Column("build_id", sa.String(64), nullable=False),
    sa.Column("python", sa.String(32), nullable=False),
    sa.Column("interpreter", sa.String(1000), nullable=False),
    sa.Column("packages", Json, nullable=False),
    sa.Column("build_duration_ms", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=False),
)
