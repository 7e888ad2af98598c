"""indexes for observability: finished runs by completion; the creation window covering
the SLO's columns; a pipeline's runs by creation

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the runs list's (workspace_id, created_at, id), plus what an SLO over the window reads
WINDOW = [
    "workspace_id",
    "created_at",
    "id",
    "status",
    "pipeline",
    "queued_at",
    "started_at",
    "completed_at",
]


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_workspace_created")
        batch_op.create_index("ix_runs_workspace_created", WINDOW, unique=False)
        batch_op.drop_index("ix_runs_workspace_pipeline")
        batch_op.create_index(
            "ix_runs_workspace_pipeline_created",
            ["workspace_id", "pipeline", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_runs_workspace_completed", ["workspace_id", "completed_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_workspace_completed")
        batch_op.drop_index("ix_runs_workspace_pipeline_created")
        batch_op.create_index(
            "ix_runs_workspace_pipeline", ["workspace_id", "pipeline"], unique=False
        )
        batch_op.drop_index("ix_runs_workspace_created")
        batch_op.create_index(
            "ix_runs_workspace_created", ["workspace_id", "created_at", "id"], unique=False
        )
