"""builds and environments

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import runyard.db.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIME = runyard.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("pipeline_id", sa.String(length=64), nullable=False),
        sa.Column("pipeline_version", sa.Integer(), nullable=False),
        sa.Column("environment_key", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reused", sa.Boolean(), nullable=False),
        sa.Column("force", sa.Boolean(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("error", JSON, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("completed_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_builds")),
    )
    op.create_index(
        "ix_builds_workspace_id_pipeline_id_id", "builds", ["workspace_id", "pipeline_id", "id"]
    )
    op.create_index(
        "ix_builds_node_id_environment_key_status",
        "builds",
        ["node_id", "environment_key", "status"],
    )
    op.create_table(
        "environments",
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("build_id", sa.String(length=64), nullable=False),
        sa.Column("python", sa.String(length=32), nullable=False),
        sa.Column("interpreter", sa.String(length=1000), nullable=False),
        sa.Column("packages", JSON, nullable=False),
        sa.Column("build_duration_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("node_id", "key", name=op.f("pk_environments")),
    )


def downgrade() -> None:
    op.drop_table("environments")
    op.drop_index("ix_builds_node_id_environment_key_status", table_name="builds")
    op.drop_index("ix_builds_workspace_id_pipeline_id_id", table_name="builds")
    op.drop_table("builds")
