import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("artifact_type", sa.String(64), nullable=False),
    sa.Column("path", sa.String(1024), nullable=True),
    sa.Column("storage_key", sa.String(1200), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_artifacts_run", "run_id", "created_at"),
)
