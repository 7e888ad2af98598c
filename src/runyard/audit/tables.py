import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

audit_entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(64), nullable=False),
    sa.Column("details", Json, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),  # X-Request-Id: up to 128
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_audit_entries_target", "workspace_id", "target_type", "target_id", "created_at"),
    sa.Index("ix_audit_entries_workspace_created", "workspace_id", "created_at", "id"),
)
