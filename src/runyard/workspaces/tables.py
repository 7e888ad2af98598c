import sqlalchemy as sa

from runyard.db.base import UTCDateTime, metadata

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("tier", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

#: runs admitted per workspace and calendar month (UTC): the counter quota admission
#: increments atomically, so deleting runs does not give quota back
workspace_usage = sa.Table(
    "workspace_usage",
    metadata,
    sa.Column("workspace_id", sa.String(64), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("runs", sa.Integer, nullable=False),
)
