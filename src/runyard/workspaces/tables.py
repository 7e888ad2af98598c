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
